/**
 * Reference models shipped with the service (@ddpm/pretrained): loading their EMA weights, and
 * the small deterministic sampling whose statistics the export records and the test repeats.
 */
import { sha256Hex } from '@ddpm/core';
import { GaussianDiffusion } from '@ddpm/diffusion';
import { PixelTally } from '@ddpm/eval';
import { type PretrainedManifest, readPretrained } from '@ddpm/pretrained';
import { withPlainArithmetic } from '@ddpm/kernels';
import { type UNet, unetFromWeights } from '@ddpm/unet';

import { toUint8 } from './images';
import { type LoadedModel } from './model-loading';
import { generateSamples } from './sampling';

/** A reference model shipped with the service: its EMA weights, verified by sha256. */
export function loadPretrainedModel(name: string): LoadedModel & { readonly manifest: PretrainedManifest } {
  const { manifest, weights, url } = readPretrained(name);
  const model = unetFromWeights(weights);
  return {
    model,
    diffusion: new GaussianDiffusion(manifest.train.diffusion),
    config: manifest.train,
    ref: { step: manifest.step, key: `pretrained/${name}`, url, bytes: manifest.bytes },
    ema: true,
    skipped: [],
    manifest,
  };
}

/**
 * `count` samples in `steps` strided ancestral steps from `seed`, in batches of 16: their pixel
 * mean and background fraction on [0, 1], and the sha256 of their 8-bit values. On wasm, on our
 * kernels' plain build (no fused multiply-adds): the same bytes on every CPU.
 */
export async function samplingCheck(
  model: UNet,
  diffusion: GaussianDiffusion,
  check: { readonly count: number; readonly steps: number; readonly seed: number },
): Promise<{ pixelMean: number; pixelBackground: number; samplesSha256: string }> {
  const { values } = await withPlainArithmetic(() =>
    generateSamples(model, diffusion, check.count, {
      sampler: { kind: 'ancestral', steps: check.steps },
      seed: check.seed,
      batch: 16,
    }),
  );
  const bytes = toUint8(values);
  const stats = new PixelTally().addBytes(bytes).result();
  return { pixelMean: stats.mean, pixelBackground: stats.background, samplesSha256: sha256Hex(bytes) };
}

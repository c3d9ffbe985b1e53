/**
 * The U-Net benchmark: a training step (forward + backward + Adam) and a sampling step (one
 * reverse-process step of Algorithm 2) of a preset, against the backend's own forward conv2d on
 * the model's most common layer, all measured in the same run. Ratios are what to read: the
 * machines are shared and absolute times drift.
 */
import { type BackendInfo, wasmKernelsFused } from '@ddpm/kernels';
import { GaussianDiffusion, Rng } from '@ddpm/diffusion';
import { UNet, describeArchitecture, preset } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { type OpProfile, profileOps } from './op-profile';
import { gflops, round, timeInterleaved } from './timing';

export interface UNetBenchOptions {
  readonly preset: string;
  readonly batch: number;
  readonly steps: number;
  readonly backend: BackendInfo;
  /** Also profile one training and one sampling step by op kind (op-profile.ts). */
  readonly profile?: boolean;
}

export async function benchUNet(options: UNetBenchOptions): Promise<Record<string, unknown>> {
  const config = preset(options.preset);
  const summary = describeArchitecture(config);
  const B = options.batch;
  const rng = Rng.fromSeed(0);
  const net = new UNet(config, { uniform: () => rng.uniform() });
  const diffusion = new GaussianDiffusion({ schedule: { kind: 'linear' } });
  const S = config.imageSize;
  const x = tf.tensor4d(rng.normals(B * S * S * config.inChannels), [B, S, S, config.inChannels]);
  const eps = tf.tensor4d(rng.normals(B * S * S * config.outChannels), [B, S, S, config.outChannels]);
  const t = tf.tensor1d(rng.ints(1000, B), 'int32');
  const optimizer = tf.train.adam(2e-4);
  let dropoutSeed = 0;
  // The most common layer: a 3×3 stride-1 conv at the top resolution, ch·chMult[0] → same.
  const c = config.ch * config.chMult[0]!;
  const convX = tf.tensor4d(rng.normals(B * S * S * c), [B, S, S, c]);
  const convW = tf.tensor4d(
    rng.normals(9 * c * c).map((v) => v * 0.05),
    [3, 3, c, c],
  );
  const model = net.asDenoiseFn();
  const tHost = Int32Array.from(t.dataSync());
  try {
    const trainStep = async (): Promise<void> => {
      const loss = optimizer.minimize(
        () =>
          tf.mean<tf.Scalar>(
            tf.squaredDifference(eps, net.apply(x, t, { training: true, dropoutSeed: dropoutSeed++ })),
          ),
        true,
        net.variables,
      )!;
      await loss.data();
      loss.dispose();
    };
    const sampleStep = async (): Promise<void> => {
      const out = diffusion.pSample(model, x, tHost, eps, { clipDenoised: true });
      await out.sample.data();
      tf.dispose([out.sample, out.predXStart]);
    };
    const convStep = async (): Promise<void> => {
      const y = tf.conv2d(convX, convW, 1, 'same');
      await y.data();
      y.dispose();
    };
    // Rounds interleave the three so that all see the same machine: these machines are shared,
    // and a reference timed only at the start drifts by ±20% against steps timed later. The
    // reference is the fastest of five convs per round, so the ratios err on the low side.
    const rounds = await timeInterleaved(
      options.steps,
      { train: trainStep, sample: sampleStep, conv: convStep },
      { conv: 5 },
    );
    let profile: { train: OpProfile; sample: OpProfile } | undefined;
    if (options.profile) {
      profile = {
        train: await profileOps(async (phase) => {
          const { value, grads } = tf.variableGrads(() => {
            const loss = tf.mean<tf.Scalar>(
              tf.squaredDifference(eps, net.apply(x, t, { training: true, dropoutSeed: dropoutSeed++ })),
            );
            phase('backward');
            return loss;
          }, net.variables);
          phase('update');
          optimizer.applyGradients(grads as unknown as Parameters<typeof optimizer.applyGradients>[0]);
          await value.data();
          tf.dispose([value, ...Object.values(grads)]);
        }, 'forward'),
        sample: await profileOps(sampleStep, 'sample'),
      };
    }
    const train = rounds.train;
    const sample = rounds.sample;
    const conv = rounds.conv;
    const forwardFlops = summary.forwardFlopsConvDense * B;
    const convFlops = 2 * 9 * c * c * S * S * B;
    const trainGflops = gflops(3 * forwardFlops, train.medianMs);
    const sampleGflops = gflops(forwardFlops, sample.medianMs);
    const convGflops = gflops(convFlops, conv.medianMs);
    return {
      benchmark: 'unet',
      preset: options.preset,
      batch: B,
      repeats: options.steps,
      backend: options.backend.name,
      ...(options.backend.name === 'wasm' ? { fusedMultiplyAdd: wasmKernelsFused() } : {}),
      params: summary.totalParams,
      forwardGflopPerImage: round(summary.forwardFlopsConvDense / 1e9, 4),
      trainStep: {
        medianMs: round(train.medianMs, 1),
        gflops: round(trainGflops, 2),
        flopsCounted: '3 x forward conv+dense',
      },
      sampleStep: {
        medianMs: round(sample.medianMs, 1),
        gflops: round(sampleGflops, 2),
        flopsCounted: 'forward conv+dense',
      },
      convReference: {
        layer: `conv2d 3x3 ${S}x${S}x${c}->${c}, batch ${B}`,
        medianMs: round(conv.medianMs, 2),
        gflops: round(convGflops, 2),
      },
      trainOverConv: round(trainGflops / convGflops, 3),
      sampleOverConv: round(sampleGflops / convGflops, 3),
      ...(profile ? { profile } : {}),
    };
  } finally {
    tf.dispose([x, eps, t, convX, convW]);
    optimizer.dispose();
    net.dispose();
  }
}

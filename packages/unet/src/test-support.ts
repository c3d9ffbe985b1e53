/** Helpers for this package's tests (not exported). */
import { initBackend } from '@ddpm/kernels';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';

import { type UNetConfig } from '@ddpm/unet-config';
import { UNet } from './unet';

/** A small deterministic uniform (0, 1) source (an LCG: good enough for test weights). */
export function lcgUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
}

export function lcgNormals(seed: number, n: number): Float32Array {
  const u = lcgUniform(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

export async function useBackend(name: 'wasm' | 'cpu'): Promise<void> {
  // wasm as a worker gets it, then whichever the test asked for.
  if (name === 'wasm') await initBackend({ backend: 'wasm' });
  await tf.setBackend(name);
  await tf.ready();
  if (name === 'cpu') (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
}

/** A network small enough for the cpu backend: two levels, attention at 4×4. */
export const SMALL: UNetConfig = {
  ch: 16,
  chMult: [1, 2],
  numResBlocks: 1,
  attnResolutions: [4],
  dropout: 0.1,
  inChannels: 2,
  outChannels: 2,
  imageSize: 8,
  numGroups: 4,
  resampleWithConv: true,
};

export function makeUNet(config: UNetConfig, seed = 1): UNet {
  return new UNet(config, { uniform: lcgUniform(seed) });
}

/** Replaces the near-zero initialised layers with ordinary values so gradients are non-trivial. */
export function perturbAll(net: UNet, seed: number): void {
  const u = lcgUniform(seed);
  tf.tidy(() => {
    for (const v of net.variables) {
      const values = Float32Array.from({ length: v.size }, () => (u() * 2 - 1) * 0.3);
      v.assign(tf.add(v, tf.tensor(values, v.shape)));
    }
  });
}

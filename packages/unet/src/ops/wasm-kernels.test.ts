import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@ddpm/backend';

import { groupNorm } from './group-norm';
import { WasmKernels, wasmKernels } from './wasm-kernels';

function values(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + scale * (s / 2 ** 31 - 1);
  });
}

function maxRelDiff(a: tf.Tensor, b: tf.Tensor): number {
  const av = a.dataSync();
  const bv = b.dataSync();
  const scale = Math.max(1e-6, ...Array.from(bv, Math.abs));
  let worst = 0;
  for (let i = 0; i < av.length; i++) worst = Math.max(worst, Math.abs(av[i]! - bv[i]!) / scale);
  return worst;
}

/** GroupNorm (+swish) in float64, the truth both float32 formulations are measured against. */
function groupNormF64(x: Float32Array, shape: readonly number[], groups: number, gamma: Float32Array, beta: Float32Array, swish: boolean): Float32Array {
  const [b, h, w, c] = shape as [number, number, number, number];
  const per = c / groups;
  const out = new Float32Array(x.length);
  for (let n = 0; n < b; n++) {
    for (let g = 0; g < groups; g++) {
      const index = (p: number, k: number): number => (n * h * w + p) * c + g * per + k;
      let sum = 0;
      for (let p = 0; p < h * w; p++) for (let k = 0; k < per; k++) sum += x[index(p, k)]!;
      const mean = sum / (h * w * per);
      let sq = 0;
      for (let p = 0; p < h * w; p++) for (let k = 0; k < per; k++) sq += (x[index(p, k)]! - mean) ** 2;
      const rstd = 1 / Math.sqrt(sq / (h * w * per) + 1e-6);
      for (let p = 0; p < h * w; p++) {
        for (let k = 0; k < per; k++) {
          const y = (x[index(p, k)]! - mean) * rstd * gamma[g * per + k]! + beta[g * per + k]!;
          out[index(p, k)] = swish ? y / (1 + Math.exp(-y)) : y;
        }
      }
    }
  }
  return out;
}

beforeAll(async () => {
  await tf.setBackend('wasm');
});

describe('our SIMD kernels on the wasm heap', () => {
  it('load next to the tfjs heap and accept only NHWC shapes with whole groups of four-channel lanes', () => {
    expect(wasmKernels()).toBeDefined();
    expect(WasmKernels.supports([2, 4, 4, 64], 32)).toBe(true);
    expect(WasmKernels.supports([2, 4, 4, 6], 3)).toBe(false);
    expect(WasmKernels.supports([2, 4, 4, 36], 8)).toBe(false);
  });

  it.each([
    ['paper-sized groups, activations far from zero mean', [2, 16, 16, 64], 32, 3, 40],
    ['swish saturating at both ends (|y| up to ~100)', [3, 8, 8, 32], 8, 30, 0],
  ] as const)('GroupNorm (±swish), %s: values match float64, gradients the reference formulation', (_, shape, groups, gammaScale, offset) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const c = shape[3];
    const [xv, gv, bv] = [values(size, 1, 2, offset), values(c, 2, gammaScale, 0), values(c, 3)];
    const x = tf.tensor4d(xv, [...shape]);
    const gamma = tf.tensor1d(gv);
    const beta = tf.tensor1d(bv);
    const probe = tf.tensor4d(values(size, 4), [...shape]);
    for (const swish of [false, true]) {
      const f = (reference: boolean) => (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.mul(groupNorm(xx as tf.Tensor4D, gg as tf.Tensor1D, bb as tf.Tensor1D, { numGroups: groups, swish, reference }), probe));
      const ours = tf.grads(f(false))([x, gamma, beta]);
      const ref = tf.grads(f(true))([x, gamma, beta]);
      // Values against float64: the kernel's two-pass statistics are closer to it than
      // tf.moments (6.7e-6 against 1.25e-5 on the first case).
      const truth = tf.tensor(groupNormF64(xv, shape, groups, gv, bv, swish), [...shape]);
      expect(maxRelDiff(groupNorm(x, gamma, beta, { numGroups: groups, swish }), truth)).toBeLessThan(1e-5);
      ours.forEach((g, i) => expect(maxRelDiff(g, ref[i]!)).toBeLessThan(1e-4));
      truth.dispose();
      tf.dispose([...ours, ...ref]);
    }
    tf.dispose([x, gamma, beta, probe]);
  });

  it('leave no tensors behind, forward and backward', () => {
    const x = tf.tensor4d(values(2 * 4 * 4 * 8, 5), [2, 4, 4, 8]);
    const gamma = tf.ones([8]) as tf.Tensor1D;
    const beta = tf.zeros([8]) as tf.Tensor1D;
    const before = tf.memory().numTensors;
    const grads = tf.grads((xx: tf.Tensor) => tf.sum(groupNorm(xx as tf.Tensor4D, gamma, beta, { numGroups: 2, swish: true })))([x]);
    tf.dispose(grads);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, gamma, beta]);
  });
});

describe('the committed module', () => {
  const hasClang = spawnSync('clang', ['--version']).status === 0 && spawnSync('wasm-ld', ['--version']).status === 0;
  // .ci/run installs clang and lld; elsewhere the check is skipped rather than faked.
  (hasClang ? it : it.skip)('kernels-wasm.generated.ts is what kernels/build.cjs makes of ddpm_kernels.c', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ddpm-kernels-test-'));
    try {
      const out = join(dir, 'generated.ts');
      const built = spawnSync(process.execPath, [join(__dirname, '..', '..', 'kernels', 'build.cjs'), out], { encoding: 'utf8' });
      expect(built.stderr).toBe('');
      expect(built.status).toBe(0);
      expect(readFileSync(out, 'utf8')).toBe(readFileSync(join(__dirname, 'kernels-wasm.generated.ts'), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

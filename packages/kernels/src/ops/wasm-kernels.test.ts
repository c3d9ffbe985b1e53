import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import '@ddpm/kernels';

import { describeGeneratedModule } from '../../../../test/support/generated-module';
import { lcgSigned, maxRelError } from '../test-support';

import { dropout } from './dropout';
import { groupNorm } from './group-norm';
import { softmax } from './softmax';
import { kernelV8Flags, relaxedSimdCompiles } from '../v8-flags';

import { setKernelSwitches } from '../switches';
import { WasmKernels, wasmKernels, wasmKernelsFused } from './wasm-kernels';

function maxRelDiff(a: tf.Tensor, b: tf.Tensor): number {
  return maxRelError(a.dataSync(), b.dataSync());
}

/** GroupNorm (+swish) in float64, the truth both float32 formulations are measured against. */
function groupNormF64(
  x: Float32Array,
  shape: readonly number[],
  groups: number,
  gamma: Float32Array,
  beta: Float32Array,
  swish: boolean,
): Float32Array {
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
  ] as const)(
    'GroupNorm (±swish), %s: values match float64, gradients the reference formulation',
    (_, shape, groups, gammaScale, offset) => {
      const size = shape.reduce((a, b) => a * b, 1);
      const c = shape[3];
      const [xv, gv, bv] = [lcgSigned(size, 1, 2, offset), lcgSigned(c, 2, gammaScale, 0), lcgSigned(c, 3)];
      const x = tf.tensor4d(xv, [...shape]);
      const gamma = tf.tensor1d(gv);
      const beta = tf.tensor1d(bv);
      const probe = tf.tensor4d(lcgSigned(size, 4), [...shape]);
      for (const swish of [false, true]) {
        const f = (reference: boolean) => (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(
            tf.mul(
              groupNorm(xx as tf.Tensor4D, gg as tf.Tensor1D, bb as tf.Tensor1D, {
                numGroups: groups,
                swish,
                reference,
              }),
              probe,
            ),
          );
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
    },
  );

  it('GroupNorm+swish keeps σ(y) only under a gradient tape, with the same output bits either way', () => {
    const x = tf.tensor4d(lcgSigned(2 * 4 * 4 * 8, 6), [2, 4, 4, 8]);
    const gamma = tf.tensor1d(lcgSigned(8, 7));
    const beta = tf.tensor1d(lcgSigned(8, 8));
    const kernels = wasmKernels()!;
    const kept = kernels.groupNormForward(x, gamma, beta, 2, 1e-6, true);
    const dropped = kernels.groupNormForward(x, gamma, beta, 2, 1e-6, true, false);
    expect(kept.sig).toBeDefined();
    expect(dropped.sig).toBeUndefined();
    expect(Array.from(dropped.out.dataSync())).toEqual(Array.from(kept.out.dataSync()));
    // Through groupNorm: sampling (no tape) and training (a tape) give the same values.
    const opts = { numGroups: 2, swish: true };
    const sampled = groupNorm(x, gamma, beta, opts);
    let taped: Float32Array | undefined;
    const grads = tf.grads((xx: tf.Tensor) => {
      const y = groupNorm(xx as tf.Tensor4D, gamma, beta, opts);
      taped = y.dataSync() as Float32Array;
      return tf.sum(y);
    })([x]);
    expect(Array.from(sampled.dataSync())).toEqual(Array.from(taped!));
    tf.dispose([x, gamma, beta, kept.out, kept.sig!, kept.mean, kept.rstd, dropped.out, dropped.mean, dropped.rstd]);
    tf.dispose([sampled, ...grads]);
  });

  it('leave no tensors behind, forward and backward', () => {
    const x = tf.tensor4d(lcgSigned(2 * 4 * 4 * 8, 5), [2, 4, 4, 8]);
    const gamma = tf.ones<tf.Rank.R1>([8]);
    const beta = tf.zeros<tf.Rank.R1>([8]);
    const before = tf.memory().numTensors;
    const grads = tf.grads((xx: tf.Tensor) =>
      tf.sum(groupNorm(xx as tf.Tensor4D, gamma, beta, { numGroups: 2, swish: true })),
    )([x]);
    tf.dispose(grads);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, gamma, beta]);
  });
});

describe('the direct convolution (patches times the filter)', () => {
  it.each([
    ['3×3, stride 2, SAME (one row before, no column)', 3, 2, 'same', [1, 0], [2, 9, 8, 8], [5, 4]],
    ['3×3, stride 1, three channels, SAME', 3, 1, 'same', [1, 1], [2, 5, 6, 3], [5, 6]],
    ['2×2, stride 1, VALID', 2, 1, 'valid', [0, 0], [1, 4, 5, 4], [3, 4]],
  ] as const)('%s equals tfjs conv2d + bias', (_, k, stride, pad, before, xShape, out) => {
    const x = tf.tensor4d(
      lcgSigned(
        xShape.reduce((a: number, b: number) => a * b, 1),
        9,
      ),
      [...xShape],
    );
    const cin = xShape[3];
    const filter = tf.tensor4d(lcgSigned(k * k * cin * 8, 10), [k, k, cin, 8]);
    const bias = tf.tensor1d(lcgSigned(8, 11));
    const ours = wasmKernels()!.directConv(x, filter, bias, stride, before, out);
    const reference = tf.add(tf.conv2d(x, filter, stride, pad), bias);
    expect(ours.shape).toEqual(reference.shape);
    expect(maxRelDiff(ours, reference)).toBeLessThan(1e-5);
    tf.dispose([x, filter, bias, ours, reference]);
  });
});

describe('layout, dropout and softmax kernels', () => {
  const k = (): WasmKernels => wasmKernels()!;

  it.each([
    [[3, 5, 7], 'scalar path'],
    [[2, 8, 12], 'SIMD path'],
    [[68, 8], 'SIMD path, rank 2'],
    [[3, 48, 32], 'SIMD path in 16×16 blocks'],
  ] as const)('transposeLast2 %j (%s) equals tf.transpose', (shape: readonly number[], _path: string) => {
    const raw: tf.Tensor = tf.tensor(
      lcgSigned(
        shape.reduce((a, b) => a * b, 1),
        7,
      ),
      shape.slice(),
    );
    const x = raw as tf.Tensor2D | tf.Tensor3D;
    const perm = shape.length === 2 ? [1, 0] : [0, 2, 1];
    expect(maxRelDiff(k().transposeLast2(x), tf.transpose(x, perm))).toBe(0);
  });

  it.each([
    [[1, 300, 8, 12], 'one matrix, rows over three chunks of 128'],
    [[5, 7, 4, 20], 'a batch of five, a short reduction'],
  ] as const)('matMulTN %j (%s) equals tf.matMul with transposeA', (shape: readonly number[], _case: string) => {
    const [z, t, m, n] = shape as [number, number, number, number];
    const a = tf.tensor3d(lcgSigned(z * t * m, 11), [z, t, m]);
    const b = tf.tensor3d(lcgSigned(z * t * n, 12), [z, t, n]);
    expect(maxRelDiff(k().matMulTN(a, b), tf.matMul(a, b, true, false))).toBeLessThan(1e-5);
    if (z === 1) {
      const [a2, b2] = [tf.reshape<tf.Rank.R2>(a, [t, m]), tf.reshape<tf.Rank.R2>(b, [t, n])];
      expect(maxRelDiff(k().matMulTN(a2, b2), tf.matMul(a2, b2, true, false))).toBeLessThan(1e-5);
    }
  });

  it.each([
    [[3, 4, 5, 6], 1, 1, 1, 1],
    [[4, 6, 6, 8], 0, 1, 0, 1],
    [[8, 3, 3, 4], 1, 1, 1, 1],
  ] as const)('padToChannelsFirst %j equals pad + transpose', (shape, top, bottom, left, right) => {
    const x = tf.tensor4d(
      lcgSigned(
        shape.reduce((a, b) => a * b, 1),
        8,
      ),
      [...shape],
    );
    const expected = tf.transpose(
      tf.pad(x, [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ]),
      [3, 1, 2, 0],
    );
    expect(maxRelDiff(k().padToChannelsFirst(x, top, bottom, left, right), expected)).toBe(0);
  });

  it.each([
    [5, 3],
    [64, 32],
  ])('concatChannels and splitChannels with %d + %d channels equal tf.concat and tf.split', (ca, cb) => {
    const a = tf.tensor4d(lcgSigned(2 * 3 * 3 * ca, 9), [2, 3, 3, ca]);
    const b = tf.tensor4d(lcgSigned(2 * 3 * 3 * cb, 10), [2, 3, 3, cb]);
    const joined = k().concatChannels(a, b);
    expect(maxRelDiff(joined, tf.concat([a, b], 3))).toBe(0);
    const [a2, b2] = k().splitChannels(joined, ca);
    expect(maxRelDiff(a2, a)).toBe(0);
    expect(maxRelDiff(b2, b)).toBe(0);
  });

  it('dropout keeps 1 − rate of the elements scaled by 1/(1 − rate), the same ones for a seed, others for another seed', () => {
    const n = 100_003; // not a multiple of four: the scalar tail must agree with the SIMD body
    const x = tf.ones([n]);
    const a = k().dropout(x, 0.1, 42).dataSync();
    const again = k().dropout(x, 0.1, 42).dataSync();
    const other = k().dropout(x, 0.1, 43).dataSync();
    let kept = 0;
    let same = 0;
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      if (!(a[i] === 0 || Math.abs(a[i]! - 1 / 0.9) < 1e-6)) wrong++;
      if (a[i] !== 0) kept++;
      if ((a[i] === 0) === (other[i] === 0)) same++;
    }
    expect(wrong).toBe(0);
    expect(Array.from(again)).toEqual(Array.from(a));
    // Binomial(n, 0.9): sd ≈ 95 elements; 5 sd either side.
    expect(Math.abs(kept - 0.9 * n)).toBeLessThan(475);
    // Independent masks agree on 0.9² + 0.1² = 82% of the elements.
    expect(Math.abs(same / n - 0.82)).toBeLessThan(0.01);
  });

  it('dropout: rate 0 is the identity, the gradient applies the same mask, and bad rates are refused', () => {
    const x = tf.tensor1d(lcgSigned(1001, 11));
    expect(dropout(x, 0, 1)).toBe(x);
    const g = tf
      .grad((xx: tf.Tensor) => tf.sum(dropout(xx, 0.3, 5)))(x)
      .dataSync();
    const y = dropout(x, 0.3, 5).dataSync();
    const xv = x.dataSync();
    for (let i = 0; i < 1001; i++) expect(g[i]).toBeCloseTo(y[i] === 0 ? 0 : y[i]! / xv[i]!, 4);
    expect(() => dropout(x, 1, 1)).toThrow('dropout rate must be in [0, 1), got 1');
  });

  it.each([
    [[7, 3, 5], 'scalar columns'],
    [[3, 100, 36], 'SIMD blocks of 16 and a scalar tail'],
  ] as const)(
    'sumToLastAxis %j (%s) equals tf.sum over the leading axes',
    (shape: readonly number[], _path: string) => {
      const raw: tf.Tensor = tf.tensor(
        lcgSigned(
          shape.reduce((a, b) => a * b, 1),
          14,
        ),
        shape.slice(),
      );
      const axes = shape.slice(0, -1).map((_, i) => i);
      expect(maxRelDiff(k().sumToLastAxis(raw), tf.sum(raw, axes))).toBeLessThan(1e-6);
    },
  );

  it.each([
    ['rows of 7 (the tail alone)', [2, 5, 7], 3],
    ['rows of 49 (three blocks of 16 and a tail)', [3, 49], 8],
    ['rows of 256, logits spanning ±60', [2, 3, 256], 60],
  ] as const)('the softmax, %s, equals tf.softmax and sums to 1', (_, shape, scale) => {
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    const logits = tf.tensor(lcgSigned(size, 14, scale), [...shape]);
    const ours = softmax(logits);
    expect(maxRelDiff(ours, tf.softmax(logits))).toBeLessThan(2e-6);
    const sums = tf.sum(ours, -1).dataSync();
    for (const v of sums) expect(Math.abs(v - 1)).toBeLessThan(1e-6);
    tf.dispose([logits, ours]);
  });

  it('the softmax gradient equals tfjs autodiff of tf.softmax', () => {
    const logits = tf.tensor3d(lcgSigned(2 * 5 * 7, 12, 3), [2, 5, 7]);
    const probe = tf.tensor3d(lcgSigned(2 * 5 * 7, 13), [2, 5, 7]);
    const ours = tf.grad((l: tf.Tensor) => tf.sum(tf.mul(softmax(l), probe)))(logits);
    const ref = tf.grad((l: tf.Tensor) => tf.sum(tf.mul(tf.softmax(l), probe)))(logits);
    expect(maxRelDiff(ours, ref)).toBeLessThan(1e-5);
  });
});

describe('the build with fused multiply-adds', () => {
  const cpuHasFma = ((): boolean => {
    try {
      return /\bfma\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      return false;
    }
  })();
  afterEach(() => {
    setKernelSwitches({ wasmFma: true });
  });

  it('is what a process started with kernelV8Flags() runs, and the plain build what one without them runs where they are needed', () => {
    const ROOT = join(__dirname, '..', '..', '..', '..');
    const script =
      "const k = require('@ddpm/kernels'); k.initBackend({ backend: 'wasm' }).then(() => { k.wasmKernels(); process.stdout.write(String(k.wasmKernelsFused())); });";
    const run = (flags: string[]): string =>
      spawnSync(process.execPath, [...flags, '-e', script], {
        cwd: ROOT,
        encoding: 'utf8',
      }).stdout;
    // Node 20 needs the relaxed-SIMD flag at start-up; later Nodes ship relaxed SIMD and need none.
    expect(run(kernelV8Flags())).toBe('true');
    if (kernelV8Flags().length > 0) expect(run([])).toBe('false');
  }, 60_000);

  it('is used in this process where it compiles (the tests run with kernelV8Flags()), switching wasmFma off chooses the plain build, and both compute the same products', () => {
    if (!relaxedSimdCompiles())
      throw new Error('this jest runs without kernelV8Flags(): run the tests with npm test or node scripts/jest.cjs');
    const a = tf.tensor3d(lcgSigned(2 * 40 * 36, 21), [2, 40, 36]);
    const b = tf.tensor3d(lcgSigned(2 * 36 * 24, 22), [2, 36, 24]);
    const t = tf.tensor3d(lcgSigned(2 * 300 * 8, 23), [2, 300, 8]);
    const fused = [wasmKernels()!.batchMatMul(a, b), wasmKernels()!.matMulTN(t, t)];
    expect(wasmKernelsFused()).toBe(true);
    setKernelSwitches({ wasmFma: false });
    const plain = [wasmKernels()!.batchMatMul(a, b), wasmKernels()!.matMulTN(t, t)];
    expect(wasmKernelsFused()).toBe(false);
    const reference = [tf.matMul(a, b), tf.matMul(t, t, true, false)];
    for (let i = 0; i < 2; i++) {
      expect(maxRelDiff(fused[i]!, reference[i]!)).toBeLessThan(1e-5);
      expect(maxRelDiff(plain[i]!, reference[i]!)).toBeLessThan(1e-5);
      // One rounding per multiply-add instead of two: where the CPU fuses them, the last bits differ.
      if (cpuHasFma) expect(maxRelDiff(fused[i]!, plain[i]!)).toBeGreaterThan(0);
    }
    tf.dispose([a, b, t, ...fused, ...plain, ...reference]);
  });
});

describe('the committed module', () => {
  // .ci/run installs clang-19 and lld-19.
  describeGeneratedModule({
    build: join(__dirname, '..', '..', 'c', 'build.cjs'),
    committed: join(__dirname, 'kernels-wasm.generated.ts'),
    source: 'ddpm_kernels.c',
    tools: ['clang-19', 'wasm-ld-19'],
    packages: 'clang-19 lld-19',
  });
});

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@ddpm/kernels';

import { lcgTensor, maxRelError } from '../test-support';

import { setKernelSwitches } from '../switches';
import { concatChannels } from './concat';
import { conv2d } from './conv2d';
import { dropout } from './dropout';
import { groupNorm } from './group-norm';
import { dense, matMul } from './matmul';
import { cpuIsas, nativeBuild } from './native-kernels';
import { fusedOptimizerStep } from './optimizer-step';
import { softmax } from './softmax';
import { upsampleNearest2x } from './upsample';
import { useNativeKernels, wasmKernels, wasmKernelsFused } from './wasm-kernels';

// The compiler npm ci's build would use (c/native/build.cjs: DDPM_CC, else the first on the PATH).
const { findCompiler } = require('../../c/native/build.cjs') as { findCompiler: () => string | undefined };
const compiler = findCompiler();
const built = nativeBuild(true);

beforeAll(async () => {
  await tf.setBackend('wasm');
});
afterEach(() => {
  useNativeKernels(false);
  setKernelSwitches({ wasmFma: true, threads: 1 });
});

describe('the native build', () => {
  it('is what npm ci built where a C compiler is installed, for the widest instruction set the CPU runs', () => {
    if (compiler === undefined) {
      console.warn('SKIPPED: no C compiler, so no native kernels to check (apt-get install clang)');
      expect(typeof built).toBe('string');
      return;
    }
    if (typeof built === 'string') throw new Error(`a C compiler (${compiler}) is installed, yet: ${built}`);
    expect(built.isa).toBe(cpuIsas()[0]);
    expect(nativeBuild(false)).toMatchObject({ isa: built.isa, fused: false });
  });

  it('reads the instruction sets from the CPU flags', () => {
    const v3 = new Set(['sse4_2', 'ssse3', 'popcnt', 'avx2', 'fma', 'bmi1', 'bmi2', 'movbe', 'f16c']);
    expect(cpuIsas('x64', v3)).toEqual(['x86-64-v3', 'x86-64-v2']);
    const v4 = new Set([...v3, 'avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl']);
    expect(cpuIsas('x64', v4)).toEqual(['x86-64-v4', 'x86-64-v3', 'x86-64-v2']);
    expect(cpuIsas('x64', new Set(['sse2']))).toEqual([]);
    expect(cpuIsas('arm64', undefined)).toEqual(['armv8-a']);
    expect(cpuIsas('riscv64', undefined)).toEqual([]);
  });
});

/**
 * Values and gradients of sum(f(inputs) · probe) with our kernels as the wasm module, then as the
 * native build with 1, 2 and 3 threads: every one the same bits.
 */
function onEveryBuild(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  shapes: number[][],
): { module: Float32Array[]; native: Float32Array[][] } {
  const run = (): Float32Array[] =>
    tf.tidy(() => {
      const inputs = shapes.map((s, i) => lcgTensor(s, 31 + i));
      const out = f(...inputs);
      const probe = lcgTensor(out.shape, 97);
      const g = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), probe)));
      return [out, ...g(inputs)].map((t) => t.dataSync() as Float32Array);
    });
  useNativeKernels(false);
  const module = run();
  const native = [1, 2, 3].map((threads) => {
    setKernelSwitches({ threads });
    useNativeKernels(true);
    return run();
  });
  return { module, native };
}

const CASES: [string, (...xs: tf.Tensor[]) => tf.Tensor, number[][]][] = [
  // Winograd: tiles across blocks of 64, odd sizes (partial tiles), channels off the vector width.
  [
    '3×3 convolution, 3 blocks of tiles',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D),
    [[3, 16, 16, 32], [3, 3, 32, 48], [48]],
  ],
  [
    // The filter gradient's tasks take ranges of input channels: uneven ones with 3 threads.
    '3×3 convolution, 128 channels',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D),
    [[2, 10, 10, 128], [3, 3, 128, 64], [64]],
  ],
  [
    '3×3 convolution, odd sizes',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D),
    [[2, 9, 7, 12], [3, 3, 12, 20], [20]],
  ],
  [
    '3×3 convolution, odd sizes, channels in whole vectors',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D),
    [[2, 9, 7, 16], [3, 3, 16, 32], [32]],
  ],
  [
    'stride-2 convolution (patches times the filter), 2 blocks of pixels and a partial one',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, 2),
    [[3, 12, 10, 16], [3, 3, 16, 32], [32]],
  ],
  [
    'a convolution of three channels',
    (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D),
    [[2, 7, 5, 3], [3, 3, 3, 8], [8]],
  ],
  [
    'batched products (attention)',
    (a, b) => matMul(a as tf.Tensor3D, b as tf.Tensor3D),
    [
      [3, 37, 20],
      [3, 20, 36],
    ],
  ],
  [
    'products with b transposed',
    (a, b) => matMul(a as tf.Tensor3D, b as tf.Tensor3D, true),
    [
      [2, 40, 12],
      [2, 44, 12],
    ],
  ],
  [
    '3×3 convolution with a bias per image and a residual',
    (x, w, b, ib, res) =>
      conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, 1, {
        imageBias: ib as tf.Tensor2D,
        residual: res as tf.Tensor4D,
      }),
    [[2, 9, 7, 16], [3, 3, 16, 32], [32], [2, 32], [2, 9, 7, 32]],
  ],
  ['dense', (x, w, b) => dense(x, w as tf.Tensor2D, b as tf.Tensor1D), [[2, 5, 5, 24], [24, 36], [36]]],
  [
    'dense with a residual',
    (x, w, b, res) => dense(x, w as tf.Tensor2D, b as tf.Tensor1D, res),
    [[2, 5, 5, 24], [24, 36], [36], [2, 5, 5, 36]],
  ],
  [
    'GroupNorm and swish',
    (x, g, b) => groupNorm(x as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, { numGroups: 4, swish: true }),
    [[2, 6, 5, 32], [32], [32]],
  ],
  [
    'GroupNorm and swish, 3 images, 5 groups of 4 channels',
    (x, g, b) => groupNorm(x as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, { numGroups: 5, swish: true }),
    [[3, 4, 3, 20], [20], [20]],
  ],
  [
    'GroupNorm, 256 channels',
    (x, g, b) => groupNorm(x as tf.Tensor4D, g as tf.Tensor1D, b as tf.Tensor1D, { numGroups: 32, swish: false }),
    [[3, 3, 2, 256], [256], [256]],
  ],
  ['softmax, rows of 40', (x) => softmax(x), [[5, 40]]],
  ['softmax, rows of 256', (x) => softmax(x), [[3, 2, 256]]],
  [
    'concat, upsample, softmax, dropout',
    (a, b) => softmax(dropout(upsampleNearest2x(concatChannels(a as tf.Tensor4D, b as tf.Tensor4D)), 0.1, 7)),
    [
      [2, 4, 3, 8],
      [2, 4, 3, 4],
    ],
  ],
];

describe('every native kernel gives the wasm module’s bits, for any number of threads', () => {
  const present = typeof built === 'object';
  if (!present) console.warn(`SKIPPED: ${String(built)}`);
  (present ? it.each : it.skip.each)([true, false])('with fused multiply-adds: %s', (fma) => {
    setKernelSwitches({ wasmFma: fma });
    for (const [name, f, shapes] of CASES) {
      const { module, native } = onEveryBuild(f, shapes);
      native.forEach((outputs, threads) => {
        outputs.forEach((values, i) => {
          if (!values.every((v, k) => Object.is(v, module[i]![k])))
            throw new Error(`${name}: output ${i} with ${threads + 1} thread(s) differs from the wasm module's`);
        });
      });
      expect(native[0]!.length).toBe(shapes.length + 1);
    }
    useNativeKernels(true);
    expect(wasmKernelsFused()).toBe(fma && typeof built === 'object' && built.isa !== 'x86-64-v2');
  });

  (present ? it : it.skip)('the optimizer step, and values still equal the composed tfjs ops', () => {
    const step = (): Float32Array[] =>
      tf.tidy(() => {
        const [p, g, m, v, ema] = [0, 1, 2, 3, 4].map((i) => lcgTensor([1001], 50 + i));
        const abs = tf.abs(v!);
        const out = fusedOptimizerStep(
          { p: p!, g: g!, m: m!, v: abs, ema: ema! },
          { scale: 0.5, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, lrT: 2e-4, decay: 0.9999 },
        );
        return [out.p, out.m, out.v, out.ema].map((t) => t.dataSync() as Float32Array);
      });
    const module = step();
    useNativeKernels(true);
    setKernelSwitches({ threads: 2 });
    const native = step();
    native.forEach((values, i) => expect(values.every((x, k) => Object.is(x, module[i]![k]))).toBe(true));
    // And the native convolution against tfjs's own on the cpu backend.
    const ours = tf.tidy(() =>
      conv2d(
        lcgTensor([2, 8, 8, 16], 1) as tf.Tensor4D,
        lcgTensor([3, 3, 16, 16], 2) as tf.Tensor4D,
        lcgTensor([16], 3) as tf.Tensor1D,
      ).dataSync(),
    );
    expect(wasmKernels()).toBeDefined();
    const reference = tf.tidy(() => {
      const x = lcgTensor([2, 8, 8, 16], 1);
      const w = lcgTensor([3, 3, 16, 16], 2);
      return tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), lcgTensor([16], 3)).dataSync();
    });
    expect(maxRelError(ours, reference)).toBeLessThan(1e-5);
  });

  (present ? it : it.skip)('leaves no tensors behind', () => {
    useNativeKernels(true);
    setKernelSwitches({ threads: 2 });
    const [name, f, shapes] = CASES[0]!;
    onEveryBuild(f, shapes);
    const before = tf.memory().numTensors;
    onEveryBuild(f, shapes);
    expect({ name, tensors: tf.memory().numTensors }).toEqual({ name, tensors: before });
  });
});

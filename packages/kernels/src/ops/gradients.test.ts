import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@ddpm/kernels';

import { lcgTensor, maxRelError } from '../test-support';

import { concatChannels } from './concat';
import { conv2d, withTfjsConvolutions } from './conv2d';
import { dense, matMul } from './matmul';
import { upsampleNearest2x } from './upsample';
import { copyTensorsInto, wasmHeap } from './wasm-heap';
import { setKernelSwitches } from '../switches';
import { wasmKernels } from './wasm-kernels';
import { winogradApplies } from './winograd';

/** Gradients of sum(f(inputs) · probe) w.r.t. every input, on the given backend. */
async function gradsOn(
  backend: string,
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  shapes: number[][],
  probeShape: number[],
): Promise<{ value: Float32Array; grads: Float32Array[] }> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const inputs = shapes.map((s, i) => lcgTensor(s, 11 + i));
    const probe = lcgTensor(probeShape, 99);
    const g = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), probe)));
    const value = f(...inputs).dataSync() as Float32Array;
    return { value, grads: g(inputs).map((t) => t.dataSync() as Float32Array) };
  });
}

function expectClose(actual: Float32Array, expected: Float32Array, tol: number): void {
  expect(actual.length).toBe(expected.length);
  expect(maxRelError(actual, expected)).toBeLessThan(tol);
}

describe('conv2d with composed gradients', () => {
  it.each([
    [1, [2, 6, 6, 3], [3, 3, 3, 4]],
    [2, [2, 8, 8, 3], [3, 3, 3, 5]],
    [1, [3, 4, 4, 2], [3, 3, 2, 2]],
  ] as const)(
    'stride %d: value and gradients on wasm equal the cpu backend built-ins',
    async (stride, xShape, wShape) => {
      const cout = wShape[3];
      const out = [xShape[0], xShape[1] / stride, xShape[2] / stride, cout];
      const reference = await gradsOn(
        'cpu',
        (x, w, b) => tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, 'same'), b),
        [[...xShape], [...wShape], [cout]],
        out,
      );
      const ours = await gradsOn(
        'wasm',
        (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, stride),
        [[...xShape], [...wShape], [cout]],
        out,
      );
      expectClose(ours.value, reference.value, 1e-5);
      ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
    },
  );

  it.each([
    ['one block of tiles, Cout in one lane group of 8', [2, 6, 6, 4], [3, 3, 4, 8]],
    ['odd height and width (partial tiles), Cout 4', [3, 5, 7, 8], [3, 3, 8, 4]],
    ['162 tiles: blocks of 64, 64 and 34, Cout 12 (8 + 4 lanes)', [2, 18, 18, 8], [3, 3, 8, 12]],
    ['a 1×1 image (the padding is the whole patch)', [2, 1, 1, 4], [3, 3, 4, 4]],
  ] as const)(
    'Winograd F(2×2, 3×3), %s: value and gradients on wasm equal the cpu backend built-ins',
    async (_, xShape, wShape) => {
      await tf.setBackend('wasm');
      expect(winogradApplies(xShape, wShape, 1)).toBe(true); // this shape takes the Winograd path
      const cout = wShape[3];
      const out = [xShape[0], xShape[1], xShape[2], cout];
      const reference = await gradsOn(
        'cpu',
        (x, w, b) => tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), b),
        [[...xShape], [...wShape], [cout]],
        out,
      );
      const ours = await gradsOn(
        'wasm',
        (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, 1),
        [[...xShape], [...wShape], [cout]],
        out,
      );
      expectClose(ours.value, reference.value, 1e-5);
      ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
    },
  );

  it('Winograd applies only to 3×3 stride-1 convolutions with channels in lanes of four, and its switch turns it off', async () => {
    await tf.setBackend('wasm');
    expect(winogradApplies([2, 8, 8, 32], [3, 3, 32, 64], 1)).toBe(true);
    expect(winogradApplies([2, 8, 8, 32], [3, 3, 32, 64], 2)).toBe(false);
    expect(winogradApplies([2, 8, 8, 3], [3, 3, 3, 32], 1)).toBe(false);
    expect(winogradApplies([2, 8, 8, 32], [3, 3, 32, 3], 1)).toBe(false);
    expect(winogradApplies([2, 8, 8, 32], [1, 1, 32, 32], 1)).toBe(false);
    const before = setKernelSwitches({ winograd: false });
    try {
      expect(winogradApplies([2, 8, 8, 32], [3, 3, 32, 64], 1)).toBe(false);
    } finally {
      setKernelSwitches(before);
    }
    await tf.setBackend('cpu');
    expect(winogradApplies([2, 8, 8, 32], [3, 3, 32, 64], 1)).toBe(false);
  });

  it('Winograd convolutions leave no tensors behind, forward and backward', async () => {
    await tf.setBackend('wasm');
    const x = lcgTensor([2, 6, 6, 8], 1) as tf.Tensor4D;
    const w = lcgTensor([3, 3, 8, 4], 2) as tf.Tensor4D;
    const b = lcgTensor([4], 3) as tf.Tensor1D;
    const before = tf.memory().numTensors;
    tf.tidy(() => conv2d(x, w, b, 1).dataSync());
    const grads = tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) =>
      tf.sum(conv2d(p as tf.Tensor4D, q as tf.Tensor4D, r as tf.Tensor1D, 1)),
    )([x, w, b]);
    tf.dispose(grads);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the stride-2 gradient matches central finite differences', async () => {
    await tf.setBackend('wasm');
    const x = lcgTensor([1, 4, 4, 2], 3) as tf.Tensor4D;
    const w = lcgTensor([3, 3, 2, 3], 4) as tf.Tensor4D;
    const b = tf.zeros<tf.Rank.R1>([3]);
    const probe = lcgTensor([1, 2, 2, 3], 5);
    const loss = (xx: tf.Tensor4D, ww: tf.Tensor4D): number =>
      tf.tidy(() => tf.sum(tf.mul(conv2d(xx, ww, b, 2), probe)).dataSync()[0]!);
    const [dx, dw] = tf.grads((xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, b, 2), probe)),
    )([x, w]);
    const eps = 1e-2;
    // (f(v + ε·e_i) − f(v − ε·e_i)) / 2ε, with v the values of a tensor of the given shape.
    const centralDifference = (v: tf.Tensor4D, i: number, f: (vv: tf.Tensor4D) => number): number => {
      const plus = Float32Array.from(v.dataSync());
      const minus = Float32Array.from(plus);
      plus[i]! += eps;
      minus[i]! -= eps;
      return (f(tf.tensor4d(plus, v.shape)) - f(tf.tensor4d(minus, v.shape))) / (2 * eps);
    };
    for (const i of [0, 5, 13, 31]) {
      expect(Math.abs(centralDifference(x, i, (xx) => loss(xx, w)) - dx!.dataSync()[i]!)).toBeLessThan(2e-3);
    }
    for (const i of [0, 7, 20, 53]) {
      expect(Math.abs(centralDifference(w, i, (ww) => loss(x, ww)) - dw!.dataSync()[i]!)).toBeLessThan(2e-3);
    }
  });
});

describe('the direct kernel’s gradients (stride 2, three channels)', () => {
  it.each([
    ['odd sizes, stride 2 (padding after only)', 2, [2, 9, 7, 8], [3, 3, 8, 12], [2, 5, 4, 12]],
    ['three channels, stride 1 (patch rows padded to 28)', 1, [3, 5, 6, 3], [3, 3, 3, 8], [3, 5, 6, 8]],
  ] as const)('%s: value and gradients equal the cpu built-ins', async (_, stride, xShape, wShape, out) => {
    const shapes = [[...xShape], [...wShape], [wShape[3]]];
    const reference = await gradsOn(
      'cpu',
      (x, w, b) => tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, 'same'), b),
      shapes,
      [...out],
    );
    const ours = await gradsOn(
      'wasm',
      (x, w, b) => conv2d(x as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, stride),
      shapes,
      [...out],
    );
    expect(winogradApplies(xShape, wShape, stride)).toBe(false);
    expectClose(ours.value, reference.value, 1e-5);
    ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
  });
});

describe('withTfjsConvolutions', () => {
  it('runs tfjs’s convolution where Winograd does not apply, for recipes recorded with it, and only while it runs', async () => {
    await tf.setBackend('wasm');
    const [x, w, b] = [lcgTensor([2, 8, 8, 4], 1), lcgTensor([3, 3, 4, 8], 2), lcgTensor([8], 3)] as [
      tf.Tensor4D,
      tf.Tensor4D,
      tf.Tensor1D,
    ];
    const tfjs = tf.fused.conv2d({ x, filter: w, bias: b, strides: 2, pad: 'same' });
    const inside = await withTfjsConvolutions(() => Promise.resolve(conv2d(x, w, b, 2)));
    const outside = conv2d(x, w, b, 2);
    expect(Array.from(inside.dataSync())).toEqual(Array.from(tfjs.dataSync()));
    expect(maxRelError(outside.dataSync(), tfjs.dataSync())).toBeLessThan(1e-5);
    expect(Array.from(outside.dataSync())).not.toEqual(Array.from(tfjs.dataSync())); // our kernel: other roundings
    tf.dispose([x, w, b, tfjs, inside, outside]);
  });
});

describe('what a convolution and a dense layer add in their pass', () => {
  // conv(x) + b + imageBias[n] + residual, and x·W + b + residual: as the cpu backend's built-ins compose them.
  it.each([
    ['Winograd', 1, [2, 6, 6, 8], [3, 3, 8, 12]],
    ['stride 2 (tfjs conv2d)', 2, [2, 8, 8, 4], [3, 3, 4, 8]],
    ['channels off the lanes (tfjs conv2d)', 1, [2, 5, 5, 3], [3, 3, 3, 6]],
  ] as const)(
    'conv2d with a bias per image and a residual, %s, matches the cpu built-ins',
    async (_, stride, xShape, wShape) => {
      const [b, h, w] = xShape;
      const cout = wShape[3];
      const out = [b, h / stride, w / stride, cout];
      const shapes = [[...xShape], [...wShape], [cout], [b, cout], out];
      const reference = await gradsOn(
        'cpu',
        (x, wt, bias, ib, res) =>
          tf.add(
            tf.add(
              tf.add(tf.conv2d(x as tf.Tensor4D, wt as tf.Tensor4D, stride, 'same'), bias),
              tf.reshape(ib, [b, 1, 1, cout]),
            ),
            res,
          ),
        shapes,
        out,
      );
      const ours = await gradsOn(
        'wasm',
        (x, wt, bias, ib, res) =>
          conv2d(x as tf.Tensor4D, wt as tf.Tensor4D, bias as tf.Tensor1D, stride, {
            imageBias: ib as tf.Tensor2D,
            residual: res as tf.Tensor4D,
          }),
        shapes,
        out,
      );
      expect(winogradApplies(xShape, wShape, stride)).toBe(_ === 'Winograd');
      expectClose(ours.value, reference.value, 1e-5);
      expect(ours.grads).toHaveLength(5);
      ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
    },
  );

  it('conv2d with only a residual, and dense with a residual, match the cpu built-ins', async () => {
    const convShapes = [[2, 4, 4, 8], [3, 3, 8, 8], [8], [2, 4, 4, 8]];
    const convRef = await gradsOn(
      'cpu',
      (x, wt, bias, res) => tf.add(tf.add(tf.conv2d(x as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'), bias), res),
      convShapes,
      [2, 4, 4, 8],
    );
    const convOurs = await gradsOn(
      'wasm',
      (x, wt, bias, res) =>
        conv2d(x as tf.Tensor4D, wt as tf.Tensor4D, bias as tf.Tensor1D, 1, { residual: res as tf.Tensor4D }),
      convShapes,
      [2, 4, 4, 8],
    );
    const denseShapes = [[2, 3, 3, 8], [8, 12], [12], [2, 3, 3, 12]];
    const denseRef = await gradsOn(
      'cpu',
      (x, wt, bias, res) => tf.add(tf.add(tf.reshape(tf.matMul(tf.reshape(x, [-1, 8]), wt), [2, 3, 3, 12]), bias), res),
      denseShapes,
      [2, 3, 3, 12],
    );
    const denseOurs = await gradsOn(
      'wasm',
      (x, wt, bias, res) => dense(x, wt as tf.Tensor2D, bias as tf.Tensor1D, res),
      denseShapes,
      [2, 3, 3, 12],
    );
    for (const [ours, reference] of [
      [convOurs, convRef],
      [denseOurs, denseRef],
    ] as const) {
      expectClose(ours.value, reference.value, 1e-5);
      expect(ours.grads).toHaveLength(4);
      ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
    }
  });
});

describe('matMul and dense with explicit-transpose gradients', () => {
  it.each([false, true])('batched a·b (transposeB=%s) matches the cpu built-ins', async (transposeB) => {
    const aShape = [2, 5, 4];
    const bShape = transposeB ? [2, 3, 4] : [2, 4, 3];
    const reference = await gradsOn('cpu', (a, b) => tf.matMul(a, b, false, transposeB), [aShape, bShape], [2, 5, 3]);
    const ours = await gradsOn(
      'wasm',
      (a, b) => matMul(a as tf.Tensor3D, b as tf.Tensor3D, transposeB),
      [aShape, bShape],
      [2, 5, 3],
    );
    expectClose(ours.value, reference.value, 1e-5);
    ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
  });

  it.each([false, true])(
    'batched a·b (transposeB=%s) with dimensions in lanes of four (the aᵀ·dy kernel) matches the cpu built-ins',
    async (transposeB) => {
      const aShape = [3, 130, 8];
      const bShape = transposeB ? [3, 12, 8] : [3, 8, 12];
      const reference = await gradsOn(
        'cpu',
        (a, b) => tf.matMul(a, b, false, transposeB),
        [aShape, bShape],
        [3, 130, 12],
      );
      const ours = await gradsOn(
        'wasm',
        (a, b) => matMul(a as tf.Tensor3D, b as tf.Tensor3D, transposeB),
        [aShape, bShape],
        [3, 130, 12],
      );
      expectClose(ours.value, reference.value, 1e-5);
      ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
    },
  );

  it('dense with channels in lanes of four (the aᵀ·dy kernel over 300 rows) matches the cpu built-ins', async () => {
    const reference = await gradsOn(
      'cpu',
      (x, w, b) => tf.add(tf.reshape(tf.matMul(tf.reshape(x, [-1, 8]), w), [3, 10, 10, 12]), b),
      [[3, 10, 10, 8], [8, 12], [12]],
      [3, 10, 10, 12],
    );
    const ours = await gradsOn(
      'wasm',
      (x, w, b) => dense(x, w as tf.Tensor2D, b as tf.Tensor1D),
      [[3, 10, 10, 8], [8, 12], [12]],
      [3, 10, 10, 12],
    );
    expectClose(ours.value, reference.value, 1e-5);
    ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
  });

  it('dense over the last axis of an image tensor matches the cpu built-ins', async () => {
    const f = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor => dense(x, w as tf.Tensor2D, b as tf.Tensor1D);
    const reference = await gradsOn(
      'cpu',
      (x, w, b) => tf.add(tf.reshape(tf.matMul(tf.reshape(x, [-1, 4]), w), [2, 3, 3, 6]), b),
      [[2, 3, 3, 4], [4, 6], [6]],
      [2, 3, 3, 6],
    );
    const ours = await gradsOn('wasm', (x, w, b) => f(x, w, b), [[2, 3, 3, 4], [4, 6], [6]], [2, 3, 3, 6]);
    expectClose(ours.value, reference.value, 1e-5);
    ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-5));
  });
});

describe('skip concatenation and upsampling', () => {
  it('concatChannels: value and split gradient on wasm equal the cpu concat', async () => {
    const shapes = [
      [2, 3, 3, 5],
      [2, 3, 3, 3],
    ];
    const reference = await gradsOn('cpu', (a, b) => tf.concat([a, b], 3), shapes, [2, 3, 3, 8]);
    const ours = await gradsOn(
      'wasm',
      (a, b) => concatChannels(a as tf.Tensor4D, b as tf.Tensor4D),
      shapes,
      [2, 3, 3, 8],
    );
    expect(wasmKernels()).toBeDefined(); // the kernel path ran, not the portable fallback
    expectClose(ours.value, reference.value, 1e-7);
    ours.grads.forEach((g, i) => expectClose(g, reference.grads[i]!, 1e-7));
  });

  it('upsampleNearest2x: value equals resizeNearestNeighbor, gradient sums each 2×2 block of dy', async () => {
    // Not compared with tfjs's own ResizeNearestNeighborGrad: in 4.22 the cpu kernel is wrong for
    // this non-square input (max error 4.5) and the wasm one for batches > 1 on square inputs.
    const reference = await gradsOn(
      'cpu',
      (x) => tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [6, 8]),
      [[3, 3, 4, 2]],
      [3, 6, 8, 2],
    );
    const ours = await gradsOn('wasm', (x) => upsampleNearest2x(x as tf.Tensor4D), [[3, 3, 4, 2]], [3, 6, 8, 2]);
    expectClose(ours.value, reference.value, 1e-7);
    const probe = lcgTensor([3, 6, 8, 2], 99).dataSync();
    const at = (b: number, i: number, j: number, c: number): number => probe[((b * 6 + i) * 8 + j) * 2 + c]!;
    const expected = new Float32Array(3 * 3 * 4 * 2);
    for (let b = 0; b < 3; b++)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 4; j++)
          for (let c = 0; c < 2; c++)
            expected[((b * 3 + i) * 4 + j) * 2 + c] =
              at(b, 2 * i, 2 * j, c) +
              at(b, 2 * i + 1, 2 * j, c) +
              at(b, 2 * i, 2 * j + 1, c) +
              at(b, 2 * i + 1, 2 * j + 1, c);
    expectClose(ours.grads[0]!, expected, 1e-6);
  });
});

describe('the wasm heap', () => {
  it('Identity shares memory: a clone outlives its source and nothing leaks', async () => {
    await tf.setBackend('wasm');
    const heap = wasmHeap()!;
    const before = tf.memory().numBytes;
    const x = lcgTensor([4, 5], 1);
    const expected = x.dataSync().slice();
    const y = tf.clone(x);
    expect(heap.offsetOf(y)).toBe(heap.offsetOf(x));
    x.dispose();
    expect(y.dataSync()).toEqual(expected);
    y.dispose();
    expect(tf.memory().numBytes).toBe(before);
  });

  it.each(['wasm', 'cpu'])(
    "copyTensorsInto on %s: the tensors one after the other, into the caller's array, no tensors left",
    async (backend) => {
      await tf.setBackend(backend);
      const parts = [lcgTensor([3, 4], 1), lcgTensor([5], 2), lcgTensor([2, 2, 2], 3)];
      const expected = Float32Array.from([...parts.flatMap((t) => [...t.dataSync()])]);
      const target = new Float32Array(expected.length);
      const before = tf.memory().numTensors;
      expect(await copyTensorsInto(parts, target)).toBe(target);
      expect(target).toEqual(expected);
      expect(tf.memory().numTensors).toBe(before);
      await expect(copyTensorsInto(parts, new Float32Array(expected.length - 1))).rejects.toThrow('do not fit');
      tf.dispose(parts);
    },
  );

  it('batched products on views leave no tensors behind, forward and backward', async () => {
    await tf.setBackend('wasm');
    const a = lcgTensor([3, 4, 5], 1) as tf.Tensor3D;
    const b = lcgTensor([3, 5, 2], 2) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(matMul(p as tf.Tensor3D, q as tf.Tensor3D)))([
      a,
      b,
    ]);
    tf.dispose([da!, db!]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

/**
 * Matrix products that stay on the wasm backend's fast path (see backend-caps.ts): every product
 * is 2-D and untransposed, transposes are explicit, the gradients' aᵀ·dy products run our kernel
 * that reads a as it is (heap-kernels.ts matMulTN), batched products run our kernel (or one 2-D
 * XNNPACK product per batch element on views of the operands, see wasm-heap.ts), and bias gradients are row sums
 * (backend-caps.ts). Native backends use their own kernels and gradients.
 */
import * as tf from '@tensorflow/tfjs-core';

import { hostMemoryBackend, sumToLastAxis, useComposedGradients } from './backend-caps';
import { wasmHeap } from './wasm-heap';
import { WasmKernels, wasmKernels } from './wasm-kernels';

// Transposes run our SIMD kernel on wasm (4×4 register blocks; tfjs-wasm's Transpose is
// 2–6× slower on these shapes), differentiable as their own adjoint.
const kernelTranspose = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor2D | tf.Tensor3D;
  const kernels = wasmKernels()!;
  return {
    value: kernels.transposeLast2(x),
    gradFunc: (dy: tf.Tensor) => kernels.transposeLast2(dy as tf.Tensor2D | tf.Tensor3D),
  };
}) as <T extends tf.Tensor2D | tf.Tensor3D>(x: T) => T;

function t2(x: tf.Tensor2D): tf.Tensor2D {
  return wasmKernels() === undefined ? tf.transpose(x, [1, 0]) : kernelTranspose(x);
}

function swapLast(x: tf.Tensor3D): tf.Tensor3D {
  return wasmKernels() === undefined ? tf.transpose(x, [0, 2, 1]) : kernelTranspose(x);
}

/**
 * a·b (+ bias per column) (+ residual) for 2-D operands: our kernel on wasm where it applies (see
 * batched), adding both in the same pass, else tfjs's.
 */
function product(
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  addends: { bias?: tf.Tensor1D; residual?: tf.Tensor2D } = {},
): tf.Tensor2D {
  const kernels = wasmKernels();
  return tf.tidy((): tf.Tensor2D => {
    if (kernels === undefined || b.shape[1] % 4 !== 0) {
      let out: tf.Tensor2D = tf.matMul(a, b);
      if (addends.bias !== undefined) out = tf.add<tf.Tensor2D>(out, addends.bias);
      if (addends.residual !== undefined) out = tf.add<tf.Tensor2D>(out, addends.residual);
      return out;
    }
    const out = kernels.batchMatMul(
      tf.reshape<tf.Rank.R3>(a, [1, ...a.shape]),
      tf.reshape<tf.Rank.R3>(b, [1, ...b.shape]),
      addends,
    );
    return tf.reshape<tf.Rank.R2>(out, [a.shape[0], b.shape[1]]);
  });
}

/**
 * aᵀ·dy (the gradient at b of a·b), per batch element for 3-D operands: our kernel on wasm,
 * which reads a as it is (no transposed copy, no packing of dy), else a transpose and products.
 */
function transposedTimes<T extends tf.Tensor2D | tf.Tensor3D>(a: T, dy: T): T {
  const kernels = wasmKernels();
  if (kernels !== undefined && WasmKernels.supportsTN(a.shape[a.rank - 1]!, dy.shape[dy.rank - 1]!)) {
    return kernels.matMulTN(a, dy);
  }
  if (a.rank === 2) return product(t2(a as tf.Tensor2D), dy as tf.Tensor2D) as T;
  return batched(swapLast(a as tf.Tensor3D), dy as tf.Tensor3D) as T;
}

/** The 2-D slices of a [B, m, n] tensor. */
function splitBatch(x: tf.Tensor3D): tf.Tensor2D[] {
  const [b, m, n] = x.shape;
  if (!hostMemoryBackend()) return tf.unstack(x) as tf.Tensor2D[];
  // cpu: one host copy rather than one per slice.
  const values = x.dataSync() as Float32Array;
  return Array.from({ length: b }, (_, i) => tf.tensor2d(values.subarray(i * m * n, (i + 1) * m * n), [m, n]));
}

/** Batched [B, m, k]·[B, k, n] as B plain 2-D products. */
function batched(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  const kernels = wasmKernels();
  if (kernels !== undefined && b.shape[2] % 4 === 0) {
    // Our register-blocked kernel reads both operands in place (XNNPACK packs b anew at every
    // call, b being a fresh tensor, which costs it most of its speed on attention's shapes).
    return kernels.batchMatMul(a, b);
  }
  const heap = wasmHeap();
  if (heap !== undefined) {
    // One XNNPACK GEMM per batch element on views of the operands, written straight into the
    // result: nothing is copied.
    const [batch, m, k] = a.shape;
    const n = b.shape[2];
    const out = heap.allocate([batch, m, n]) as tf.Tensor3D;
    const [ao, bo, oo] = [heap.offsetOf(a), heap.offsetOf(b), heap.offsetOf(out)];
    for (let i = 0; i < batch; i++) {
      heap.gemmInto(
        { offset: ao + i * m * k * 4, rows: m, cols: k },
        { offset: bo + i * k * n * 4, rows: k, cols: n },
        { offset: oo + i * m * n * 4, rows: m, cols: n },
      );
    }
    return out;
  }
  return tf.tidy(() => {
    const as = splitBatch(a);
    const bs = splitBatch(b);
    return tf.stack(as.map((ai, i) => tf.matMul(ai, bs[i]!))) as tf.Tensor3D;
  });
}

const composed2d = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: product(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [as, bs] = saved as [tf.Tensor2D, tf.Tensor2D];
      const dy2 = dy as tf.Tensor2D;
      // da = dy·bᵀ (the transpose made explicit), db = aᵀ·dy.
      return [product(dy2, t2(bs)), transposedTimes(as, dy2)];
    },
  };
}) as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

const composed3d = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: batched(a, b),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [as, bs] = saved as [tf.Tensor3D, tf.Tensor3D];
      const dy3 = dy as tf.Tensor3D;
      return [batched(dy3, swapLast(bs)), transposedTimes(as, dy3)];
    },
  };
}) as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;

/** x·W + b (+ a residual, whose gradient is dy itself) with composed gradients. */
function makeComposedDense(withResidual: boolean) {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [x, w, bias, residual] = args.slice(0, -1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor2D?];
    save([x, w]);
    return {
      value: product(x, w, { bias, ...(withResidual ? { residual: residual! } : {}) }),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dy2 = dy as tf.Tensor2D;
        const grads = [product(dy2, t2(ws)), transposedTimes(xs, dy2), sumToLastAxis(dy2)];
        return withResidual ? [...grads, tf.clone(dy2)] : grads;
      },
    };
  }) as (x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor1D, residual?: tf.Tensor2D) => tf.Tensor2D;
}

const composedDense = { plain: makeComposedDense(false), withResidual: makeComposedDense(true) };

/**
 * a·b, or a·bᵀ with `transposeB`, for 2-D or batched 3-D operands, with gradients that stay on
 * the fast path.
 */
export function matMul<T extends tf.Tensor2D | tf.Tensor3D>(a: T, b: tf.Tensor2D | tf.Tensor3D, transposeB = false): T {
  if (!useComposedGradients()) return tf.matMul<T>(a, b, false, transposeB);
  if (a.rank === 2) {
    const b2 = transposeB ? t2(b as tf.Tensor2D) : (b as tf.Tensor2D);
    return composed2d(a as tf.Tensor2D, b2) as T;
  }
  const b3 = transposeB ? swapLast(b as tf.Tensor3D) : (b as tf.Tensor3D);
  return composed3d(a as tf.Tensor3D, b3) as T;
}

/**
 * x·W + b over the last axis of x (any rank): the official `nn.dense` / `nn.nin`; `residual`, of
 * the output's shape, is added in the same pass on our kernels (an attention block's skip).
 */
export function dense(x: tf.Tensor, weight: tf.Tensor2D, bias: tf.Tensor1D, residual?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inC = x.shape[x.rank - 1]!;
    const outC = weight.shape[1];
    const flat = (x.rank === 2 ? x : tf.reshape(x, [-1, inC])) as tf.Tensor2D;
    const flatResidual = residual === undefined ? undefined : tf.reshape<tf.Rank.R2>(residual, [-1, outC]);
    let y: tf.Tensor2D;
    if (!useComposedGradients()) {
      y = tf.add(tf.matMul(flat, weight), bias);
      if (flatResidual !== undefined) y = tf.add(y, flatResidual);
    } else if (flatResidual !== undefined) {
      y = composedDense.withResidual(flat, weight, bias, flatResidual);
    } else {
      y = composedDense.plain(flat, weight, bias);
    }
    return x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), outC]);
  });
}

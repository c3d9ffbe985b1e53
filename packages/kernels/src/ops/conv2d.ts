/**
 * 3×3 (or any k×k) convolution with bias, stride 1 or 2, TensorFlow 'SAME' padding, NHWC.
 *
 * On backends without fast convolution gradients (wasm) the gradients are composed from forward
 * convolutions, which run at the backend's full conv2d speed (docs/kernels.md):
 * - input gradient, stride 1: conv2d(dy, W rotated 180° with in/out swapped, 'same');
 * - input gradient, stride 2: one 2×2 conv of dy producing the four output phases at once,
 *   interleaved by depthToSpace (a polyphase form of the transposed convolution);
 * - filter gradient: one conv2d with the batch moved to channels (x as [Cin, H, W, B] and dy as
 *   [Ho, Wo, B, Cout], dilated by the stride), giving [Cin, k, k, Cout].
 * 3×3 stride-1 convolutions with channels in lanes of four (nearly all of the U-Net's) run as
 * Winograd F(2×2, 3×3) instead, forward and both gradients, where our wasm kernels load
 * (winograd.ts); the others (stride 2, the image's three channels) run our direct kernels where
 * Cout is a multiple of 4: patches times the filter, and for the gradients the patches' transpose
 * times dy (the filter's) and dy times the filter's transpose added back over each patch (the
 * input's).
 */
import * as tf from '@tensorflow/tfjs-core';

import { ProcessScope } from '../switches';
import { sumPerImage, sumToLastAxis, useComposedGradients } from './backend-caps';
import { type ConvAddends, wasmKernels } from './wasm-kernels';
import { winogradApplies, winogradConv, winogradFilterGradient, winogradInputGradient } from './winograd';

export type Stride = 1 | 2;

/** TensorFlow 'SAME' padding (before, after) along one axis of size n. */
export function samePadding(n: number, k: number, stride: Stride): [number, number] {
  const out = Math.ceil(n / stride);
  const total = Math.max((out - 1) * stride + k - n, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, k: number, stride: Stride): tf.Tensor4D {
  return tf.tidy(() => {
    const [, h, w] = x.shape;
    const [padTop, padBottom] = samePadding(h, k, stride);
    const [padLeft, padRight] = samePadding(w, k, stride);
    // Batch becomes the channel axis: x → [Cin, H', W', B], dy → [Ho, Wo, B, Cout].
    // (wasm's Pad and 4-D Transpose are two slow passes; our kernel does both in one.)
    const kernels = wasmKernels();
    const xT =
      kernels !== undefined
        ? kernels.padToChannelsFirst(x, padTop, padBottom, padLeft, padRight)
        : tf.transpose(
            tf.pad(x, [
              [0, 0],
              [padTop, padBottom],
              [padLeft, padRight],
              [0, 0],
            ]),
            [3, 1, 2, 0],
          );
    const dyT = tf.transpose(dy, [1, 2, 0, 3]);
    const full = tf.conv2d(xT, dyT, 1, 'valid', 'NHWC', stride);
    // full: [Cin, k', k', Cout] with k' ≥ k when 'SAME' padding exceeds the kernel's reach.
    const sliced = full.shape[1] === k && full.shape[2] === k ? full : tf.slice(full, [0, 0, 0, 0], [-1, k, k, -1]);
    return tf.transpose(sliced, [1, 2, 0, 3]);
  });
}

/**
 * The filter rotated by 180° with in/out channels swapped, [k, k, Cout, Cin]. The k×k taps are
 * reversed with a permutation product: wasm's Reverse kernel is slow even on small tensors.
 */
function rotatedFilter(filter: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [k, , cin, cout] = filter.shape;
    const taps = k * k;
    const reversal = tf.tensor2d(
      Array.from({ length: taps * taps }, (_, i) => (Math.floor(i / taps) + (i % taps) === taps - 1 ? 1 : 0)),
      [taps, taps],
    );
    const reversed = tf.reshape(tf.matMul(reversal, tf.reshape(filter, [taps, cin * cout])), [k, k, cin, cout]);
    return tf.transpose(reversed, [0, 1, 3, 2]) as tf.Tensor4D;
  });
}

function inputGradientStride1(dy: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.conv2d(dy, rotatedFilter(filter), 1, 'same'));
}

/**
 * Input gradient of a 3×3 stride-2 'SAME' convolution on even sizes (padding 0 before, 1 after):
 * dx[2m] takes taps 0 (from dy[m]) and 2 (from dy[m−1]); dx[2m+1] takes tap 1 (from dy[m]).
 * A 2×2 conv over dy padded by one row/column in front computes all four phases.
 */
const PHASE_TAPS: readonly (readonly [number, number])[] = [
  // [tap for offset 0 (dy[m−1]), tap for offset 1 (dy[m])] per phase; -1: no tap.
  [2, 0],
  [-1, 1],
];

function inputGradientStride2(dy: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [, , cin, cout] = filter.shape;
    const flat = tf.reshape(filter, [9, cin, cout]);
    const withZero = tf.concat([flat, tf.zeros([1, cin, cout])], 0); // index 9 is zeros
    const index: number[] = [];
    for (let ar = 0; ar < 2; ar++) {
      for (let ac = 0; ac < 2; ac++) {
        for (let pr = 0; pr < 2; pr++) {
          for (let pc = 0; pc < 2; pc++) {
            const kr = PHASE_TAPS[pr]![ar]!;
            const kc = PHASE_TAPS[pc]![ac]!;
            index.push(kr < 0 || kc < 0 ? 9 : kr * 3 + kc);
          }
        }
      }
    }
    const taps = tf.gather(withZero, tf.tensor1d(index, 'int32')); // [16, Cin, Cout]
    const kernel = tf.reshape(tf.transpose(tf.reshape(taps, [2, 2, 2, 2, cin, cout]), [0, 1, 5, 2, 3, 4]), [
      2,
      2,
      cout,
      4 * cin,
    ]);
    const phases = tf.conv2d(
      tf.pad(dy, [
        [0, 0],
        [1, 0],
        [1, 0],
        [0, 0],
      ]),
      kernel as tf.Tensor4D,
      1,
      'valid',
    );
    // Interleave the phases (depthToSpace, which is slow on wasm): [B, Ho, Wo, (pr, pc, Cin)] →
    // [B, Ho, pr, Wo, pc, Cin] → [B, 2Ho, 2Wo, Cin].
    const [b, ho, wo] = phases.shape;
    const split = tf.reshape(phases, [b, ho, wo, 2, 2, cin]);
    return tf.reshape(tf.transpose(split, [0, 1, 3, 2, 4, 5]), [b, 2 * ho, 2 * wo, cin]);
  });
}

const tfjsConvolutions = new ProcessScope();

/**
 * Runs `fn` with tfjs's conv2d and the composed gradients for the convolutions Winograd does not
 * take, process-wide while it runs: for recipes recorded before our direct kernel, whose pinned
 * bits it would change (the fmnist_cnn extractor's).
 */
export function withTfjsConvolutions<T>(fn: () => Promise<T>): Promise<T> {
  return tfjsConvolutions.run(fn);
}

/** Whether our direct kernel (patches times the filter) takes a filter of this shape: Cout a multiple of 4. */
function directApplies(filter: readonly number[]): boolean {
  return !tfjsConvolutions.active && filter[3]! % 4 === 0;
}

/** 'SAME' padding before the image, [top, left]. */
function beforePadding(x: readonly number[], k: number, stride: Stride): [number, number] {
  return [samePadding(x[1]!, k, stride)[0], samePadding(x[2]!, k, stride)[0]];
}

/**
 * conv2d(x, filter, stride, 'same') + bias by our kernel (patches times the filter) where it takes
 * the shapes (Cout a multiple of 4), else tfjs's fused conv2d; then the addends in their order (as
 * our kernels add them): a bias per image [B, C], then a residual.
 */
function directConv(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D, stride: Stride, addends: ConvAddends) {
  const kernels = wasmKernels();
  return tf.tidy(() => {
    const [, h, w] = x.shape;
    const k = filter.shape[0];
    let out =
      kernels !== undefined && directApplies(filter.shape)
        ? kernels.directConv(x, filter, bias, stride, beforePadding(x.shape, k, stride), [
            Math.ceil(h / stride),
            Math.ceil(w / stride),
          ])
        : tf.fused.conv2d({ x, filter, bias, strides: stride, pad: 'same' });
    const { imageBias, residual } = addends;
    if (imageBias !== undefined)
      out = tf.add(out, tf.reshape(imageBias, [imageBias.shape[0], 1, 1, imageBias.shape[1]]));
    if (residual !== undefined) out = tf.add(out, residual);
    return out;
  });
}

type ComposedConv = (x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D, ...addends: tf.Tensor[]) => tf.Tensor4D;

const composedConvs = new Map<string, ComposedConv>();

/** The convolution with composed gradients for a stride and the addends it takes (made once each). */
function composedConv(stride: Stride, imageBias: boolean, residual: boolean): ComposedConv {
  const key = `${stride}/${imageBias}/${residual}`;
  let conv = composedConvs.get(key);
  if (conv === undefined) {
    conv = makeComposedConv(stride, imageBias, residual);
    composedConvs.set(key, conv);
  }
  return conv;
}

function makeComposedConv(stride: Stride, withImageBias: boolean, withResidual: boolean): ComposedConv {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [x, filter, bias, ...rest] = args.slice(0, -1) as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D, ...tf.Tensor[]];
    const addends: ConvAddends = {
      ...(withImageBias ? { imageBias: rest[0] as tf.Tensor2D } : {}),
      ...(withResidual ? { residual: rest[withImageBias ? 1 : 0] as tf.Tensor4D } : {}),
    };
    save([x, filter]);
    const value = winogradApplies(x.shape, filter.shape, stride)
      ? winogradConv(x, filter, bias, addends)
      : directConv(x, filter, bias, stride, addends);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, fs] = saved as [tf.Tensor4D, tf.Tensor4D];
        const dy4 = dy as tf.Tensor4D;
        // The addends' gradients: per-image sums of dy, and dy itself.
        const extra = [...(withImageBias ? [sumPerImage(dy4)] : []), ...(withResidual ? [tf.clone(dy4)] : [])];
        const k = fs.shape[0];
        if (winogradApplies(xs.shape, fs.shape, stride)) {
          return [winogradInputGradient(dy4, fs), winogradFilterGradient(xs, dy4), sumToLastAxis(dy4), ...extra];
        }
        const kernels = wasmKernels();
        if (kernels !== undefined && directApplies(fs.shape)) {
          const [dw, dx] = kernels.directConvGradients(xs, fs, dy4, stride, beforePadding(xs.shape, k, stride));
          return [dx, dw, sumToLastAxis(dy4), ...extra];
        }
        let dx: tf.Tensor4D;
        if (stride === 1) dx = inputGradientStride1(dy4, fs);
        else if (k === 3 && xs.shape[1] % 2 === 0 && xs.shape[2] % 2 === 0) dx = inputGradientStride2(dy4, fs);
        else dx = tf.conv2dTranspose(dy4, fs, xs.shape, stride, 'same');
        const dw = filterGradient(xs, dy4, k, stride);
        return [dx, dw, sumToLastAxis(dy4), ...extra];
      },
    };
  });
}

/**
 * y = conv2d(x, filter, stride, 'same') + bias, with fast gradients on every backend; `addends`
 * adds a bias per image ([B, Cout]: a residual block's time embedding) and a residual tensor of
 * y's shape, in that order, in the same pass on our kernels.
 */
export function conv2d(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias: tf.Tensor1D,
  stride: Stride = 1,
  addends: ConvAddends = {},
): tf.Tensor4D {
  if (!useComposedGradients()) {
    return directConv(x, filter, bias, stride, addends);
  }
  const { imageBias, residual } = addends;
  const extra = [...(imageBias ? [imageBias] : []), ...(residual ? [residual] : [])];
  return composedConv(stride, imageBias !== undefined, residual !== undefined)(x, filter, bias, ...extra);
}

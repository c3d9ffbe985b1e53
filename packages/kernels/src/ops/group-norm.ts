/**
 * Group normalisation (Wu & He 2018) over NHWC tensors, as the official code's
 * `tf.contrib.layers.group_norm` (32 groups, ε = 1e-6), optionally fused with swish, the
 * official `nonlinearity`.
 *
 * On backends with composed gradients (wasm) the op has a hand-written gradient: the small ops
 * between convolutions cost a large share of a training step there (docs/kernels.md), and
 * autodiff through moments() emits several times more of them. On wasm, forward and backward are
 * each one of our SIMD kernels (heap-kernels.ts); elsewhere, and for channel counts the kernels
 * do not take, they are composed from tfjs ops where every full-size pass is an element-wise op
 * or a mean over H, W and per-group statistics are tiny [B, C] tensors.
 */
import * as tf from '@tensorflow/tfjs-core';

import { useComposedGradients } from './backend-caps';
import { type GroupNormForward, WasmKernels, wasmKernels } from './wasm-kernels';

export const GROUP_NORM_EPSILON = 1e-6;

/** swish(x) = x · sigmoid(x). */
export function swish<T extends tf.Tensor>(x: T): T {
  return tf.tidy<T>(() => tf.mul(x, tf.sigmoid(x)));
}

/** Per-(b, c) statistic [B, C] → the mean over each group's channels, repeated per channel. */
function groupMeanPerChannel(perChannel: tf.Tensor2D, numGroups: number): tf.Tensor2D {
  const [b, c] = perChannel.shape;
  const grouped = tf.mean(tf.reshape(perChannel, [b, numGroups, c / numGroups]), 2, true);
  return tf.reshape<tf.Rank.R2>(tf.broadcastTo(grouped, [b, numGroups, c / numGroups]), [b, c]);
}

function meanHW(x: tf.Tensor4D): tf.Tensor2D {
  return tf.mean<tf.Tensor2D>(x, [1, 2]);
}

function asBHWC(perChannel: tf.Tensor): tf.Tensor4D {
  const [b, c] = perChannel.shape as [number, number];
  return tf.reshape<tf.Rank.R4>(perChannel, [b, 1, 1, c]);
}

/** The statistics of the forward pass, per example and channel ([B, C], repeated per group). */
function statistics(x: tf.Tensor4D, numGroups: number, epsilon: number): { mean: tf.Tensor2D; rstd: tf.Tensor2D } {
  const mean = groupMeanPerChannel(meanHW(x), numGroups);
  const centred = tf.sub(x, asBHWC(mean));
  const variance = groupMeanPerChannel(meanHW(tf.square(centred) as tf.Tensor4D), numGroups);
  return { mean, rstd: tf.rsqrt(tf.add(variance, epsilon)) as tf.Tensor2D };
}

/** y = x·scale + shift with scale = γ·rstd and shift = β − μ·scale, both [B, 1, 1, C]. */
function affine(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  mean: tf.Tensor2D,
  rstd: tf.Tensor2D,
): tf.Tensor4D {
  const scale = tf.mul(rstd, gamma);
  const shift = tf.sub(beta, tf.mul(mean, scale));
  return tf.add<tf.Tensor4D>(tf.mul(x, asBHWC(scale)), asBHWC(shift));
}

/**
 * The forward pass from tfjs ops. With swish, σ(y) and the output are kept for the gradient
 * rather than recomputing the affine map and σ (saving does not copy on wasm: see wasm-heap.ts).
 */
function composedForward(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  numGroups: number,
  epsilon: number,
  withSwish: boolean,
): GroupNormForward {
  const { mean, rstd } = statistics(x, numGroups, epsilon);
  const y = affine(x, gamma, beta, mean, rstd);
  if (!withSwish) return { out: y, sig: undefined, mean, rstd };
  const sig = tf.sigmoid<tf.Tensor4D>(y);
  return { out: tf.mul<tf.Tensor4D>(y, sig), sig, mean, rstd };
}

function composedBackward(
  dOut: tf.Tensor4D,
  xs: tf.Tensor4D,
  g: tf.Tensor1D,
  fwd: GroupNormForward,
  numGroups: number,
): tf.Tensor[] {
  const { sig, out, mean: mu, rstd: rs } = fwd;
  let dy = dOut;
  if (sig !== undefined) {
    // d/dy [y·σ(y)] = σ + y·σ·(1 − σ) = σ + out − out·σ.
    dy = tf.mul<tf.Tensor4D>(dy, tf.sub(tf.add(sig, out), tf.mul(out, sig)));
  }
  const hw = xs.shape[1] * xs.shape[2];
  // Per-(b, c) means over H, W of dy and of dy·x; everything else is on [B, C].
  const meanDy = meanHW(dy);
  const meanDyX = meanHW(tf.mul<tf.Tensor4D>(dy, xs));
  // mean over (h, w) of dy·x̂ = rstd·(mean(dy·x) − μ·mean(dy))
  const meanDyXhat = tf.mul(rs, tf.sub(meanDyX, tf.mul(mu, meanDy)));
  const dGamma = tf.mul(tf.sum(meanDyXhat, 0), hw);
  const dBeta = tf.mul(tf.sum(meanDy, 0), hw);
  // dx = rstd·(g − mean_grp(g) − x̂·mean_grp(g·x̂)), g = γ·dy, x̂ = (x − μ)·rstd, which
  // expands to dx = dy·(γ·rstd) + x·A + K with per-(b, c) A and K.
  const m1 = groupMeanPerChannel(tf.mul<tf.Tensor2D>(meanDy, g), numGroups);
  const m2 = groupMeanPerChannel(tf.mul<tf.Tensor2D>(meanDyXhat, g), numGroups);
  const coefDy = tf.mul(rs, g);
  const coefX = tf.neg(tf.mul(tf.square(rs), m2));
  const constant = tf.sub(tf.mul(tf.mul(tf.square(rs), m2), mu), tf.mul(rs, m1));
  const dx = tf.add(tf.add(tf.mul(dy, asBHWC(coefDy)), tf.mul(xs, asBHWC(coefX))), asBHWC(constant));
  return [dx, dGamma, dBeta];
}

/** Whether tfjs records a gradient tape here (what its fused ops ask too): false while sampling. */
function recordingGradients(): boolean {
  return (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;
}

function makeComposed(withSwish: boolean, numGroups: number, epsilon: number) {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, gamma, beta, save] = args as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const kernels = wasmKernels();
    const useKernels = kernels !== undefined && WasmKernels.supports(x.shape, numGroups);
    // σ(y) is kept for the backward only where a gradient is being recorded.
    const fwd = useKernels
      ? kernels.groupNormForward(x, gamma, beta, numGroups, epsilon, withSwish, recordingGradients())
      : composedForward(x, gamma, beta, numGroups, epsilon, withSwish);
    save(fwd.sig === undefined ? [x, gamma, fwd.mean, fwd.rstd] : [x, gamma, fwd.mean, fwd.rstd, fwd.sig, fwd.out]);
    return {
      value: fwd.out,
      gradFunc: (dOut: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, g, mean, rstd, sig, out] = saved as [
          tf.Tensor4D,
          tf.Tensor1D,
          tf.Tensor2D,
          tf.Tensor2D,
          tf.Tensor4D?,
          tf.Tensor4D?,
        ];
        if (withSwish && sig === undefined)
          throw new Error('internal error: GroupNorm+swish ran without a gradient tape');
        // Without swish the backward reads neither σ nor the output; x stands in for the latter.
        const fromSaved: GroupNormForward = { out: out ?? xs, sig, mean, rstd };
        return useKernels
          ? kernels.groupNormBackward(dOut as tf.Tensor4D, xs, g, fromSaved, numGroups)
          : composedBackward(dOut as tf.Tensor4D, xs, g, fromSaved, numGroups);
      },
    };
  }) as (x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor4D;
}

const composedCache = new Map<string, (x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D) => tf.Tensor4D>();

function composed(withSwish: boolean, numGroups: number, epsilon: number) {
  const key = `${withSwish}/${numGroups}/${epsilon}`;
  let fn = composedCache.get(key);
  if (fn === undefined) {
    fn = makeComposed(withSwish, numGroups, epsilon);
    composedCache.set(key, fn);
  }
  return fn;
}

/** The reference formulation (autodiff through moments), used on native backends. */
function reference(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  numGroups: number,
  epsilon: number,
): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const grouped = tf.reshape(x, [b, h * w, numGroups, c / numGroups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normalized = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, epsilon)));
  return tf.add<tf.Tensor4D>(tf.mul(tf.reshape(normalized, [b, h, w, c]), gamma), beta);
}

export interface GroupNormOptions {
  readonly numGroups: number;
  readonly epsilon?: number;
  /** Apply swish after the affine transform (norm1/norm2/norm_out of the official code). */
  readonly swish?: boolean;
  /** Force the reference formulation (for tests). */
  readonly reference?: boolean;
}

/** y = γ · (x − μ_g) / √(σ²_g + ε) + β (then swish), statistics per example and channel group. */
export function groupNorm(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  options: GroupNormOptions,
): tf.Tensor4D {
  const epsilon = options.epsilon ?? GROUP_NORM_EPSILON;
  const withSwish = options.swish ?? false;
  return tf.tidy(() => {
    if (options.reference === true || !useComposedGradients()) {
      const y = reference(x, gamma, beta, options.numGroups, epsilon);
      return withSwish ? swish(y) : y;
    }
    return composed(withSwish, options.numGroups, epsilon)(x, gamma, beta);
  });
}

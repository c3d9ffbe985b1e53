/**
 * Closed-form Gaussian quantities used by the bound (Eq. 5) and the decoder (Eq. 13).
 * All functions are element-wise on tensors of any shape; none disposes its inputs.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) element-wise, in nats. Inputs broadcast.
 * The closed form behind every L_{t-1} term of Eq. 5.
 */
export function normalKl(mean1: tf.Tensor, logvar1: tf.Tensor, mean2: tf.Tensor, logvar2: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const logRatio = tf.sub(tf.sub(logvar2, logvar1), 1);
    const varianceRatio = tf.exp(tf.sub(logvar1, logvar2));
    const meanTerm = tf.mul(tf.squaredDifference(mean1, mean2), tf.exp(tf.neg(logvar2)));
    return tf.mul(0.5, tf.add(tf.add(logRatio, varianceRatio), meanTerm));
  });
}

function broadcastShape(...tensors: tf.Tensor[]): number[] {
  const rank = Math.max(...tensors.map((x) => x.rank));
  const shape = new Array<number>(rank).fill(1);
  for (const x of tensors) {
    const offset = rank - x.rank;
    x.shape.forEach((d, i) => {
      const j = offset + i;
      if (shape[j] === 1) shape[j] = d;
    });
  }
  return shape;
}

/**
 * A fast approximation of the standard normal CDF, Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))),
 * used (rather than erf) by the official code's decoder, so our bits/dim match its numbers.
 */
export function approxStandardNormalCdf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    tf.mul(0.5, tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))))))),
  );
}

/**
 * log p(x | means, scales) of the discretized Gaussian decoder of Eq. 13, element-wise, in nats.
 *
 * `x` holds data scaled from {0..255} to [-1, 1], so each value owns a bin of half-width 1/255.
 * The first and last bins extend to −∞ and +∞ (the edge cases of δ− and δ+ in Eq. 13);
 * probabilities are floored at 1e-12 before the log, as in the official code.
 */
export function discretizedGaussianLogLikelihood(x: tf.Tensor, means: tf.Tensor, logScales: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const centeredX = tf.sub(x, means);
    const invStdv = tf.exp(tf.neg(logScales));
    const cdfPlus = approxStandardNormalCdf(tf.mul(invStdv, tf.add(centeredX, 1 / 255)));
    const cdfMin = approxStandardNormalCdf(tf.mul(invStdv, tf.sub(centeredX, 1 / 255)));
    const logCdfPlus = tf.log(tf.maximum(cdfPlus, 1e-12));
    const logOneMinusCdfMin = tf.log(tf.maximum(tf.sub(1, cdfMin), 1e-12));
    const logCdfDelta = tf.log(tf.maximum(tf.sub(cdfPlus, cdfMin), 1e-12));
    const shape = broadcastShape(x, means, logScales);
    const xB = tf.broadcastTo(x, shape);
    return tf.where(
      tf.less(xB, -0.999),
      tf.broadcastTo(logCdfPlus, shape),
      tf.where(tf.greater(xB, 0.999), tf.broadcastTo(logOneMinusCdfMin, shape), tf.broadcastTo(logCdfDelta, shape)),
    );
  });
}

/** Mean over every axis but the first: [B, ...] → [B] (the official `meanflat`). */
export function meanFlat(x: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => (x.rank <= 1 ? tf.reshape(x, [-1]) : tf.mean(x, range(1, x.rank))));
}

function range(start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = start; i < end; i++) out.push(i);
  return out;
}

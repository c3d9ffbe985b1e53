/**
 * Exponential moving average of the parameters (Appendix B: 0.9999). The EMA starts as a copy of
 * the weights; sampling and evaluation use it unless asked otherwise.
 */
import * as tf from '@tensorflow/tfjs-core';

/** decay, or with TensorFlow's num_updates rule min(decay, (1 + n) / (10 + n)). */
export function emaDecayAt(decay: number, updates: number, warmup: boolean): number {
  return warmup ? Math.min(decay, (1 + updates) / (10 + updates)) : decay;
}

/** ema ← decay · ema + (1 − decay) · θ for each pair. */
export function updateEma(ema: readonly tf.Variable[], params: readonly tf.Variable[], decay: number): void {
  ema.forEach((e, i) => {
    tf.tidy(() => e.assign(tf.add(tf.mul(e, decay), tf.mul(params[i]!, 1 - decay))));
  });
}

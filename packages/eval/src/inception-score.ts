/**
 * The Inception Score as improved-GAN (Salimans et al., 2016) computes it: p(y | x) is the
 * softmax of the classifier's logits (the FID Inception's 1008), the samples are cut into 10
 * equal splits (a remainder is dropped, as in their code), and for each split
 * IS = exp(E_x KL(p(y | x) ‖ p(y))) with p(y) the split's mean prediction; reported as the mean
 * and standard deviation over the splits.
 */
import { evalError } from './errors';

export interface InceptionScoreResult {
  readonly mean: number;
  readonly std: number;
  readonly splits: number;
  readonly count: number;
}

export function inceptionScore(
  logitsNK: Float32Array | Float64Array,
  count: number,
  classes: number,
  splits = 10,
): InceptionScoreResult {
  if (logitsNK.length !== count * classes)
    throw evalError('DDPM_EVAL_SHAPE', `${logitsNK.length} logits are not ${count} rows of ${classes}`);
  if (!Number.isInteger(splits) || splits < 1 || count < splits)
    throw evalError(
      'DDPM_EVAL_TOO_FEW',
      `the Inception Score over ${splits} splits needs at least ${splits} samples, got ${count}`,
    );
  // log p(y | x) in float64, stably.
  const logP = new Float64Array(count * classes);
  for (let i = 0; i < count; i++) {
    const row = i * classes;
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logitsNK[row + k]!);
    if (!Number.isFinite(max)) throw evalError('DDPM_EVAL_NOT_FINITE', `the logits of sample ${i} are not finite`);
    let z = 0;
    for (let k = 0; k < classes; k++) z += Math.exp(logitsNK[row + k]! - max);
    const logZ = max + Math.log(z);
    for (let k = 0; k < classes; k++) logP[row + k] = logitsNK[row + k]! - logZ;
  }
  const per = Math.floor(count / splits);
  const scores: number[] = [];
  for (let s = 0; s < splits; s++) {
    const marginal = new Float64Array(classes);
    for (let i = s * per; i < (s + 1) * per; i++)
      for (let k = 0; k < classes; k++) marginal[k] = marginal[k]! + Math.exp(logP[i * classes + k]!) / per;
    let kl = 0;
    for (let i = s * per; i < (s + 1) * per; i++) {
      for (let k = 0; k < classes; k++) {
        const lp = logP[i * classes + k]!;
        const p = Math.exp(lp);
        if (p > 0) kl += p * (lp - Math.log(marginal[k]!));
      }
    }
    scores.push(Math.exp(kl / per));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(scores.reduce((a, b) => a + (b - mean) ** 2, 0) / splits);
  return { mean, std, splits, count: per * splits };
}

/**
 * Evaluation of the variational bound (Eq. 5) as a codelength in bits/dim (Table 1's NLL) and the
 * progressive-coding rate–distortion series of Sec. 4.3 / Table 4.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError } from '@ddpm/diffusion-config';
import { type DenoiseFn, type GaussianDiffusion } from './gaussian-diffusion';
import { meanFlat, normalKl } from './gaussian';
import { type LoopOptions, afterStep, throwIfAborted } from './loop-control';
import { LN2, vbTermsBpd } from './losses';
import { type RandomnessOptions, resolveNoise } from './noise';
import { Rng } from '@ddpm/core';

/** L_T = KL(q(x_T | x_0) || N(0, I)) per example, in bits/dim (the official `_prior_bpd`). */
export function priorBpd(diffusion: GaussianDiffusion, xStart: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const lastT = new Int32Array(xStart.shape[0]).fill(diffusion.numTimesteps - 1);
    const { mean, logVariance } = diffusion.qMeanVariance(xStart, lastT);
    const zeros = tf.zerosLike(mean);
    return tf.div<tf.Tensor1D>(meanFlat(normalKl(mean, logVariance, zeros, zeros)), LN2);
  });
}

export interface BoundResult {
  readonly batch: number;
  readonly numTimesteps: number;
  /** The total codelength (the NLL bound) per example: Σ_t terms + prior. [B], bits/dim. */
  readonly totalBpdB: Float64Array;
  /** terms[b * T + t]: L_0 (decoder) at t = 0, L_t (KL) for t ≥ 1. [B, T], bits/dim. */
  readonly termsBpdBT: Float64Array;
  /** L_T per example. [B], bits/dim. */
  readonly priorBpdB: Float64Array;
  /** mse[b * T + t]: mean squared error of x̂_0 predicted from x_{t+1}, on the [-1, 1] scale. [B, T]. */
  readonly mseBT: Float64Array;
}

export interface BoundOptions extends LoopOptions, RandomnessOptions {
  /** Clip x̂_0 to [-1, 1] when forming the reverse mean (the official `calc_bpd_loop` default: true). */
  readonly clipDenoised?: boolean;
}

/**
 * The full bound for a batch x_0 [B, ...]: for every t from T−1 down to 0, draws x_t from
 * q(x_t | x_0) with fresh noise and evaluates the term L_t, plus the prior term (the official
 * `calc_bpd_loop`). T network evaluations of the whole batch.
 */
export async function calcBpdLoop(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xStart: tf.Tensor,
  options: BoundOptions = {},
): Promise<BoundResult> {
  const clipDenoised = options.clipDenoised ?? true;
  const { noise } = resolveNoise(options);
  const B = xStart.shape[0];
  if (B === undefined || B < 1) {
    throw diffusionError(
      'DDPM_SHAPE_MISMATCH',
      `xStart needs a non-empty batch axis, got [${xStart.shape.join(', ')}]`,
    );
  }
  const T = diffusion.numTimesteps;
  const termsBpdBT = new Float64Array(B * T);
  const mseBT = new Float64Array(B * T);
  throwIfAborted(options.signal);
  for (let t = T - 1, done = 0; t >= 0; t--, done++) {
    const tB = new Int32Array(B).fill(t);
    const [termsB, mseB] = tf.tidy(() => {
      const eps = noise(xStart.shape);
      const xT = diffusion.qSample(xStart, tB, eps);
      const { termsB: terms, predXStart } = vbTermsBpd(diffusion, model, xStart, xT, tB, { clipDenoised });
      return [terms, meanFlat(tf.squaredDifference(predXStart, xStart))];
    });
    const [termsHost, mseHost] = await Promise.all([termsB.data(), mseB.data()]);
    termsB.dispose();
    mseB.dispose();
    for (let b = 0; b < B; b++) {
      termsBpdBT[b * T + t] = termsHost[b]!;
      mseBT[b * T + t] = mseHost[b]!;
    }
    await afterStep(options, done + 1, T);
  }
  const priorTensor = priorBpd(diffusion, xStart);
  const priorBpdB = Float64Array.from(await priorTensor.data());
  priorTensor.dispose();
  const totalBpdB = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let sum = priorBpdB[b]!;
    for (let t = 0; t < T; t++) sum += termsBpdBT[b * T + t]!;
    totalBpdB[b] = sum;
  }
  return { batch: B, numTimesteps: T, totalBpdB, termsBpdBT, priorBpdB, mseBT };
}

export interface StratifiedBoundOptions extends BoundOptions {
  /** Strata over t ∈ [1, T−1]; one t is drawn per stratum and per example (default 50). */
  readonly strata?: number;
  /** Source of the stratum draws (default: a seeded Rng from `seed`). */
  readonly rng?: Rng;
}

/**
 * An unbiased estimate of the bound of {@link calcBpdLoop} in `strata + 1` network evaluations
 * instead of T: the decoder term L_0 exactly, and Σ_{t=1}^{T−1} L_t by stratified sampling (one t
 * drawn uniformly from each of `strata` equal ranges, weighted by the range's length), plus the
 * exact prior term. Per example, in bits/dim.
 */
export async function calcBpdStratified(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xStart: tf.Tensor,
  options: StratifiedBoundOptions = {},
): Promise<{ totalBpdB: Float64Array; decoderBpdB: Float64Array; priorBpdB: Float64Array }> {
  const clipDenoised = options.clipDenoised ?? true;
  const { noise, seed } = resolveNoise(options);
  const rng = options.rng ?? Rng.fromSeed(seed ?? 0);
  const B = xStart.shape[0];
  const T = diffusion.numTimesteps;
  const strata = Math.min(options.strata ?? 50, Math.max(T - 1, 0));
  if (!Number.isInteger(strata) || strata < 0) {
    throw diffusionError('DDPM_CONFIG_INVALID', `strata must be a non-negative integer, got ${options.strata}`);
  }
  const total = new Float64Array(B);
  const decoder = new Float64Array(B);
  throwIfAborted(options.signal);
  // Stratum k covers t ∈ [lo_k, hi_k) with lo_0 = 1 and hi_last = T.
  const bounds = Array.from({ length: strata + 1 }, (_, k) => 1 + Math.round((k * (T - 1)) / Math.max(strata, 1)));
  const evaluations = strata + 1;
  for (let k = -1; k < strata; k++) {
    const tB = new Int32Array(B);
    let weight = 1;
    if (k >= 0) {
      const lo = bounds[k]!;
      const hi = bounds[k + 1]!;
      weight = hi - lo;
      if (weight === 0) continue;
      for (let b = 0; b < B; b++) tB[b] = lo + rng.int(weight);
    }
    const termsB = tf.tidy(() => {
      const eps = noise(xStart.shape);
      const xT = diffusion.qSample(xStart, tB, eps);
      return vbTermsBpd(diffusion, model, xStart, xT, tB, { clipDenoised }).termsB;
    });
    const host = await termsB.data();
    termsB.dispose();
    for (let b = 0; b < B; b++) {
      total[b]! += weight * host[b]!;
      if (k < 0) decoder[b] = host[b]!;
    }
    await afterStep(options, k + 2, evaluations);
  }
  const priorTensor = priorBpd(diffusion, xStart);
  const priorBpdB = Float64Array.from(await priorTensor.data());
  priorTensor.dispose();
  for (let b = 0; b < B; b++) total[b]! += priorBpdB[b]!;
  return { totalBpdB: total, decoderBpdB: decoder, priorBpdB };
}

/** Averages several {@link BoundResult}s (e.g. over the batches of a test set) weighting by batch size. */
export function mergeBoundResults(results: readonly BoundResult[]): BoundResult {
  if (results.length === 0) throw diffusionError('DDPM_CONFIG_INVALID', 'no bound results to merge');
  const T = results[0]!.numTimesteps;
  for (const r of results) {
    if (r.numTimesteps !== T) {
      throw diffusionError('DDPM_SHAPE_MISMATCH', `cannot merge bounds over ${T} and ${r.numTimesteps} steps`);
    }
  }
  const concat = (pick: (r: BoundResult) => Float64Array): Float64Array => {
    const out = new Float64Array(results.reduce((n, r) => n + pick(r).length, 0));
    let offset = 0;
    for (const r of results) {
      out.set(pick(r), offset);
      offset += pick(r).length;
    }
    return out;
  };
  return {
    batch: results.reduce((n, r) => n + r.batch, 0),
    numTimesteps: T,
    totalBpdB: concat((r) => r.totalBpdB),
    termsBpdBT: concat((r) => r.termsBpdBT),
    priorBpdB: concat((r) => r.priorBpdB),
    mseBT: concat((r) => r.mseBT),
  };
}

export interface BoundSummary {
  /** Mean NLL bound over the batch, bits/dim. */
  readonly bitsPerDim: number;
  /** Standard error of that mean over the batch's examples (sample sd / √B; 0 for one example), bits/dim. */
  readonly standardError: number;
  /** Mean L_T, bits/dim (≈1e-5 for the paper's schedule, Sec. 4). */
  readonly priorBpd: number;
  /** Mean decoder term L_0 ("distortion" of Sec. 4.3), bits/dim. */
  readonly decoderBpd: number;
  /** Mean L_1 + … + L_T ("rate" of Sec. 4.3), bits/dim. */
  readonly rateBpd: number;
  /** Mean term per table index t, [T], bits/dim. */
  readonly termsBpdT: Float64Array;
}

export function summarizeBound(result: BoundResult): BoundSummary {
  const { batch: B, numTimesteps: T } = result;
  const termsBpdT = new Float64Array(T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) termsBpdT[t]! += result.termsBpdBT[b * T + t]! / B;
  const mean = (xs: Float64Array): number => xs.reduce((a, v) => a + v, 0) / xs.length;
  const priorMean = mean(result.priorBpdB);
  const rateTerms = termsBpdT.slice(1).reduce((a, v) => a + v, 0);
  const bitsPerDim = mean(result.totalBpdB);
  const variance = B > 1 ? result.totalBpdB.reduce((a, v) => a + (v - bitsPerDim) ** 2, 0) / (B - 1) : 0;
  return {
    bitsPerDim,
    standardError: Math.sqrt(variance / B),
    priorBpd: priorMean,
    decoderBpd: termsBpdT[0]!,
    rateBpd: priorMean + rateTerms,
    termsBpdT,
  };
}

export interface RateDistortionPoint {
  /** The latent x_t the receiver holds, t ∈ [1, T] (paper indexing; x_T is sent first). */
  readonly t: number;
  /** Reverse steps taken to reach x_t, T − t + 1: Table 4's first column. */
  readonly reverseSteps: number;
  /** Cumulative rate so far: L_T + L_{T-1} + … + L_t, mean over the batch, bits/dim. */
  readonly rateBpd: number;
  /** RMSE of x̂_0 (Eq. 15) from x_t against x_0 on the [0, 255] scale: √(mean ‖x_0 − x̂_0‖²/D) · 127.5. */
  readonly distortionRmse: number;
}

/**
 * The progressive lossy code of Algorithms 3–4: after receiving x_T, …, x_t the rate is the sum
 * of the bound terms sent so far and the distortion is the error of the receiver's estimate x̂_0
 * (Eq. 15). `at` lists latent indices t ∈ [1, T] (default: every T/10 steps, as in Table 4).
 */
export function rateDistortion(result: BoundResult, at?: readonly number[]): RateDistortionPoint[] {
  const { batch: B, numTimesteps: T } = result;
  // Table 4's rows: after T, 0.9T, …, 0.1T reverse steps the receiver holds x_1, x_{0.1T+1}, ….
  const points =
    at ??
    Array.from({ length: 10 }, (_, i) => T - Math.round(((10 - i) * T) / 10) + 1).filter(
      (t, i, all) => t >= 1 && t <= T && all.indexOf(t) === i,
    );
  const termsT = new Float64Array(T);
  const mseT = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      termsT[t]! += result.termsBpdBT[b * T + t]! / B;
      mseT[t]! += result.mseBT[b * T + t]! / B;
    }
  }
  const prior = result.priorBpdB.reduce((a, v) => a + v, 0) / B;
  // cumulativeRate[t] = L_T + Σ_{j ≥ t} terms[j], for latent t ∈ [1, T].
  const cumulativeRate = new Float64Array(T + 1);
  cumulativeRate[T] = prior;
  for (let t = T - 1; t >= 1; t--) cumulativeRate[t] = cumulativeRate[t + 1]! + termsT[t]!;
  return points.map((t) => {
    if (!Number.isInteger(t) || t < 1 || t > T) {
      throw diffusionError('DDPM_TIMESTEP_OUT_OF_RANGE', `rate-distortion latent ${t} is outside [1, ${T}]`);
    }
    return {
      t,
      reverseSteps: T - t + 1,
      rateBpd: cumulativeRate[t]!,
      distortionRmse: Math.sqrt(mseT[t - 1]!) * 127.5,
    };
  });
}

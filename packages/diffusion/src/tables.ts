/**
 * Every per-timestep coefficient the diffusion needs, derived once in float64 from β (the
 * official code's `GaussianDiffusion2.__init__`). Arrays are 0-based: index t is the paper's t+1.
 * Tensors receive float32 copies of these values only at the point of use.
 */
import { validateBetas } from '@ddpm/diffusion-config';

export interface DiffusionTables {
  readonly numTimesteps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** ᾱ_t = Π_{s≤t} α_s. */
  readonly alphasCumprod: Float64Array;
  /** ᾱ_{t-1}, with ᾱ_0 := 1 (so index 0 holds 1). */
  readonly alphasCumprodPrev: Float64Array;

  // calculations for diffusion q(x_t | x_0) and others (Eq. 4)
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  readonly logOneMinusAlphasCumprod: Float64Array;
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipm1AlphasCumprod: Float64Array;

  // calculations for posterior q(x_{t-1} | x_t, x_0) (Eqs. 6-7)
  /** β̃_t = β_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t); zero at t = 0. */
  readonly posteriorVariance: Float64Array;
  /** log β̃_t with the t = 0 entry replaced by β̃_1 (log 0 is −∞). */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Coefficient of x_0 in μ̃_t: √ᾱ_{t-1} β_t / (1 − ᾱ_t). */
  readonly posteriorMeanCoef1: Float64Array;
  /** Coefficient of x_t in μ̃_t: √α_t (1 − ᾱ_{t-1}) / (1 − ᾱ_t). */
  readonly posteriorMeanCoef2: Float64Array;

  // reverse-process variances σ_t² of Sec. 3.2
  /** `fixedlarge` σ² = β_t, with t = 0 set to β̃_1 as in the official code (a tighter L_0). */
  readonly fixedLargeVariance: Float64Array;
  readonly fixedLargeLogVariance: Float64Array;
  /** log β_t, the upper end of the `learned-range` interpolation. */
  readonly logBetas: Float64Array;

  // derived forms used by the reverse process, precomputed so sampling does no table work
  readonly oneMinusAlphasCumprod: Float64Array;
  /** 1 / coef1 and coef2 / coef1: x_0 from a predicted x_{t-1}. */
  readonly recipPosteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2OverCoef1: Float64Array;
  /** 1 / √α_t and β_t / √(1 − ᾱ_t): the coefficients of Algorithm 2, line 4. */
  readonly recipSqrtAlphas: Float64Array;
  readonly epsCoefAlgorithm2: Float64Array;
  /** 0 at t index 0, 1 elsewhere: no noise is added at the last reverse step. */
  readonly nonzeroMask: Float64Array;
}

export function computeTables(betasIn: ArrayLike<number>): DiffusionTables {
  const betas = validateBetas(betasIn);
  const T = betas.length;
  const make = (fn: (t: number) => number): Float64Array => {
    const out = new Float64Array(T);
    for (let t = 0; t < T; t++) out[t] = fn(t);
    return out;
  };
  const alphas = make((t) => 1 - betas[t]!);
  const alphasCumprod = new Float64Array(T);
  let running = 1;
  for (let t = 0; t < T; t++) {
    running *= alphas[t]!;
    alphasCumprod[t] = running;
  }
  const alphasCumprodPrev = make((t) => (t === 0 ? 1 : alphasCumprod[t - 1]!));
  const posteriorVariance = make((t) => (betas[t]! * (1 - alphasCumprodPrev[t]!)) / (1 - alphasCumprod[t]!));
  // β̃ at t = 0 is 0; the official code substitutes β̃_1 so the log stays finite.
  const firstNonZeroPosteriorVariance = T > 1 ? posteriorVariance[1]! : betas[0]!;
  const posteriorLogVarianceClipped = make((t) =>
    Math.log(t === 0 ? firstNonZeroPosteriorVariance : posteriorVariance[t]!),
  );
  const fixedLargeVariance = make((t) => (t === 0 ? firstNonZeroPosteriorVariance : betas[t]!));
  const posteriorMeanCoef1 = make((t) => (betas[t]! * Math.sqrt(alphasCumprodPrev[t]!)) / (1 - alphasCumprod[t]!));
  const posteriorMeanCoef2 = make(
    (t) => ((1 - alphasCumprodPrev[t]!) * Math.sqrt(alphas[t]!)) / (1 - alphasCumprod[t]!),
  );
  return {
    numTimesteps: T,
    betas,
    alphas,
    alphasCumprod,
    alphasCumprodPrev,
    sqrtAlphasCumprod: make((t) => Math.sqrt(alphasCumprod[t]!)),
    sqrtOneMinusAlphasCumprod: make((t) => Math.sqrt(1 - alphasCumprod[t]!)),
    logOneMinusAlphasCumprod: make((t) => Math.log(1 - alphasCumprod[t]!)),
    sqrtRecipAlphasCumprod: make((t) => Math.sqrt(1 / alphasCumprod[t]!)),
    sqrtRecipm1AlphasCumprod: make((t) => Math.sqrt(1 / alphasCumprod[t]! - 1)),
    posteriorVariance,
    posteriorLogVarianceClipped,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
    fixedLargeVariance,
    fixedLargeLogVariance: make((t) => Math.log(fixedLargeVariance[t]!)),
    logBetas: make((t) => Math.log(betas[t]!)),
    oneMinusAlphasCumprod: make((t) => 1 - alphasCumprod[t]!),
    recipPosteriorMeanCoef1: make((t) => 1 / posteriorMeanCoef1[t]!),
    posteriorMeanCoef2OverCoef1: make((t) => posteriorMeanCoef2[t]! / posteriorMeanCoef1[t]!),
    recipSqrtAlphas: make((t) => 1 / Math.sqrt(alphas[t]!)),
    epsCoefAlgorithm2: make((t) => betas[t]! / Math.sqrt(1 - alphasCumprod[t]!)),
    nonzeroMask: make((t) => (t === 0 ? 0 : 1)),
  };
}

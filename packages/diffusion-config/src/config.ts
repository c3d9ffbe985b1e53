/**
 * The closed sets of modelling choices of the paper's ablation (Table 2) and the official code.
 */
import { diffusionError, describeValue } from './errors';

/**
 * What the network's (first C channels of) output mean:
 * - `epsilon`: the noise ε of Eq. 11 (the paper's choice);
 * - `xstart`: x_0 itself (Sec. 3.2 mentions it; worse samples early in their experiments);
 * - `xprev`: the posterior mean μ̃_t / x_{t-1} directly (the "μ̃ prediction" baseline of Table 2).
 */
export type MeanType = 'epsilon' | 'xstart' | 'xprev';
export const MEAN_TYPES: readonly MeanType[] = ['epsilon', 'xstart', 'xprev'];

/**
 * The reverse-process variance Σ_θ(x_t, t):
 * - `fixedlarge`: σ_t² = β_t (CIFAR-10 in the official code);
 * - `fixedsmall`: σ_t² = β̃_t (the 256² models);
 * - `learned`: a learned diagonal Σ, the network's last C channels being log σ² (Table 2);
 * - `learned-range`: the last C channels v ∈ [-1, 1] interpolate log σ² between log β̃_t and
 *   log β_t (Nichol & Dhariwal 2021; an extra, not in the paper).
 */
export type VarianceType = 'fixedlarge' | 'fixedsmall' | 'learned' | 'learned-range';
export const VARIANCE_TYPES: readonly VarianceType[] = ['fixedlarge', 'fixedsmall', 'learned', 'learned-range'];

/**
 * The training objective:
 * - `mse`: unweighted mean squared error of the network's target; with `epsilon` this is
 *   L_simple of Eq. 14 (the paper's best samples);
 * - `kl`: one uniformly drawn term of the true variational bound L (Eq. 5), in bits/dim, with the
 *   discretized decoder (Eq. 13) at t = 1;
 * - `weighted-mse`: the mean-matching part of each bound term, Eq. 8 (Eq. 12 for `epsilon`),
 *   in bits/dim: equal to `kl` up to a constant per t for fixed variances.
 */
export type LossType = 'mse' | 'kl' | 'weighted-mse';
export const LOSS_TYPES: readonly LossType[] = ['mse', 'kl', 'weighted-mse'];

export function isMeanType(v: unknown): v is MeanType {
  return typeof v === 'string' && (MEAN_TYPES as readonly string[]).includes(v);
}
export function isVarianceType(v: unknown): v is VarianceType {
  return typeof v === 'string' && (VARIANCE_TYPES as readonly string[]).includes(v);
}
export function isLossType(v: unknown): v is LossType {
  return typeof v === 'string' && (LOSS_TYPES as readonly string[]).includes(v);
}

export function isLearnedVariance(varianceType: VarianceType): boolean {
  switch (varianceType) {
    case 'learned':
    case 'learned-range':
      return true;
    case 'fixedlarge':
    case 'fixedsmall':
      return false;
    default: {
      const unreachable: never = varianceType;
      throw diffusionError('DDPM_CONFIG_INVALID', `unknown variance type ${describeValue(unreachable)}`);
    }
  }
}

/** Rejects unknown names and combinations that cannot train, naming the bad value. */
export function validateModelling(meanType: unknown, varianceType: unknown, lossType: unknown): void {
  if (!isMeanType(meanType)) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `unknown meanType ${describeValue(meanType)}; expected one of ${MEAN_TYPES.join(', ')}`,
    );
  }
  if (!isVarianceType(varianceType)) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `unknown varianceType ${describeValue(varianceType)}; expected one of ${VARIANCE_TYPES.join(', ')}`,
    );
  }
  if (!isLossType(lossType)) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `unknown lossType ${describeValue(lossType)}; expected one of ${LOSS_TYPES.join(', ')}`,
    );
  }
  if (lossType !== 'kl' && isLearnedVariance(varianceType)) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `lossType ${JSON.stringify(lossType)} gives a ${JSON.stringify(varianceType)} variance no training signal; ` +
        `use lossType "kl" (the true bound) or a fixed variance ("fixedlarge" / "fixedsmall")`,
    );
  }
}

/**
 * Strided sampling over a subset of timesteps (improved-diffusion's `space_timesteps` and
 * `SpacedDiffusion`, Nichol & Dhariwal 2021): keep K of the T steps, recompute β so the kept
 * steps have the same ᾱ, and give the network the original timesteps.
 */
import { diffusionError, describeValue } from '@ddpm/diffusion-config';
import { GaussianDiffusion } from '../gaussian-diffusion';

/** Python's round(): halves go to the even neighbour (so results match improved-diffusion). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The timesteps (0-based, ascending) to keep out of `numTimesteps`:
 * - `"ddimN"`: exactly N steps at an integer stride from 0, as DDIM does;
 * - `"a,b,c"` or `[a, b, c]`: split T into equal sections and take a, b, c evenly spaced steps in
 *   each (`"50"` is 50 evenly spaced steps over the whole range).
 */
export function spaceTimesteps(numTimesteps: number, spec: string | readonly number[]): number[] {
  if (!Number.isInteger(numTimesteps) || numTimesteps < 1) {
    throw diffusionError('DDPM_CONFIG_INVALID', `numTimesteps must be a positive integer, got ${numTimesteps}`);
  }
  let sectionCounts: number[];
  if (typeof spec === 'string') {
    const trimmed = spec.trim();
    if (trimmed.startsWith('ddim')) {
      const desired = Number(trimmed.slice(4));
      if (!Number.isInteger(desired) || desired < 1) {
        throw diffusionError('DDPM_CONFIG_INVALID', `"${spec}" must be ddimN with N a positive integer`);
      }
      for (let stride = 1; stride <= numTimesteps; stride++) {
        if (Math.ceil(numTimesteps / stride) === desired) {
          return Array.from({ length: desired }, (_, i) => i * stride);
        }
      }
      throw diffusionError(
        'DDPM_CONFIG_INVALID',
        `cannot take exactly ${desired} of ${numTimesteps} steps with an integer stride ("${spec}")`,
      );
    }
    sectionCounts = trimmed.split(',').map((part) => Number(part.trim()));
  } else {
    sectionCounts = [...spec];
  }
  if (sectionCounts.length === 0 || sectionCounts.some((c) => !Number.isInteger(c) || c < 1)) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `timestep spacing ${describeValue(spec)} must be "ddimN" or comma-separated positive integers`,
    );
  }
  const sizePer = Math.floor(numTimesteps / sectionCounts.length);
  const extra = numTimesteps % sectionCounts.length;
  let startIdx = 0;
  const steps = new Set<number>();
  sectionCounts.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) {
      throw diffusionError('DDPM_CONFIG_INVALID', `cannot divide a section of ${size} steps into ${count}`);
    }
    const fracStride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let cur = 0;
    for (let k = 0; k < count; k++) {
      steps.add(startIdx + roundHalfEven(cur));
      cur += fracStride;
    }
    startIdx += size;
  });
  return [...steps].sort((a, b) => a - b);
}

/**
 * A diffusion over the kept timesteps only: β'_i = 1 − ᾱ_{t_i} / ᾱ_{t_{i-1}}, so ᾱ at each kept
 * step is unchanged, and the network sees the original t_i through the timestep map.
 */
export function respace(base: GaussianDiffusion, useTimesteps: readonly number[]): GaussianDiffusion {
  const T = base.numTimesteps;
  const kept = [...new Set(useTimesteps)].sort((a, b) => a - b);
  if (kept.length === 0) throw diffusionError('DDPM_CONFIG_INVALID', 'respacing needs at least one timestep');
  for (const t of kept) {
    if (!Number.isInteger(t) || t < 0 || t >= T) {
      throw diffusionError('DDPM_TIMESTEP_OUT_OF_RANGE', `kept timestep ${describeValue(t)} is outside [0, ${T - 1}]`);
    }
  }
  const betas: number[] = [];
  let lastAlphaCumprod = 1;
  for (const t of kept) {
    const alphaCumprod = base.tables.alphasCumprod[t]!;
    betas.push(1 - alphaCumprod / lastAlphaCumprod);
    lastAlphaCumprod = alphaCumprod;
  }
  return new GaussianDiffusion(
    {
      schedule: { betas },
      meanType: base.meanType,
      varianceType: base.varianceType,
      lossType: base.lossType,
    },
    kept.map((t) => base.timestepMap[t]!),
  );
}

/** Convenience: `respace(base, spaceTimesteps(base.numTimesteps, spec))`. */
export function respaceBySpec(base: GaussianDiffusion, spec: string | readonly number[]): GaussianDiffusion {
  return respace(base, spaceTimesteps(base.numTimesteps, spec));
}

/**
 * Pixel statistics of a set of images, the first thing to compare when samples look too bright or
 * too dark: the mean intensity, the fraction of background (near black), of pixels above half and
 * of saturated ones (near white), all on [0, 1] over every pixel and channel. Samples and the
 * reference are tallied at the same size, so padding (Fashion-MNIST's 28 → 32) counts alike.
 */
import { evalError } from './errors';

export interface PixelStatistics {
  /** Mean intensity in [0, 1]. */
  readonly mean: number;
  /** Fraction of values below 0.1 (background, on black-background data). */
  readonly background: number;
  /** Fraction of values above 0.5. */
  readonly aboveHalf: number;
  /** Fraction of values above 0.9. */
  readonly saturated: number;
  /** Values tallied (pixels × channels). */
  readonly values: number;
}

/** Sums over images added in any order and chunking; the same images give the same numbers. */
export class PixelTally {
  private sum = 0;
  private dark = 0;
  private half = 0;
  private bright = 0;
  private n = 0;

  /** Values in [-1, 1], as the model produces them (clamped first). */
  addSigned(values: ArrayLike<number>): this {
    for (let i = 0; i < values.length; i++) this.tally((Math.min(1, Math.max(-1, values[i]!)) + 1) / 2);
    return this;
  }

  /** 8-bit values, as datasets store them. */
  addBytes(values: ArrayLike<number>): this {
    for (let i = 0; i < values.length; i++) this.tally(values[i]! / 255);
    return this;
  }

  private tally(v: number): void {
    if (!Number.isFinite(v)) throw evalError('DDPM_EVAL_SHAPE', `pixel value ${v} is not a number`);
    this.sum += v;
    if (v < 0.1) this.dark++;
    if (v > 0.5) this.half++;
    if (v > 0.9) this.bright++;
    this.n++;
  }

  result(): PixelStatistics {
    if (this.n === 0) throw evalError('DDPM_EVAL_TOO_FEW', 'pixel statistics of no pixels');
    return {
      mean: this.sum / this.n,
      background: this.dark / this.n,
      aboveHalf: this.half / this.n,
      saturated: this.bright / this.n,
      values: this.n,
    };
  }
}

/**
 * Named configurations: the paper's models (Appendix B) and small ones for CPU work.
 */
import { type UNetConfig } from './config';
import { unetError } from './errors';

const PAPER = { numResBlocks: 2, attnResolutions: [16], numGroups: 32, resampleWithConv: true } as const;

export const PRESETS = {
  /** CIFAR-10 32×32: 35.7M parameters. */
  cifar10: { ...PAPER, ch: 128, chMult: [1, 2, 2, 2], dropout: 0.1, inChannels: 3, outChannels: 3, imageSize: 32 },
  /** CelebA-HQ 256×256: 114M parameters. */
  celebahq256: {
    ...PAPER,
    ch: 128,
    chMult: [1, 1, 2, 2, 4, 4],
    dropout: 0,
    inChannels: 3,
    outChannels: 3,
    imageSize: 256,
  },
  /** LSUN (church, bedroom, cat) 256×256: the same network as CelebA-HQ. */
  lsun256: { ...PAPER, ch: 128, chMult: [1, 1, 2, 2, 4, 4], dropout: 0, inChannels: 3, outChannels: 3, imageSize: 256 },
  /** Small RGB model for CPU work and tests: three resolutions, attention at 16×16. */
  tiny32: { ...PAPER, ch: 32, chMult: [1, 2, 2], dropout: 0.1, inChannels: 3, outChannels: 3, imageSize: 32 },
  /** Grey 32×32 model for Fashion-MNIST / MNIST (28×28 padded to 32×32 by the data layer). */
  fashion32: { ...PAPER, ch: 64, chMult: [1, 2, 2], dropout: 0.1, inChannels: 1, outChannels: 1, imageSize: 32 },
  /** The smallest sensible grey model, for fast end-to-end tests. */
  micro32: {
    ...PAPER,
    ch: 32,
    chMult: [1, 2, 2],
    numResBlocks: 1,
    dropout: 0,
    inChannels: 1,
    outChannels: 1,
    imageSize: 32,
  },
  /**
   * A network of the paper's shape at 8 × 8 (two levels, attention at 4 × 4) that learns nothing
   * useful: for smoke tests of a deployment and tests of the service's orchestration, where a
   * step should cost milliseconds.
   */
  nano8: {
    ...PAPER,
    ch: 32,
    chMult: [1, 2],
    numResBlocks: 1,
    attnResolutions: [4],
    dropout: 0,
    inChannels: 1,
    outChannels: 1,
    imageSize: 8,
  },
} as const satisfies Record<string, UNetConfig>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export function isPresetName(value: unknown): value is PresetName {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(PRESETS, value);
}

/** A preset by name, optionally with fields overridden (e.g. outChannels for learned variances). */
export function preset(name: string, overrides: Partial<UNetConfig> = {}): UNetConfig {
  if (!isPresetName(name)) {
    throw unetError(
      'DDPM_UNET_CONFIG_INVALID',
      `unknown preset ${JSON.stringify(name)}; expected one of ${PRESET_NAMES.join(', ')}`,
    );
  }
  return { ...PRESETS[name], ...overrides };
}

import { describeArchitecture } from './architecture';
import { type UNetConfig, validateUNetConfig } from './config';
import { PRESET_NAMES, preset } from './presets';

describe('the paper architectures (Appendix B)', () => {
  it('cifar10 has exactly the official 35,746,307 parameters and 12.1 GFLOP per image', () => {
    const s = describeArchitecture(preset('cifar10'));
    expect(s.totalParams).toBe(35_746_307);
    expect(s.forwardFlopsConvDense / 1e9).toBeCloseTo(12.1, 1);
    expect(s.levels).toEqual([
      { resolution: 32, channels: 128, attention: false },
      { resolution: 16, channels: 256, attention: true },
      { resolution: 8, channels: 256, attention: false },
      { resolution: 4, channels: 256, attention: false },
    ]);
  });

  it('celebahq256 and lsun256 have exactly the official 113,673,219 parameters', () => {
    expect(describeArchitecture(preset('celebahq256')).totalParams).toBe(113_673_219);
    expect(describeArchitecture(preset('lsun256')).totalParams).toBe(113_673_219);
  });

  it('names parameters with the official variable scopes and zero-like inits where the official code uses 0', () => {
    const s = describeArchitecture(preset('cifar10'));
    const names = s.params.map((p) => p.name);
    expect(names.slice(0, 6)).toEqual([
      'temb/dense0/W',
      'temb/dense0/b',
      'temb/dense1/W',
      'temb/dense1/b',
      'conv_in/W',
      'conv_in/b',
    ]);
    for (const name of [
      'down_0/block_0/norm1/gamma',
      'down_1/attn_1/q/W',
      'down_2/downsample/conv/W',
      'mid/attn_1/proj_out/W',
      'up_3/block_2/nin_shortcut/W',
      'up_1/upsample/conv/W',
      'norm_out/beta',
      'conv_out/W',
    ]) {
      expect(names).toContain(name);
    }
    expect(names).not.toContain('down_3/downsample/conv/W');
    const scaleOf = (name: string): number => {
      const init = s.params.find((p) => p.name === name)!.init;
      return init.kind === 'glorot' ? init.scale : Number.NaN;
    };
    expect(scaleOf('down_0/block_0/conv2/W')).toBe(1e-10);
    expect(scaleOf('mid/attn_1/proj_out/W')).toBe(1e-10);
    expect(scaleOf('conv_out/W')).toBe(1e-10);
    expect(scaleOf('down_0/block_0/conv1/W')).toBe(1);
    // 2 res blocks down per level, 3 up per level (numResBlocks + 1).
    expect(names.filter((n) => /^up_0\/block_\d\/conv1\/W$/.test(n))).toHaveLength(3);
    expect(names.filter((n) => /^down_0\/block_\d\/conv1\/W$/.test(n))).toHaveLength(2);
  });

  it('per-block counts add up to the total', () => {
    for (const name of PRESET_NAMES) {
      const s = describeArchitecture(preset(name));
      expect(s.paramsByBlock.reduce((a, b) => a + b.params, 0)).toBe(s.totalParams);
    }
  });

  it('learned variances double the output channels (3 → 6: +2 × 128 × 9 × 3 + 3 parameters)', () => {
    const plain = describeArchitecture(preset('cifar10')).totalParams;
    const learned = describeArchitecture(preset('cifar10', { outChannels: 6 })).totalParams;
    expect(learned - plain).toBe(128 * 9 * 3 + 3);
  });
});

describe('config validation', () => {
  const good = preset('tiny32');
  it.each([
    [{ ch: 0 }, 'ch must be a positive integer, got 0'],
    [{ ch: 48 }, 'GroupNorm with 32 groups needs channel counts divisible by it; 48 is not'],
    [{ chMult: [] }, 'chMult must be a non-empty list of positive integers, got []'],
    [{ chMult: [1, 0] }, 'chMult[1] must be a positive integer, got 0'],
    [{ imageSize: 28 }, 'imageSize must be a power of two (the data layer pads e.g. 28×28 images to 32×32), got 28'],
    [{ imageSize: 2 }, 'imageSize 2 cannot be halved 2 times (chMult has 3 levels); use fewer levels or larger images'],
    [{ attnResolutions: [12] }, "attnResolutions includes 12, which is not one of the model's resolutions 32, 16, 8"],
    [{ dropout: 1 }, 'dropout must be a number in [0, 1), got 1'],
    [{ numResBlocks: 1.5 }, 'numResBlocks must be a positive integer, got 1.5'],
  ] as [Partial<UNetConfig>, string][])('rejects %j', (override, message) => {
    expect(() => validateUNetConfig({ ...good, ...override })).toThrow(message);
  });

  it('rejects unknown presets naming the choices', () => {
    expect(() => preset('cifar100')).toThrow(
      /unknown preset "cifar100"; expected one of cifar10, celebahq256, lsun256, tiny32/,
    );
  });
});

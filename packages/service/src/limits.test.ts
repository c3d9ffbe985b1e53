import { DEFAULT_LIMITS, LIMIT_NAMES, LIMIT_VARIABLES, loadLimits } from './limits';

describe('the server budgets from the environment', () => {
  it('default to the values the settings tests assume, and are named by their variables', () => {
    expect(DEFAULT_LIMITS).toEqual({
      maxStepMemoryMb: 3584,
      maxSteps: 1_000_000,
      maxSampleImages: 4096,
      maxCheckpointStorageMb: 20_480,
      maxDatasetImages: 1_000_000,
      maxEvalImages: 50_000,
      maxJobSeconds: 7 * 24 * 3600,
    });
    expect(loadLimits({})).toEqual(DEFAULT_LIMITS);
    expect(LIMIT_NAMES.maxSteps).toBe('DDPM_MAX_STEPS');
    expect(Object.values(LIMIT_VARIABLES).every((v) => /^DDPM_MAX_[A-Z_]+$/.test(v.env) && v.help.length > 10)).toBe(
      true,
    );
  });

  it('read each variable as a positive integer, refusing anything else by name', () => {
    expect(loadLimits({ DDPM_MAX_STEPS: '50', DDPM_MAX_EVAL_IMAGES: '' })).toMatchObject({
      maxSteps: 50,
      maxEvalImages: 50_000,
    });
    expect(() => loadLimits({ DDPM_MAX_STEPS: '0' })).toThrow(
      'DDPM_MAX_STEPS must be an integer from 1 to 9007199254740991, got "0"',
    );
    expect(() => loadLimits({ DDPM_MAX_SAMPLE_IMAGES: '1e3' })).toThrow(/DDPM_MAX_SAMPLE_IMAGES must be an integer/);
  });
});

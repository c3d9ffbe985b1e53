import { GaussianDiffusion } from '../gaussian-diffusion';
import { expectAllClose, loadGolden } from '../test-support';
import { respace, respaceBySpec, spaceTimesteps } from './respace';

const golden = loadGolden();

describe('spaceTimesteps (improved-diffusion)', () => {
  it.each(['ddim50', '10,15,20', '25'])('"%s" matches the reference implementation', (spec) => {
    expect(spaceTimesteps(1000, spec)).toEqual(golden.spacing[spec]);
  });

  it('takes every step for "1000" and one section list as an array', () => {
    expect(spaceTimesteps(1000, '1000')).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(spaceTimesteps(10, [2, 3])).toEqual([0, 4, 5, 7, 9]);
  });

  it.each([
    ['ddim6', 10, 'cannot take exactly 6 of 10 steps with an integer stride ("ddim6")'],
    ['ddimx', 10, '"ddimx" must be ddimN with N a positive integer'],
    ['0', 10, 'timestep spacing "0" must be "ddimN" or comma-separated positive integers'],
    ['a,b', 10, /must be "ddimN" or comma-separated positive integers/],
    ['20', 10, 'cannot divide a section of 10 steps into 20'],
  ] as const)('rejects %s for T=%d', (spec, T, message) => {
    expect(() => spaceTimesteps(T, spec)).toThrow(message);
  });
});

describe('respace', () => {
  const base = new GaussianDiffusion({ schedule: { kind: 'linear' } });

  it('keeps ᾱ at the kept steps and maps them to the original timesteps', () => {
    const kept = spaceTimesteps(1000, 'ddim50');
    const spaced = respace(base, kept);
    expect(spaced.numTimesteps).toBe(50);
    expect([...spaced.timestepMap]).toEqual(kept);
    expectAllClose(spaced.tables.betas.slice(0, 5), golden.spacing['ddim_respaced_betas_first5']!, 1e-12, 0);
    kept.forEach((t, i) => expect(spaced.tables.alphasCumprod[i]).toBeCloseTo(base.tables.alphasCumprod[t]!, 12));
  });

  it('respacing a respaced diffusion composes the timestep maps', () => {
    const once = respaceBySpec(base, '100');
    const twice = respace(once, [0, 50, 99]);
    expect([...twice.timestepMap]).toEqual([0, once.timestepMap[50], 999]);
    expect(twice.tables.alphasCumprod[2]).toBeCloseTo(base.tables.alphasCumprod[999]!, 12);
  });

  it('rejects out-of-range steps', () => {
    expect(() => respace(base, [0, 1000])).toThrow('kept timestep 1000 is outside [0, 999]');
    expect(() => respace(base, [])).toThrow('respacing needs at least one timestep');
  });
});

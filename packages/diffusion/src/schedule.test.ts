import { CodedError } from '@ddpm/core';

import { BETA_SCHEDULE_KINDS, betaSchedule, linspace, validateBetas } from '@ddpm/diffusion-config';
import { computeTables } from './tables';
import { expectClose, loadGolden } from './test-support';

const golden = loadGolden();

describe('beta schedules', () => {
  it('linear: the paper schedule matches independent float64 values at t = 0, 99, 499, 999', () => {
    const tables = computeTables(betaSchedule({ kind: 'linear', numTimesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 }));
    for (const [t, g] of Object.entries(golden.schedule)) {
      const i = Number(t);
      expectClose(tables.betas[i]!, g['beta']!, 1e-14, 0);
      expectClose(tables.alphasCumprod[i]!, g['alphaBar']!, 1e-12, 0);
      expectClose(tables.posteriorVariance[i]!, g['posteriorVariance']!, 1e-12, 1e-300);
      expectClose(tables.posteriorLogVarianceClipped[i]!, g['posteriorLogVarianceClipped']!, 1e-12, 0);
      expectClose(tables.posteriorMeanCoef1[i]!, g['posteriorMeanCoef1']!, 1e-12, 0);
      expectClose(tables.posteriorMeanCoef2[i]!, g['posteriorMeanCoef2']!, 1e-12, 1e-300);
      expectClose(tables.fixedLargeLogVariance[i]!, g['fixedLargeLogVariance']!, 1e-12, 0);
    }
  });

  it('the paper schedule leaves L_T tiny: alpha-bar at T is about 4.04e-5', () => {
    const tables = computeTables(betaSchedule({ kind: 'linear' }));
    expect(tables.numTimesteps).toBe(1000);
    expectClose(tables.alphasCumprod[999]!, 4.035829765375676e-5, 1e-10);
  });

  it.each([
    ['quadratic', 'quadratic'],
    ['jsd', 'jsd'],
    ['cosine', 'cosine'],
  ] as const)('%s matches the reference values', (kind, key) => {
    const betas = betaSchedule({ kind, numTimesteps: 1000 });
    for (const [t, v] of Object.entries(golden[key])) expectClose(betas[Number(t)]!, v, 1e-12, 0);
  });

  it('warmup10 ramps over the first 100 of 1000 steps then stays at betaEnd', () => {
    const betas = betaSchedule({ kind: 'warmup10', numTimesteps: 1000 });
    for (const [t, v] of Object.entries(golden.warmup10)) expectClose(betas[Number(t)]!, v, 1e-12, 0);
  });

  it('constant is betaEnd everywhere; warmup50 ramps over half', () => {
    expect([...betaSchedule({ kind: 'constant', numTimesteps: 5, betaEnd: 0.01 })]).toEqual([
      0.01, 0.01, 0.01, 0.01, 0.01,
    ]);
    const w = betaSchedule({ kind: 'warmup50', numTimesteps: 10, betaStart: 0.001, betaEnd: 0.011 });
    expect(w[0]).toBeCloseTo(0.001, 15);
    expect(w[4]).toBeCloseTo(0.011, 15);
    expect(w[9]).toBe(0.011);
  });

  it('every kind yields a strictly decreasing alpha-bar', () => {
    for (const kind of BETA_SCHEDULE_KINDS) {
      const { alphasCumprod } = computeTables(betaSchedule({ kind, numTimesteps: 200 }));
      for (let t = 1; t < alphasCumprod.length; t++) expect(alphasCumprod[t]!).toBeLessThan(alphasCumprod[t - 1]!);
    }
  });

  it('linspace matches numpy at the end points', () => {
    const xs = linspace(1e-4, 0.02, 1000);
    expect(xs[0]).toBe(1e-4);
    expect(xs[999]).toBe(0.02);
  });

  it.each([
    [{ kind: 'linear', numTimesteps: 0 }, /numTimesteps must be a positive integer, got 0/],
    [{ kind: 'linear', numTimesteps: 10.5 }, /numTimesteps must be a positive integer, got 10.5/],
    [{ kind: 'linear', betaStart: -1 }, /betaStart must be a number in \(0, 1\], got -1/],
    [{ kind: 'linear', betaEnd: 1.5 }, /betaEnd must be a number in \(0, 1\], got 1.5/],
    [{ kind: 'linear', betaEnd: Number.NaN }, /betaEnd must be a number in \(0, 1\], got NaN/],
    [{ kind: 'sigmoid' }, /unknown beta schedule "sigmoid"; expected one of linear, quadratic/],
  ])('rejects %j with a clear error', (spec, message) => {
    expect(() => betaSchedule(spec as never)).toThrow(message);
    try {
      betaSchedule(spec as never);
    } catch (err) {
      expect(err).toBeInstanceOf(CodedError);
      expect((err as CodedError).code).toBe('DDPM_SCHEDULE_INVALID');
    }
  });

  it('validateBetas names the offending timestep', () => {
    expect(() => validateBetas([])).toThrow(/at least one step/);
    expect(() => validateBetas([0.1, 0, 0.2])).toThrow('beta at t=1 must be in (0, 1], got 0');
    expect(() => validateBetas([0.1, 0.2, 1.2])).toThrow('beta at t=2 must be in (0, 1], got 1.2');
    expect(() => validateBetas([0.1, Number.POSITIVE_INFINITY])).toThrow(/beta at t=1/);
    expect(() => validateBetas([1e-20])).toThrow(/alpha-bar must decrease strictly/);
  });
});

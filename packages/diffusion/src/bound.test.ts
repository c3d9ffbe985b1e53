import * as tf from '@tensorflow/tfjs-core';

import { calcBpdLoop, calcBpdStratified, mergeBoundResults, priorBpd, rateDistortion, summarizeBound } from './bound';
import { GaussianDiffusion } from './gaussian-diffusion';
import { expectAllClose, expectClose, gaussianDataEpsModel, loadGolden, useCpuBackend } from './test-support';

const golden = loadGolden();

beforeAll(useCpuBackend);

describe('prior term L_T', () => {
  it('matches the independent value in bits/dim', () => {
    const diffusion = new GaussianDiffusion({ schedule: { kind: 'linear' } });
    const x0 = tf.tensor2d([golden.prior.x0]);
    expectClose(priorBpd(diffusion, x0).dataSync()[0]!, golden.prior.bpd, 1e-3, 1e-9);
  });

  it('is about 1e-5 bits/dim or less for data in [-1, 1] with the paper schedule (Sec. 4)', () => {
    const diffusion = new GaussianDiffusion({ schedule: { kind: 'linear' } });
    const x0 = tf.tensor2d([[1, -1, 0.5, 0]]);
    expect(priorBpd(diffusion, x0).dataSync()[0]!).toBeLessThan(3e-5);
  });
});

describe('calcBpdLoop', () => {
  const T = 50;
  const diffusion = new GaussianDiffusion({
    schedule: { kind: 'linear', numTimesteps: T, betaStart: 1e-3, betaEnd: 0.2 },
    varianceType: 'fixedsmall',
  });

  it('for a point mass and its exact ε-predictor, every KL term vanishes and the total is decoder + prior', async () => {
    const point = 0.25;
    const model = gaussianDataEpsModel(diffusion, point, 0);
    const x0 = tf.fill([3, 2, 2, 1], point);
    const bound = await calcBpdLoop(diffusion, model, x0, { seed: 1, clipDenoised: false });
    expect(bound.termsBpdBT).toHaveLength(3 * T);
    for (let b = 0; b < 3; b++) {
      for (let t = 1; t < T; t++) expect(Math.abs(bound.termsBpdBT[b * T + t]!)).toBeLessThan(1e-5);
      let sum = bound.priorBpdB[b]!;
      for (let t = 0; t < T; t++) sum += bound.termsBpdBT[b * T + t]!;
      expectClose(bound.totalBpdB[b]!, sum, 1e-12);
      // The decoder is N(x0, β̃_1) centred on the point: −log2 P(|z| < 1/255) with z ~ N(0, β̃_1),
      // computed with the exact normal CDF (the decoder's tanh approximation is within 1e-3).
      const sigma = Math.sqrt(diffusion.tables.posteriorVariance[1]!);
      const z = tf.erf(tf.scalar(1 / 255 / sigma / Math.SQRT2)).dataSync()[0]!;
      expectClose(bound.termsBpdBT[b * T]!, -Math.log2(z), 1e-2);
    }
    const summary = summarizeBound(bound);
    expectClose(summary.bitsPerDim, summary.decoderBpd + summary.rateBpd, 1e-9);
    // The standard error of the mean over the 3 examples: their sample sd over √3.
    const totals = Array.from(bound.totalBpdB);
    const mean = totals.reduce((a, v) => a + v, 0) / 3;
    expectClose(summary.standardError, Math.sqrt(totals.reduce((a, v) => a + (v - mean) ** 2, 0) / 2 / 3), 1e-12);
    expect(
      summarizeBound({
        ...bound,
        batch: 1,
        totalBpdB: bound.totalBpdB.slice(0, 1),
        priorBpdB: bound.priorBpdB.slice(0, 1),
        termsBpdBT: bound.termsBpdBT.slice(0, T),
      }).standardError,
    ).toBe(0);
    x0.dispose();
  });

  it('rateDistortion accumulates the terms from x_T downwards and reports RMSE on [0, 255]', async () => {
    const model = gaussianDataEpsModel(diffusion, 0, 0.5);
    const x0 = tf.tensor4d([0.1, -0.4, 0.9, -1], [2, 2, 1, 1]);
    const bound = await calcBpdLoop(diffusion, model, x0, { seed: 2 });
    const points = rateDistortion(bound, [T, 30, 1]);
    const meanTerm = (t: number): number => (bound.termsBpdBT[t]! + bound.termsBpdBT[T + t]!) / 2;
    const prior = (bound.priorBpdB[0]! + bound.priorBpdB[1]!) / 2;
    expectClose(points[0]!.rateBpd, prior, 1e-12);
    let rate30 = prior;
    for (let j = 30; j < T; j++) rate30 += meanTerm(j);
    expectClose(points[1]!.rateBpd, rate30, 1e-9);
    expect(points[1]!.reverseSteps).toBe(T - 30 + 1);
    const mse0 = (bound.mseBT[0]! + bound.mseBT[T]!) / 2;
    expectClose(points[2]!.distortionRmse, Math.sqrt(mse0) * 127.5, 1e-9);
    // Default points follow Table 4: after T, 0.9T, ..., 0.1T reverse steps.
    expect(rateDistortion(bound).map((p) => p.reverseSteps)).toEqual([50, 45, 40, 35, 30, 25, 20, 15, 10, 5]);
    // Distortion falls and rate grows as more latents are received.
    const series = rateDistortion(bound);
    for (let i = 1; i < series.length; i++) expect(series[i]!.rateBpd).toBeLessThanOrEqual(series[i - 1]!.rateBpd);
    expect(() => rateDistortion(bound, [0])).toThrow('rate-distortion latent 0 is outside [1, 50]');
    x0.dispose();
  });

  it('is deterministic for a seed, reports progress, and stops on abort', async () => {
    const model = gaussianDataEpsModel(diffusion, 0, 0.5);
    const x0 = tf.tensor2d([[0.3, -0.3]]);
    const a = await calcBpdLoop(diffusion, model, x0, { seed: 7 });
    const seen: number[] = [];
    const b = await calcBpdLoop(diffusion, model, x0, { seed: 7, onProgress: (done) => seen.push(done) });
    expectAllClose(a.termsBpdBT, b.termsBpdBT, 0, 0);
    expect(seen).toHaveLength(T);
    expect(seen[T - 1]).toBe(T);
    const controller = new AbortController();
    const before = tf.memory().numTensors;
    await expect(
      calcBpdLoop(diffusion, model, x0, {
        seed: 7,
        signal: controller.signal,
        onProgress: (done) => done === 5 && controller.abort(new Error('user cancelled')),
      }),
    ).rejects.toThrow('stopped: user cancelled');
    expect(tf.memory().numTensors).toBe(before);
    const merged = mergeBoundResults([a, b]);
    expect(merged.batch).toBe(2);
    expectClose(summarizeBound(merged).bitsPerDim, summarizeBound(a).bitsPerDim, 1e-12);
    x0.dispose();
  });
});

describe('calcBpdStratified', () => {
  it('is an unbiased estimate of the full bound: exact with one t per stratum, close with fewer', async () => {
    const T = 60;
    const diffusion = new GaussianDiffusion({
      schedule: { kind: 'linear', numTimesteps: T, betaStart: 1e-3, betaEnd: 0.2 },
    });
    const model = gaussianDataEpsModel(diffusion, 0.1, 0.4);
    // 200 examples drawn from the data distribution, so per-example noise averages out.
    const x0 = tf.tidy(() => tf.add(tf.mul(tf.randomNormal([200, 4], 0, 1, 'float32', 5), 0.4), 0.1));
    const meanOf = (xs: Float64Array): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    // Each term is a one-sample estimate, so average a few runs of each estimator.
    const average = async (runs: number, f: (seed: number) => Promise<number>): Promise<number> => {
      let sum = 0;
      for (let seed = 0; seed < runs; seed++) sum += await f(seed);
      return sum / runs;
    };
    const full = await average(
      3,
      async (seed) => summarizeBound(await calcBpdLoop(diffusion, model, x0, { seed })).bitsPerDim,
    );
    // T − 1 strata of length 1: every term evaluated once, like the full loop.
    const all = await average(3, async (seed) =>
      meanOf((await calcBpdStratified(diffusion, model, x0, { seed: 10 + seed, strata: T - 1 })).totalBpdB),
    );
    expectClose(all, full, 0.03);
    const few = await average(10, async (seed) =>
      meanOf((await calcBpdStratified(diffusion, model, x0, { seed: 20 + seed, strata: 6 })).totalBpdB),
    );
    expectClose(few, full, 0.05);
    x0.dispose();
  });
});

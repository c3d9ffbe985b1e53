import * as tf from '@tensorflow/tfjs-core';

import { GaussianDiffusion } from '../gaussian-diffusion';
import { gaussianDataEpsModel, meanStd, useCpuBackend } from '../test-support';
import { sampleAncestral } from './ancestral';
import { sampleDdim } from './ddim';
import { interpolate } from './interpolate';
import { respaceBySpec } from './respace';
import { sampleSharedLatent } from './shared-latent';

beforeAll(useCpuBackend);

// Data N(m, s²) per dimension has an exact ε-predictor, so each sampler can be checked against
// the distribution it must reproduce without any training.
const m = 0.3;
const s = 0.2;

/**
 * The exact standard deviation of the samples for N(m, s²) data and the exact predictor, by
 * propagating the deviation d_t = x_t − √ᾱ_t m through each linear reverse step from Var = 1 at
 * x_T: x̂_0 − m = √ᾱ s² d / v with v = ᾱ s² + 1 − ᾱ; ancestral: d' = coef1 (x̂_0 − m) + coef2 d + σ z;
 * DDIM (η = 0): d' = √ᾱ' (x̂_0 − m) + √(1 − ᾱ') ε̂ with ε̂ = √(1 − ᾱ) d / v.
 */
function expectedStd(d: GaussianDiffusion, kind: 'ancestral' | 'ddim'): number {
  const tb = d.tables;
  let variance = 1;
  for (let t = d.numTimesteps - 1; t >= 0; t--) {
    const ab = tb.alphasCumprod[t]!;
    const abPrev = tb.alphasCumprodPrev[t]!;
    const v = ab * s * s + 1 - ab;
    const gainX0 = (Math.sqrt(ab) * s * s) / v;
    let gain: number;
    let noiseVar = 0;
    if (kind === 'ancestral') {
      gain = tb.posteriorMeanCoef1[t]! * gainX0 + tb.posteriorMeanCoef2[t]!;
      const logVar =
        d.varianceType === 'fixedlarge' ? tb.fixedLargeLogVariance[t]! : tb.posteriorLogVarianceClipped[t]!;
      noiseVar = t === 0 ? 0 : Math.exp(logVar);
    } else {
      gain = Math.sqrt(abPrev) * gainX0 + (Math.sqrt(1 - abPrev) * Math.sqrt(1 - ab)) / v;
    }
    variance = gain * gain * variance + noiseVar;
  }
  return Math.sqrt(variance);
}

describe('samplers with an exact network for Gaussian data', () => {
  const base = new GaussianDiffusion({ schedule: { kind: 'linear', numTimesteps: 1000 }, varianceType: 'fixedsmall' });
  const model = gaussianDataEpsModel(base, m, s);

  it('ancestral sampling over all T = 1000 steps reproduces N(m, s²)', async () => {
    const { sample, seed } = await sampleAncestral(base, model, [4000, 1], { seed: 1, clipDenoised: false });
    const stats = meanStd(sample.dataSync());
    expect(seed).toBe(1);
    expect(Math.abs(stats.mean - m)).toBeLessThan(0.01);
    expect(Math.abs(stats.std - s)).toBeLessThan(0.01);
    sample.dispose();
  });

  it.each([
    ['fixedsmall', '50'],
    ['fixedlarge', '50'],
    ['fixedlarge', '1000'],
  ] as const)('%s with %s strided steps gives the analytically expected spread', async (varianceType, spec) => {
    const d = respaceBySpec(new GaussianDiffusion({ schedule: { kind: 'linear' }, varianceType }), spec);
    const { sample } = await sampleAncestral(d, model, [4000, 1], { seed: 2, clipDenoised: false });
    const stats = meanStd(sample.dataSync());
    expect(Math.abs(stats.mean - m)).toBeLessThan(0.01);
    expect(Math.abs(stats.std - expectedStd(d, 'ancestral'))).toBeLessThan(0.01);
    sample.dispose();
  });

  it('β̃ and β bracket the data spread with few steps and agree with it at T = 1000 (Sec. 3.2)', () => {
    const spread = (varianceType: 'fixedsmall' | 'fixedlarge', spec: string): number =>
      expectedStd(
        respaceBySpec(new GaussianDiffusion({ schedule: { kind: 'linear' }, varianceType }), spec),
        'ancestral',
      );
    expect(spread('fixedsmall', '50')).toBeLessThan(s - 0.02);
    expect(spread('fixedlarge', '50')).toBeGreaterThan(s + 0.02);
    expect(Math.abs(spread('fixedsmall', '1000') - s)).toBeLessThan(0.005);
    expect(Math.abs(spread('fixedlarge', '1000') - s)).toBeLessThan(0.005);
  });

  it('DDIM (η = 0) with 50 steps gives its analytically expected spread', async () => {
    const d = respaceBySpec(base, 'ddim50');
    const { sample } = await sampleDdim(d, model, [4000, 1], { seed: 4, eta: 0 });
    const stats = meanStd(sample.dataSync());
    expect(Math.abs(stats.mean - m)).toBeLessThan(0.01);
    expect(Math.abs(stats.std - expectedStd(d, 'ddim'))).toBeLessThan(0.01);
    sample.dispose();
  });

  it('DDIM with η = 0 is deterministic given x_T; η = 1 is not', async () => {
    const spaced = respaceBySpec(base, 'ddim20');
    const xT = tf.randomNormal([4, 2], 0, 1, 'float32', 9);
    const run = async (eta: number, seed: number) =>
      (await sampleDdim(spaced, model, [4, 2], { eta, seed, from: { x: xT, t: spaced.numTimesteps } })).sample;
    const [a, b, c, d] = [await run(0, 1), await run(0, 2), await run(1, 1), await run(1, 2)];
    expect([...a.dataSync()]).toEqual([...b.dataSync()]);
    expect([...c.dataSync()]).not.toEqual([...d.dataSync()]);
    tf.dispose([xT, a, b, c, d]);
  });

  it('the same seed gives the same samples; the literal Algorithm 2 matches the posterior step', async () => {
    const small = respaceBySpec(base, '30');
    const a = await sampleAncestral(small, model, [3, 2], { seed: 5, clipDenoised: false });
    const b = await sampleAncestral(small, model, [3, 2], { seed: 5, clipDenoised: false });
    const c = await sampleAncestral(small, model, [3, 2], { seed: 5, algorithm: 'algorithm2' });
    expect([...a.sample.dataSync()]).toEqual([...b.sample.dataSync()]);
    [...a.sample.dataSync()].forEach((v, i) => expect(Math.abs(v - c.sample.dataSync()[i]!)).toBeLessThan(1e-4));
    tf.dispose([a.sample, b.sample, c.sample]);
  });

  it('progressive generation keeps x̂_0 every k steps, converging to the sample', async () => {
    const small = respaceBySpec(base, '100');
    const { sample, progressive } = await sampleAncestral(small, model, [8, 1], { seed: 6, progressiveEvery: 25 });
    expect(progressive.map((f) => f.t)).toEqual([100, 75, 50, 25, 1]);
    // x̂_0 from x_T is the data mean m; the last frame is the final x̂_0.
    const first = meanStd(progressive[0]!.predXStart.dataSync());
    expect(Math.abs(first.mean - m)).toBeLessThan(0.05);
    expect(first.std).toBeLessThan(0.05);
    const last = progressive[4]!.predXStart.dataSync();
    [...sample.dataSync()].forEach((v, i) => expect(Math.abs(v - last[i]!)).toBeLessThan(0.05));
    tf.dispose([sample, ...progressive.map((f) => f.predXStart)]);
  });

  it('shared-latent continuations agree more the later the split (Fig. 7)', async () => {
    const small = respaceBySpec(base, '100');
    const spread = async (splitAt: number): Promise<number> => {
      const { latent, samples } = await sampleSharedLatent(small, model, [2, 16], {
        seed: 7,
        splitAt,
        continuations: 6,
      });
      expect(latent.shape).toEqual([2, 16]);
      expect(samples.shape).toEqual([12, 16]);
      const values = tf.reshape(samples, [2, 6, 16]);
      const std = tf.mean(tf.sqrt(tf.moments(values, 1).variance)).dataSync()[0]!;
      tf.dispose([latent, samples, values]);
      return std;
    };
    const early = await spread(100);
    const late = await spread(3);
    expect(early).toBeGreaterThan(0.15);
    expect(late).toBeLessThan(early / 2);
  });

  it('interpolation: t = 0 mixes pixels, t = 1 reconstructs, and the noise is the same for every λ', async () => {
    const small = respaceBySpec(base, '100');
    const a = tf.fill([1, 4], 0.1);
    const b = tf.fill([1, 4], 0.5);
    const pixels = await interpolate(small, model, a, b, { t: 0, lambdas: [0, 0.25, 1], seed: 8 });
    const rows0 = tf.reshape(pixels.images, [3, 4]).arraySync() as number[][];
    [0.1, 0.2, 0.5].forEach((v, i) => rows0[i]!.forEach((x) => expect(x).toBeCloseTo(v, 6)));
    // From x_1 (orig. t = 1, β = 1e-4, noise std 0.01) the decoder returns the source closely.
    const near = await interpolate(small, model, a, b, { t: 1, lambdas: [0, 0.5, 1], seed: 8 });
    const rows1 = tf.reshape(near.images, [3, 4]).arraySync() as number[][];
    [0.1, 0.3, 0.5].forEach((v, i) => rows1[i]!.forEach((x) => expect(Math.abs(x - v)).toBeLessThan(0.04)));
    // The λ = 0 decode does not depend on which other λ share the batch: the noise is shared.
    const x = await interpolate(small, model, a, b, { t: 60, lambdas: [0, 1], seed: 9 });
    const y = await interpolate(small, model, a, b, { t: 60, lambdas: [0, 0.3, 0.6, 1], seed: 9 });
    expect([...x.images.dataSync().slice(0, 4)]).toEqual([...y.images.dataSync().slice(0, 4)]);
    expect([...x.images.dataSync().slice(4)]).toEqual([...y.images.dataSync().slice(12)]);
    await expect(interpolate(small, model, a, b, { t: 101 })).rejects.toThrow(
      'interpolation t must be an integer in [0, 100], got 101',
    );
    tf.dispose([a, b, pixels.images, near.images, x.images, y.images]);
  });

  it('every sampler leaks no tensors, also when aborted', async () => {
    const small = respaceBySpec(base, '20');
    const runAll = async (): Promise<void> => {
      const r1 = await sampleAncestral(small, model, [2, 3], { seed: 1, progressiveEvery: 5 });
      const r2 = await sampleDdim(small, model, [2, 3], { seed: 1, eta: 0.5 });
      const r3 = await sampleSharedLatent(small, model, [1, 3], { seed: 1, splitAt: 10, continuations: 2 });
      const x = tf.zeros([1, 3]);
      const r4 = await interpolate(small, model, x, x, { t: 10, seed: 1 });
      tf.dispose([
        r1.sample,
        ...r1.progressive.map((f) => f.predXStart),
        r2.sample,
        r3.latent,
        r3.samples,
        x,
        r4.images,
      ]);
    };
    await runAll();
    const before = tf.memory().numTensors;
    await runAll();
    expect(tf.memory().numTensors).toBe(before);
    const controller = new AbortController();
    await expect(
      sampleAncestral(small, model, [2, 3], {
        seed: 1,
        progressiveEvery: 2,
        signal: controller.signal,
        onProgress: (done) => done === 7 && controller.abort(new Error('cancelled by test')),
      }),
    ).rejects.toThrow('stopped: cancelled by test');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad loop options with clear errors', async () => {
    await expect(sampleAncestral(base, model, [2, 0], {})).rejects.toThrow(/sample shape must be positive integers/);
    await expect(sampleAncestral(base, model, [2, 1], { stopAt: 1001 })).rejects.toThrow(
      'stopAt must be an integer latent index in [0, 1000], got 1001',
    );
    await expect(sampleAncestral(base, model, [2, 1], { progressiveEvery: 0 })).rejects.toThrow(
      'progressiveEvery must be a positive integer, got 0',
    );
    await expect(sampleDdim(base, model, [2, 1], { eta: -1 })).rejects.toThrow(
      'eta must be a finite number >= 0, got -1',
    );
    await expect(sampleSharedLatent(base, model, [1, 1], { splitAt: 3, continuations: 0 })).rejects.toThrow(
      'continuations must be a positive integer, got 0',
    );
  });
});

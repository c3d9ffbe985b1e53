import { CodedError } from '@ddpm/core';
import * as tf from '@tensorflow/tfjs-core';

import { GaussianDiffusion } from './gaussian-diffusion';
import { type MeanType, type VarianceType } from '@ddpm/diffusion-config';
import { expectAllClose, expectClose, useCpuBackend } from './test-support';
import { Rng } from '@ddpm/core';

beforeAll(useCpuBackend);

const paper = (meanType: MeanType = 'epsilon', varianceType: VarianceType = 'fixedlarge'): GaussianDiffusion =>
  new GaussianDiffusion({ schedule: { kind: 'linear', numTimesteps: 1000 }, meanType, varianceType, lossType: 'kl' });

function randn(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(Rng.fromSeed(seed).normals(shape.reduce((a, b) => a * b, 1)), shape);
}

describe('forward process q(x_t | x_0) (Eq. 4)', () => {
  it('the closed form equals iterating q(x_t | x_{t-1}) of Eq. 2', () => {
    const diffusion = paper();
    const x0 = 0.7;
    let mean = x0;
    let variance = 0;
    const t = [0, 10, 500, 999];
    const { betas } = diffusion.tables;
    const expectedMean: number[] = [];
    const expectedVar: number[] = [];
    for (let s = 0; s < 1000; s++) {
      mean *= Math.sqrt(1 - betas[s]!);
      variance = (1 - betas[s]!) * variance + betas[s]!;
      if (t.includes(s)) {
        expectedMean.push(mean);
        expectedVar.push(variance);
      }
    }
    const x = tf.fill([4, 1], x0);
    const q = diffusion.qMeanVariance(x, t);
    expectAllClose(q.mean.dataSync(), expectedMean, 1e-5, 1e-7);
    expectAllClose(q.variance.dataSync(), expectedVar, 1e-5, 1e-7);
    expectAllClose(q.logVariance.dataSync(), expectedVar.map(Math.log), 1e-5, 1e-6);
    tf.dispose([x, q.mean, q.variance, q.logVariance]);
  });

  it('qSample is √ᾱ x0 + √(1−ᾱ) ε and predictXStartFromEps inverts it', () => {
    const diffusion = paper();
    const x0 = randn([3, 4, 4, 2], 1);
    const eps = randn([3, 4, 4, 2], 2);
    const t = [0, 300, 999];
    const xT = diffusion.qSample(x0, t, eps);
    const x0Back = diffusion.predictXStartFromEps(xT, t, eps);
    expectAllClose(x0Back.dataSync(), x0.dataSync(), 1e-3, 2e-3);
    const epsBack = diffusion.predictEpsFromXStart(xT, t, x0);
    expectAllClose(epsBack.dataSync(), eps.dataSync(), 1e-4, 1e-4);
    tf.dispose([x0, eps, xT, x0Back, epsBack]);
  });

  it('rejects mismatched shapes and timesteps naming the problem', () => {
    const diffusion = paper();
    const x0 = tf.zeros([2, 3]);
    const eps = tf.zeros([2, 4]);
    expect(() => diffusion.qSample(x0, [1, 2], eps)).toThrow('noise has shape [2, 4] but xStart has shape [2, 3]');
    expect(() => diffusion.qSample(x0, [1], x0)).toThrow('got 1 timesteps for a batch of 2');
    expect(() => diffusion.qSample(x0, [1, 1000], x0)).toThrow('timestep 1000 at position 1 is outside [0, 999]');
    expect(() => diffusion.qSample(x0, [1, 0.5], x0)).toThrow(CodedError);
    tf.dispose([x0, eps]);
  });
});

describe('posterior q(x_{t-1} | x_t, x_0) (Eqs. 6-7)', () => {
  it('equals the product of Gaussians q(x_t | x_{t-1}) q(x_{t-1} | x_0) computed independently', () => {
    const diffusion = paper();
    const { betas, alphasCumprod } = diffusion.tables;
    const t = [1, 50, 400, 999];
    const x0Values = [0.3, -0.8, 1.0, -0.1];
    const xTValues = [0.2, 0.5, -1.3, 0.9];
    const expectedMean: number[] = [];
    const expectedVar: number[] = [];
    t.forEach((ti, i) => {
      const abPrev = alphasCumprod[ti - 1]!;
      // prior of x_{t-1}: N(√ᾱ_{t-1} x0, 1 − ᾱ_{t-1}); likelihood of x_t: N(√α_t x_{t-1}, β_t)
      const precision = 1 / (1 - abPrev) + (1 - betas[ti]!) / betas[ti]!;
      const mean =
        ((Math.sqrt(abPrev) * x0Values[i]!) / (1 - abPrev) + (Math.sqrt(1 - betas[ti]!) * xTValues[i]!) / betas[ti]!) /
        precision;
      expectedMean.push(mean);
      expectedVar.push(1 / precision);
    });
    const x0 = tf.tensor2d(x0Values, [4, 1]);
    const xT = tf.tensor2d(xTValues, [4, 1]);
    const post = diffusion.qPosteriorMeanVariance(x0, xT, t);
    expectAllClose(post.mean.dataSync(), expectedMean, 1e-4, 1e-6);
    expectAllClose(post.variance.dataSync(), expectedVar, 1e-4, 1e-9);
    expectAllClose(post.logVarianceClipped.dataSync(), expectedVar.map(Math.log), 1e-5, 1e-5);
    tf.dispose([x0, xT, post.mean, post.variance, post.logVarianceClipped]);
  });

  it('at t index 0 the posterior mean is x_0 and the log-variance is clipped to log β̃_1', () => {
    const diffusion = paper();
    const x0 = tf.tensor2d([[0.25]]);
    const xT = tf.tensor2d([[0.9]]);
    const post = diffusion.qPosteriorMeanVariance(x0, xT, [0]);
    expectClose(post.mean.dataSync()[0]!, 0.25, 1e-6);
    expect(post.variance.dataSync()[0]).toBe(0);
    expectClose(post.logVarianceClipped.dataSync()[0]!, Math.log(diffusion.tables.posteriorVariance[1]!), 1e-6);
    tf.dispose([x0, xT, post.mean, post.variance, post.logVarianceClipped]);
  });
});

describe('reverse process p_θ(x_{t-1} | x_t) for every parameterisation (Table 2)', () => {
  const x0Values = [0.5, -0.25, 0.8, -0.9, 0.1, 0.3];
  const t = [0, 1, 200, 999, 37, 600];

  /** An oracle network that outputs exactly its parameterisation's target. */
  function oracle(diffusion: GaussianDiffusion, x0: tf.Tensor, eps: tf.Tensor, extra?: tf.Tensor) {
    return (xT: tf.Tensor): tf.Tensor =>
      tf.tidy(() => {
        let out: tf.Tensor;
        switch (diffusion.meanType) {
          case 'epsilon':
            out = eps.clone();
            break;
          case 'xstart':
            out = x0.clone();
            break;
          case 'xprev':
            out = diffusion.qPosteriorMeanVariance(x0, xT, t).mean;
            break;
        }
        return extra === undefined ? out : tf.concat([out, extra], -1);
      });
  }

  it.each(['epsilon', 'xstart', 'xprev'] as const)(
    '%s: an exact network recovers x_0 and the posterior mean',
    (meanType) => {
      const diffusion = paper(meanType, 'fixedsmall');
      const x0 = tf.tensor2d(x0Values, [6, 1]);
      const eps = randn([6, 1], 3);
      const xT = diffusion.qSample(x0, t, eps);
      const p = diffusion.pMeanVariance(oracle(diffusion, x0, eps), xT, t, { clipDenoised: false });
      const post = diffusion.qPosteriorMeanVariance(x0, xT, t);
      // x_0 recovered from ε at t = 999 divides by √ᾱ ≈ 0.006, amplifying float32 rounding.
      expectAllClose(p.predXStart.dataSync(), x0Values, 1e-3, 5e-3);
      expectAllClose(p.mean.dataSync(), post.mean.dataSync(), 1e-4, 1e-4);
      expectAllClose(p.logVariance.dataSync(), post.logVarianceClipped.dataSync(), 1e-6, 1e-6);
      tf.dispose([
        x0,
        eps,
        xT,
        p.mean,
        p.variance,
        p.logVariance,
        p.predXStart,
        post.mean,
        post.variance,
        post.logVarianceClipped,
      ]);
    },
  );

  it('fixedlarge uses σ² = β (β̃_1 at t index 0); fixedsmall uses β̃', () => {
    const large = paper('epsilon', 'fixedlarge');
    const small = paper('epsilon', 'fixedsmall');
    const x = tf.zeros([3, 1]);
    const tt = [0, 5, 999];
    const lvLarge = large.modelLogVariance(x, tt).dataSync();
    const lvSmall = small.modelLogVariance(x, tt).dataSync();
    expectAllClose(
      lvLarge,
      [Math.log(large.tables.posteriorVariance[1]!), Math.log(large.tables.betas[5]!), Math.log(0.02)],
      1e-6,
      1e-6,
    );
    expectAllClose(
      lvSmall,
      tt.map((i) => small.tables.posteriorLogVarianceClipped[i]!),
      1e-6,
      1e-6,
    );
    x.dispose();
  });

  it('learned: the second half of the output is log σ²; learned-range interpolates log β̃ .. log β', () => {
    const learned = paper('epsilon', 'learned');
    const range = paper('epsilon', 'learned-range');
    expect(learned.outputChannelFactor).toBe(2);
    const x = tf.zeros([2, 1]);
    const tt = [10, 700];
    const out = tf.tensor2d([
      [0.1, -3.5],
      [0.2, -5.25],
    ]);
    const pl = learned.pMeanVarianceFromOutput(x, tt, out, { clipDenoised: true });
    expectAllClose(pl.logVariance.dataSync(), [-3.5, -5.25], 1e-6);
    const ends = tf.tensor2d([
      [0.1, 1],
      [0.2, -1],
    ]);
    const pr = range.pMeanVarianceFromOutput(x, tt, ends, { clipDenoised: true });
    expectAllClose(
      pr.logVariance.dataSync(),
      [Math.log(range.tables.betas[10]!), range.tables.posteriorLogVarianceClipped[700]!],
      1e-6,
      1e-6,
    );
    expect(() => learned.pMeanVarianceFromOutput(x, tt, x, { clipDenoised: true })).toThrow(
      'the network returned shape [2, 1] but [2, 2] was expected (meanType epsilon, varianceType learned)',
    );
    tf.dispose([
      x,
      out,
      ends,
      pl.mean,
      pl.variance,
      pl.logVariance,
      pl.predXStart,
      pr.mean,
      pr.variance,
      pr.logVariance,
      pr.predXStart,
    ]);
  });

  it('clipDenoised clips x̂_0 to [-1, 1]', () => {
    const diffusion = paper('xstart', 'fixedlarge');
    const x = tf.zeros([2, 1]);
    const out = tf.tensor2d([[3], [-7]]);
    const p = diffusion.pMeanVarianceFromOutput(x, [100, 100], out, { clipDenoised: true });
    expect([...p.predXStart.dataSync()]).toEqual([1, -1]);
    tf.dispose([x, out, p.mean, p.variance, p.logVariance, p.predXStart]);
  });

  it('Algorithm 2 literally equals the posterior step without clipping, and adds no noise at t index 0', () => {
    const diffusion = paper('epsilon', 'fixedlarge');
    const model = (xT: tf.Tensor): tf.Tensor => tf.mul(xT, 0.3);
    const x = randn([4, 3], 5);
    const z = randn([4, 3], 6);
    const tt = [0, 3, 500, 999];
    const a = diffusion.algorithm2Step(model, x, tt, z);
    const b = diffusion.pSample(model, x, tt, z, { clipDenoised: false });
    expectAllClose(a.sample.dataSync(), b.sample.dataSync(), 1e-4, 1e-5);
    // t index 0: the sample is the mean μ_θ(x_1, 1), noiseless.
    const zero = tf.zerosLike(z);
    const c = diffusion.pSample(model, x, tt, zero, { clipDenoised: false });
    expectAllClose(b.sample.dataSync().slice(0, 3), c.sample.dataSync().slice(0, 3), 1e-7, 1e-7);
    tf.dispose([x, z, zero, a.sample, a.predXStart, b.sample, b.predXStart, c.sample, c.predXStart]);
  });

  it('rejects unknown modelling names and untrainable combinations', () => {
    const schedule = { kind: 'linear' } as const;
    expect(() => new GaussianDiffusion({ schedule, meanType: 'score' as never })).toThrow(
      'unknown meanType "score"; expected one of epsilon, xstart, xprev',
    );
    expect(() => new GaussianDiffusion({ schedule, varianceType: 'big' as never })).toThrow(
      /unknown varianceType "big"/,
    );
    expect(() => new GaussianDiffusion({ schedule, lossType: 'l1' as never })).toThrow(/unknown lossType "l1"/);
    expect(() => new GaussianDiffusion({ schedule, varianceType: 'learned', lossType: 'mse' })).toThrow(
      /gives a "learned" variance no training signal/,
    );
    expect(() =>
      paper('xstart').algorithm2Step(() => tf.zeros([1, 1]), tf.zeros([1, 1]), [0], tf.zeros([1, 1])),
    ).toThrow(/Algorithm 2 is defined for meanType "epsilon"/);
  });

  it('leaks no tensors', () => {
    const diffusion = paper('epsilon', 'learned-range');
    const model = (xT: tf.Tensor): tf.Tensor => tf.concat([tf.mul(xT, 0.5), tf.tanh(xT)], -1);
    const x = randn([2, 4, 4, 3], 7);
    const z = randn([2, 4, 4, 3], 8);
    const step = (): void => {
      const out = diffusion.pSample(model, x, [4, 900], z, { clipDenoised: true });
      tf.dispose([out.sample, out.predXStart]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, z]);
  });
});

import * as tf from '@tensorflow/tfjs-core';

import { calcBpdLoop } from './bound';
import { type LossType, type MeanType, type VarianceType } from '@ddpm/diffusion-config';
import { GaussianDiffusion } from './gaussian-diffusion';
import { discretizedGaussianLogLikelihood, meanFlat } from './gaussian';
import { LN2, meanMatchingWeights, trainingLosses, vbTermsBpd } from './losses';
import { Rng } from '@ddpm/core';
import { constantNoise, expectAllClose, expectClose, useCpuBackend } from './test-support';

beforeAll(useCpuBackend);

function make(meanType: MeanType, varianceType: VarianceType, lossType: LossType, T = 1000): GaussianDiffusion {
  return new GaussianDiffusion({ schedule: { kind: 'linear', numTimesteps: T }, meanType, varianceType, lossType });
}

function randn(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(Rng.fromSeed(seed).normals(shape.reduce((a, b) => a * b, 1)), shape);
}

/** A fixed, imperfect "network": a smooth function of x_t and t, any output width. */
function fakeNet(factor: 1 | 2) {
  return (xT: tf.Tensor, t: tf.Tensor1D): tf.Tensor =>
    tf.tidy(() => {
      const tt = tf.reshape(tf.div(tf.cast(t, 'float32'), 1000), [-1, ...new Array<number>(xT.rank - 1).fill(1)]);
      const mean = tf.add(tf.mul(tf.sin(xT), 0.7), tf.mul(tt, 0.3));
      return factor === 1 ? mean : tf.concat([mean, tf.sub(tf.mul(tf.tanh(tf.add(xT, tt)), 0.9), 0.05)], -1);
    });
}

describe('L_simple (Eq. 14)', () => {
  it('is the mean squared error between ε and the network output', () => {
    const diffusion = make('epsilon', 'fixedlarge', 'mse');
    const x0 = randn([3, 2, 2, 1], 1);
    const eps = randn([3, 2, 2, 1], 2);
    const zeroNet = (xT: tf.Tensor): tf.Tensor => tf.zerosLike(xT);
    const { lossB } = trainingLosses(diffusion, zeroNet, x0, [5, 50, 500], eps);
    expectAllClose(lossB.dataSync(), meanFlat(tf.square(eps)).dataSync(), 1e-6);
    const exactNet = (): tf.Tensor => eps.clone();
    expect([...trainingLosses(diffusion, exactNet, x0, [5, 50, 500], eps).lossB.dataSync()]).toEqual([0, 0, 0]);
  });

  it.each([
    ['xstart', 'x_0'],
    ['xprev', 'the posterior mean'],
  ] as const)('with %s prediction the target is %s', (meanType, _target) => {
    const diffusion = make(meanType, 'fixedsmall', 'mse');
    const x0 = randn([2, 3], 3);
    const eps = randn([2, 3], 4);
    const t = [10, 900];
    const target =
      meanType === 'xstart' ? x0 : diffusion.qPosteriorMeanVariance(x0, diffusion.qSample(x0, t, eps), t).mean;
    const { lossB } = trainingLosses(diffusion, () => target.clone(), x0, t, eps);
    expectAllClose(lossB.dataSync(), [0, 0], 0, 1e-10);
  });
});

describe('the true variational bound (Eq. 5)', () => {
  it('the kl training loss equals the per-timestep terms of calcBpdLoop (the same KL computed two ways)', async () => {
    const T = 40;
    for (const [meanType, varianceType] of [
      ['epsilon', 'fixedlarge'],
      ['xstart', 'fixedsmall'],
      ['xprev', 'learned'],
      ['epsilon', 'learned-range'],
    ] as const) {
      const diffusion = make(meanType, varianceType, 'kl', T);
      const net = fakeNet(diffusion.outputChannelFactor);
      const x0 = tf.clipByValue(randn([2, 2, 2, 1], 5), -1, 1);
      const eps = randn([2, 2, 2, 1], 6);
      const bound = await calcBpdLoop(diffusion, net, x0, { noise: constantNoise(eps), clipDenoised: false });
      for (const t of [0, 1, 17, T - 1]) {
        const { lossB } = trainingLosses(diffusion, net, x0, [t, t], eps);
        const loss = lossB.dataSync();
        expectClose(loss[0]!, bound.termsBpdBT[0 * T + t]!, 1e-5, 1e-7);
        expectClose(loss[1]!, bound.termsBpdBT[1 * T + t]!, 1e-5, 1e-7);
      }
      tf.dispose([x0, eps]);
    }
  });

  it('at t index 0 the term is the discretized decoder NLL in bits/dim', () => {
    const diffusion = make('epsilon', 'fixedlarge', 'kl');
    const x0 = tf.tensor2d([[-1, 0, 1, 0.5]]);
    const eps = randn([1, 4], 7);
    const net = fakeNet(1);
    const xT = diffusion.qSample(x0, [0], eps);
    const { termsB } = vbTermsBpd(diffusion, net, x0, xT, [0], { clipDenoised: false });
    const p = diffusion.pMeanVariance(net, xT, [0], { clipDenoised: false });
    const ll = discretizedGaussianLogLikelihood(x0, p.mean, tf.mul(0.5, p.logVariance));
    expectClose(termsB.dataSync()[0]!, -tf.mean(ll).dataSync()[0]! / LN2, 1e-6);
  });

  it('with ε-prediction and a fixed variance, L_{t-1} = Eq. 12 weight × L_simple + a constant per t', () => {
    for (const varianceType of ['fixedlarge', 'fixedsmall'] as const) {
      const kl = make('epsilon', varianceType, 'kl');
      const weighted = make('epsilon', varianceType, 'weighted-mse');
      const simple = make('epsilon', varianceType, 'mse');
      const net = fakeNet(1);
      const x0 = tf.clipByValue(randn([4, 3, 3, 1], 8), -1, 1);
      const eps = randn([4, 3, 3, 1], 9);
      const t = [1, 2, 300, 999];
      const klB = trainingLosses(kl, net, x0, t, eps).lossB.dataSync();
      const weightedB = trainingLosses(weighted, net, x0, t, eps).lossB.dataSync();
      const simpleB = trainingLosses(simple, net, x0, t, eps).lossB.dataSync();
      const { betas, alphas, alphasCumprod, posteriorVariance } = kl.tables;
      t.forEach((ti, b) => {
        const sigma2 = varianceType === 'fixedlarge' ? betas[ti]! : posteriorVariance[ti]!;
        // Eq. 12 weight, written out independently of meanMatchingWeights.
        const weight = betas[ti]! ** 2 / (2 * sigma2 * alphas[ti]! * (1 - alphasCumprod[ti]!));
        // The variance-only part of KL(N(μ̃, β̃) || N(μ_θ, σ²)), per dimension.
        const constant =
          0.5 * (-1 + Math.log(sigma2) - Math.log(posteriorVariance[ti]!) + posteriorVariance[ti]! / sigma2);
        expectClose(weightedB[b]!, (weight * simpleB[b]!) / LN2, 1e-5, 1e-9);
        expectClose(klB[b]!, weightedB[b]! + constant / LN2, 2e-3, 1e-6);
        if (varianceType === 'fixedsmall') expect(Math.abs(constant)).toBeLessThan(1e-12);
      });
      tf.dispose([x0, eps]);
    }
  });

  it('meanMatchingWeights refuses learned variances', () => {
    expect(() => meanMatchingWeights(make('epsilon', 'learned', 'kl'))).toThrow(/Eq. 8 weights need a fixed variance/);
  });

  it('leaks no tensors across loss evaluations', () => {
    const diffusion = make('xprev', 'learned-range', 'kl');
    const net = fakeNet(2);
    const x0 = randn([2, 4, 4, 3], 10);
    const eps = randn([2, 4, 4, 3], 11);
    const run = (): void => {
      trainingLosses(diffusion, net, x0, [0, 500], eps).lossB.dispose();
    };
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    expect(tf.memory().numTensors).toBe(before);
  });
});

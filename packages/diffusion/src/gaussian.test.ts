import * as tf from '@tensorflow/tfjs-core';

import { approxStandardNormalCdf, discretizedGaussianLogLikelihood, meanFlat, normalKl } from './gaussian';
import { expectClose, loadGolden, useCpuBackend } from './test-support';

const golden = loadGolden();

beforeAll(useCpuBackend);

describe('normalKl', () => {
  it.each(golden.normalKl.map((c) => [c.slice(0, 4), c[4]!] as const))('KL(%j) = %d nats', (args, expected) => {
    const [m1, lv1, m2, lv2] = args.map((v) => tf.scalar(v));
    const kl = normalKl(m1!, lv1!, m2!, lv2!);
    expectClose(kl.dataSync()[0]!, expected, 1e-5, 1e-6);
    tf.dispose([m1!, lv1!, m2!, lv2!, kl]);
  });

  it('broadcasts per-example log-variances against images', () => {
    const mean1 = tf.zeros([2, 2, 2, 1]);
    const mean2 = tf.ones([2, 2, 2, 1]);
    const lv = tf.zeros([2, 1, 1, 1]);
    const kl = normalKl(mean1, lv, mean2, lv);
    expect(kl.shape).toEqual([2, 2, 2, 1]);
    expect([...kl.dataSync()].every((v) => Math.abs(v - 0.5) < 1e-6)).toBe(true);
    tf.dispose([mean1, mean2, lv, kl]);
  });
});

describe('discretized Gaussian decoder (Eq. 13)', () => {
  it.each(golden.decoder.map((c) => [c[0]!, c[1]!, c[2]!, c[3]!] as const))(
    'log p(x=%d | mean=%d, log scale=%d) = %d',
    (x, mean, logScale, expected) => {
      const ll = discretizedGaussianLogLikelihood(tf.scalar(x), tf.scalar(mean), tf.scalar(logScale));
      expectClose(ll.dataSync()[0]!, expected, 2e-5, 2e-5);
      ll.dispose();
    },
  );

  it('probabilities over all 256 bins sum to one (the edges carry the tails)', () => {
    const xs = tf.tensor1d(Array.from({ length: 256 }, (_, i) => (i / 255) * 2 - 1));
    const ll = discretizedGaussianLogLikelihood(xs, tf.scalar(0.3), tf.scalar(Math.log(0.2)));
    const total = tf.sum(tf.exp(ll)).dataSync()[0]!;
    expectClose(total, 1, 1e-4);
    tf.dispose([xs, ll]);
  });

  it('the approximate CDF is within 1e-3 of the exact one', () => {
    const xs = tf.linspace(-4, 4, 81);
    const approx = approxStandardNormalCdf(xs).dataSync();
    const exact = tf.mul(0.5, tf.add(1, tf.erf(tf.div(xs, Math.SQRT2)))).dataSync();
    approx.forEach((v, i) => expect(Math.abs(v - exact[i]!)).toBeLessThan(1e-3));
    xs.dispose();
  });
});

describe('meanFlat', () => {
  it('averages every axis but the batch axis', () => {
    const x = tf.tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
    expect([...meanFlat(x).dataSync()]).toEqual([2.5, 6.5]);
    x.dispose();
  });
});

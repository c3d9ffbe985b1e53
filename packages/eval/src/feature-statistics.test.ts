import { Rng } from '@ddpm/core';

import { FeatureAccumulator } from './feature-statistics';

describe('FeatureAccumulator', () => {
  const d = 7;
  const count = 103;
  const rng = Rng.fromSeed(11);
  // Far from the origin, where one-pass sums of squares lose digits.
  const x = Float64Array.from({ length: count * d }, (_, i) => 1e4 + (i % d) + rng.uniform());

  it('matches the two-pass mean and N − 1 covariance whatever the batching', () => {
    const mean = new Float64Array(d);
    for (let i = 0; i < count; i++) for (let k = 0; k < d; k++) mean[k] = mean[k]! + x[i * d + k]! / count;
    const cov = new Float64Array(d * d);
    for (let i = 0; i < count; i++)
      for (let a = 0; a < d; a++)
        for (let b = 0; b < d; b++)
          cov[a * d + b] = cov[a * d + b]! + ((x[i * d + a]! - mean[a]!) * (x[i * d + b]! - mean[b]!)) / (count - 1);
    for (const sizes of [[count], [1, 50, 52], [10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3]]) {
      const acc = new FeatureAccumulator(d);
      let start = 0;
      for (const s of sizes) {
        acc.add(x.subarray(start * d, (start + s) * d), s);
        start += s;
      }
      const st = acc.statistics();
      expect(st.count).toBe(count);
      for (let k = 0; k < d; k++) expect(st.mean[k]).toBeCloseTo(mean[k]!, 9);
      for (let k = 0; k < d * d; k++) expect(Math.abs(st.covariance[k]! - cov[k]!)).toBeLessThan(1e-10);
      for (let a = 0; a < d; a++)
        for (let b = 0; b < a; b++) expect(st.covariance[a * d + b]).toBe(st.covariance[b * d + a]);
    }
  });

  it('keeps a uniform sample of the vectors when asked, reproducibly', () => {
    const ids = Float32Array.from({ length: 1000 }, (_, i) => i);
    const picks = new Array<number>(1000).fill(0);
    for (let seed = 0; seed < 200; seed++) {
      const acc = new FeatureAccumulator(1, { keep: 100, seed });
      for (let s = 0; s < 1000; s += 64) acc.add(ids.subarray(s, Math.min(1000, s + 64)), Math.min(64, 1000 - s));
      const kept = acc.keptFeatures();
      expect(kept.count).toBe(100);
      expect(new Set(kept.featuresND).size).toBe(100);
      for (const v of kept.featuresND) picks[v]! += 1;
    }
    // Each vector is kept with probability 0.1: 20 times in 200 runs on average. The first and
    // last hundred (where a biased reservoir goes wrong) are each kept about as often as the rest.
    const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(picks.slice(0, 100))).toBeGreaterThan(17);
    expect(mean(picks.slice(0, 100))).toBeLessThan(23);
    expect(mean(picks.slice(900))).toBeGreaterThan(17);
    expect(mean(picks.slice(900))).toBeLessThan(23);
    const again = new FeatureAccumulator(1, { keep: 100, seed: 3 });
    const once = new FeatureAccumulator(1, { keep: 100, seed: 3 });
    again.add(ids, 1000);
    once.add(ids, 1000);
    expect(again.keptFeatures().featuresND).toEqual(once.keptFeatures().featuresND);
  });

  it('refuses non-finite features, wrong shapes and a covariance of one vector', () => {
    const acc = new FeatureAccumulator(2);
    expect(() => acc.add(Float32Array.of(1, Number.NaN), 1)).toThrow(/feature 1 of vector 0 of the batch is NaN/);
    expect(() => acc.add(Float32Array.of(1, 2, 3), 2)).toThrow(/3 values are not 2 feature vectors of dimension 2/);
    acc.add(Float32Array.of(1, 2), 1);
    expect(() => acc.statistics()).toThrow(/at least 2 feature vectors, got 1/);
  });
});

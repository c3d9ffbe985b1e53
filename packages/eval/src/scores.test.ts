import { Rng } from '@ddpm/core';

import { inceptionScore } from './inception-score';
import { kernelInceptionDistance } from './kid';

describe('kernelInceptionDistance', () => {
  const d = 8;
  const gaussian = (n: number, seed: number, shift: number): Float32Array => {
    const rng = Rng.fromSeed(seed);
    return Float32Array.from(rng.normals(n * d), (v) => v + shift);
  };

  it('equals the unbiased MMD² by its definition when one subset is the whole sets', () => {
    const n = 30;
    const x = gaussian(n, 1, 0);
    const y = gaussian(n, 2, 0.5);
    const k = (a: Float32Array, i: number, b: Float32Array, j: number): number => {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += a[i * d + c]! * b[j * d + c]!;
      return (dot / d + 1) ** 3;
    };
    let xx = 0;
    let yy = 0;
    let xy = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i !== j) {
          xx += k(x, i, x, j);
          yy += k(y, i, y, j);
        }
        xy += k(x, i, y, j);
      }
    }
    const expected = (xx + yy) / (n * (n - 1)) - (2 * xy) / (n * n);
    const r = kernelInceptionDistance(x, n, y, n, d, { subsets: 3, subsetSize: n });
    expect(r.mean).toBeCloseTo(expected, 10);
    expect(r.std).toBeLessThan(1e-12); // the same sets in another order
  });

  it('is near 0 for one distribution and grows with the shift', () => {
    const same = kernelInceptionDistance(gaussian(400, 3, 0), 400, gaussian(400, 4, 0), 400, d, {
      subsets: 20,
      subsetSize: 200,
    });
    const near = kernelInceptionDistance(gaussian(400, 3, 0), 400, gaussian(400, 4, 0.3), 400, d, {
      subsets: 20,
      subsetSize: 200,
    });
    const far = kernelInceptionDistance(gaussian(400, 3, 0), 400, gaussian(400, 4, 1), 400, d, {
      subsets: 20,
      subsetSize: 200,
    });
    expect(Math.abs(same.mean)).toBeLessThan(3 * same.std + 0.01);
    expect(near.mean).toBeGreaterThan(same.mean);
    expect(far.mean).toBeGreaterThan(4 * near.mean);
    expect(same.subsetSize).toBe(200);
  });

  it('needs two vectors a side', () => {
    expect(() => kernelInceptionDistance(gaussian(1, 1, 0), 1, gaussian(5, 1, 0), 5, d)).toThrow(
      /at least 2 feature vectors on each side, got 1 and 5/,
    );
  });
});

describe('inceptionScore', () => {
  it('is 1 when every prediction is the same and K for confident, evenly spread predictions', () => {
    const classes = 5;
    const n = 100;
    const uniform = new Float32Array(n * classes);
    const r1 = inceptionScore(uniform, n, classes);
    expect(r1.mean).toBeCloseTo(1, 12);
    expect(r1.std).toBeCloseTo(0, 12);
    const confident = new Float32Array(n * classes).fill(-1000);
    for (let i = 0; i < n; i++) confident[i * classes + (i % classes)] = 1000;
    const r2 = inceptionScore(confident, n, classes);
    expect(r2.mean).toBeCloseTo(classes, 9);
    expect(r2.splits).toBe(10);
  });

  it('matches the formula on random logits and drops the remainder as improved-GAN does', () => {
    const rng = Rng.fromSeed(9);
    const classes = 4;
    const n = 23;
    const logits = Float32Array.from(rng.normals(n * classes), (v) => 3 * v);
    const r = inceptionScore(logits, n, classes, 2);
    expect(r.count).toBe(22);
    const softmax = (i: number): number[] => {
      const e = Array.from({ length: classes }, (_, k) => Math.exp(logits[i * classes + k]!));
      const z = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / z);
    };
    const split = (s: number): number => {
      const rows = Array.from({ length: 11 }, (_, i) => softmax(s * 11 + i));
      const py = Array.from({ length: classes }, (_, k) => rows.reduce((a, row) => a + row[k]!, 0) / 11);
      const kl = rows.reduce((a, row) => a + row.reduce((b, p, k) => b + p * Math.log(p / py[k]!), 0), 0) / 11;
      return Math.exp(kl);
    };
    const scores = [split(0), split(1)];
    const mean = (scores[0]! + scores[1]!) / 2;
    expect(r.mean).toBeCloseTo(mean, 6);
    expect(r.std).toBeCloseTo(Math.abs(scores[0]! - scores[1]!) / 2, 6);
  });
});

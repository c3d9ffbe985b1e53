/**
 * `.npz` files against NumPy itself (Debian's python3-numpy, which .ci/run installs), and the
 * Fréchet distance against NumPy's LAPACK eigensolver on the same statistics. Skipped, saying so,
 * without python3-numpy.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { Rng } from '@ddpm/core';

import { FeatureAccumulator, type FeatureStatistics } from './feature-statistics';
import { frechetDistance } from './frechet';
import { PYTHON, describeWithPython } from '../../../test/support/python';
import { readNpy, readNpz, statisticsFromNpz, statisticsToNpz, writeNpz } from './npz';

const python = (script: string, cwd: string): string => execFileSync(PYTHON, ['-c', script], { cwd, encoding: 'utf8' });

describeWithPython(['numpy'], 'apt-get install python3-numpy')('.npz files and NumPy', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ddpm-npz-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads what numpy.savez and savez_compressed write: dtypes, byte orders, Fortran order', () => {
    python(
      [
        'import numpy as np',
        'a = np.arange(12, dtype="<f8").reshape(3, 4) / 7',
        'np.savez("plain.npz", mu=np.array([1.5, -2.25, 1e-300]), sigma=a, f32=a.astype("<f4"), big=a.astype(">f8"), fortran=np.asfortranarray(a), ints=np.arange(5, dtype=np.int64))',
        'np.savez_compressed("packed.npz", mu=np.array([3.0, 4.0]), sigma=np.eye(2))',
      ].join('\n'),
      dir,
    );
    const arrays = readNpz(readFileSync(path.join(dir, 'plain.npz')));
    const expected = Array.from({ length: 12 }, (_, i) => i / 7);
    expect(arrays.get('mu')!.data).toEqual(Float64Array.of(1.5, -2.25, 1e-300));
    for (const name of ['sigma', 'big', 'fortran']) {
      expect(arrays.get(name)!.shape).toEqual([3, 4]);
      expect(Array.from(arrays.get(name)!.data)).toEqual(expected);
    }
    expect(arrays.get('big')!.dtype).toBe('>f8');
    Array.from(arrays.get('f32')!.data).forEach((v, i) => expect(v).toBe(Math.fround(expected[i]!)));
    expect(Array.from(arrays.get('ints')!.data)).toEqual([0, 1, 2, 3, 4]);
    const packed = statisticsFromNpz(readFileSync(path.join(dir, 'packed.npz')));
    expect(packed.dim).toBe(2);
    expect(packed.countKnown).toBe(false);
    expect(Array.from(packed.covariance)).toEqual([1, 0, 0, 1]);
  });

  it('writes what NumPy reads back bit for bit, and round-trips statistics', () => {
    const rng = Rng.fromSeed(4);
    const acc = new FeatureAccumulator(5);
    acc.add(Float64Array.from(rng.normals(5 * 40)), 40);
    const st = acc.statistics();
    writeFileSync(path.join(dir, 'ours.npz'), statisticsToNpz(st));
    const out = python(
      [
        'import numpy as np',
        'f = np.load("ours.npz")',
        'print(f["mu"].dtype, f["sigma"].shape, int(f["count"][0]))',
        'print(repr(f["mu"].tolist()))',
        'print(repr(f["sigma"].ravel().tolist()))',
      ].join('\n'),
      dir,
    )
      .trim()
      .split('\n');
    expect(out[0]).toBe('float64 (5, 5) 40');
    // Python's repr of a float is the shortest string that reads back to the same double.
    expect(JSON.parse(out[1]!)).toEqual(Array.from(st.mean));
    expect(JSON.parse(out[2]!)).toEqual(Array.from(st.covariance));
    const back = statisticsFromNpz(statisticsToNpz(st));
    expect(back.mean).toEqual(st.mean);
    expect(back.covariance).toEqual(st.covariance);
    expect(back.count).toBe(40);
    expect(back.countKnown).toBe(true);
    expect(back.features).toBeUndefined();
    const kept = { featuresND: Float32Array.from({ length: 3 * 5 }, (_, i) => i / 8), count: 3 };
    expect(statisticsFromNpz(statisticsToNpz(st, kept)).features).toEqual(kept);
  });

  /** Statistics of `count` correlated d-dimensional vectors (an AR(1) along the coordinates), and the vectors. */
  const make = (
    d: number,
    count: number,
    seed: number,
    shift: number,
  ): { statistics: FeatureStatistics; x: Float64Array } => {
    const rng = Rng.fromSeed(seed);
    const acc = new FeatureAccumulator(d);
    const x = Float64Array.from(rng.normals(count * d));
    for (let i = 0; i < count; i++)
      for (let k = 1; k < d; k++) x[i * d + k] = 0.7 * x[i * d + k - 1]! + x[i * d + k]! + shift;
    acc.add(x, count);
    return { statistics: acc.statistics(), x };
  };

  /** NumPy's distance by the eigh route (pytorch-fid's value without sqrtm's iterations) for a.npz and b.npz. */
  const numpyDistance = (): number =>
    Number(
      python(
        [
          'import numpy as np',
          'a, b = np.load("a.npz"), np.load("b.npz")',
          'w, v = np.linalg.eigh(a["sigma"])',
          'r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T',
          'lam = np.linalg.eigvalsh(r @ b["sigma"] @ r)',
          'fd = np.sum((a["mu"] - b["mu"]) ** 2) + np.trace(a["sigma"]) + np.trace(b["sigma"]) - 2 * np.sum(np.sqrt(np.clip(lam, 0, None)))',
          'print(repr(float(fd)))',
        ].join('\n'),
        dir,
      ),
    );

  it.each([
    [64, 500],
    [256, 1000],
  ])(
    'gives the Fréchet distance NumPy’s LAPACK eigensolver gives on the same statistics (d = %i, %i vectors)',
    (d, count) => {
      const a = make(d, count, 1, 0).statistics;
      const b = make(d, count, 2, 0.05).statistics;
      writeFileSync(path.join(dir, 'a.npz'), statisticsToNpz(a));
      writeFileSync(path.join(dir, 'b.npz'), statisticsToNpz(b));
      const reference = numpyDistance();
      const ours = frechetDistance(a, b);
      expect(reference).toBeGreaterThan(1);
      expect(ours.rank).toBe(d);
      expect(Math.abs(ours.distance - reference)).toBeLessThan(1e-9 * reference);
    },
  );

  it('gives the exact Fréchet distance of rank-deficient statistics, where the eigh route only comes near', () => {
    // 100 vectors in 256 dimensions: both covariances have rank 99. The reference value comes from
    // the vectors themselves: with B the r × d rows of X₁'s thin SVD that carry its rank,
    // Σ₁ = Bᵀ B / (N − 1), and the non-zero eigenvalues of Σ₁ Σ₂ are those of the positive definite
    // B Σ₂ Bᵀ / (N − 1); no zero eigenvalue is ever square-rooted.
    const d = 256;
    const count = 100;
    const a = make(d, count, 3, 0);
    const b = make(d, count, 4, 0.05).statistics;
    writeFileSync(path.join(dir, 'a.npz'), statisticsToNpz(a.statistics));
    writeFileSync(path.join(dir, 'b.npz'), statisticsToNpz(b));
    writeFileSync(path.join(dir, 'x.npz'), writeNpz({ x: { shape: [count, d], data: a.x } }));
    const exact = Number(
      python(
        [
          'import numpy as np',
          'a, b, x = np.load("a.npz"), np.load("b.npz"), np.load("x.npz")["x"]',
          'xc = x - x.mean(axis=0)',
          'u, s, vt = np.linalg.svd(xc, full_matrices=False)',
          'r = int(np.sum(s > s[0] * 1e-10))',
          'bb = s[:r, None] * vt[:r]',
          'lam = np.linalg.eigvalsh(bb @ b["sigma"] @ bb.T / (len(x) - 1))',
          'fd = np.sum((a["mu"] - b["mu"]) ** 2) + np.trace(a["sigma"]) + np.trace(b["sigma"]) - 2 * np.sum(np.sqrt(lam))',
          'print(r, repr(float(fd)))',
        ].join('\n'),
        dir,
      )
        .trim()
        .split(' ')[1],
    );
    const eigh = numpyDistance();
    const ours = frechetDistance(a.statistics, b);
    expect(ours.rank).toBe(count - 1);
    expect(Math.abs(ours.distance - exact)).toBeLessThan(1e-9 * exact);
    // The eigh route square-roots 157 rounding-sized eigenvalues of Σ₁ (and more of R Σ₂ R).
    expect(Math.abs(eigh - exact)).toBeLessThan(1e-6 * exact);
  });

  it('names what is wrong with a file', () => {
    expect(() => readNpz(Uint8Array.of(1, 2, 3), 'x.npz')).toThrow(/x.npz: not a zip archive/);
    expect(() => readNpy(new TextEncoder().encode('hello world'), 'y.npy')).toThrow(/y.npy: not a .npy file/);
    const onlyMu = writeNpz({ mu: { shape: [2], data: Float64Array.of(1, 2) } });
    expect(() => statisticsFromNpz(onlyMu, 'z.npz')).toThrow(/z.npz: needs arrays mu and sigma .* found mu/);
    const mismatched = writeNpz({
      mu: { shape: [2], data: Float64Array.of(1, 2) },
      sigma: { shape: [3, 3], data: new Float64Array(9) },
    });
    expect(() => statisticsFromNpz(mismatched, 'w.npz')).toThrow(/sigma has shape \(3, 3\), expected \(2, 2\)/);
    const badFeatures = writeNpz({
      mu: { shape: [2], data: Float64Array.of(1, 2) },
      sigma: { shape: [2, 2], data: new Float64Array(4) },
      features: { shape: [2, 3], data: new Float64Array(6) },
    });
    expect(() => statisticsFromNpz(badFeatures, 'f.npz')).toThrow(/features has shape \(2, 3\), expected \(n, 2\)/);
  });
});

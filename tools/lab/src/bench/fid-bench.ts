/**
 * `ddpm bench fid`: our Fréchet distance between two d-dimensional Gaussian statistics (what
 * `ddpm fid a.npz b.npz` computes once the files are read) against NumPy's on the same .npz files,
 * measured in the same run, interleaved in rounds.
 *
 * - The statistics: covariances of a few thousand random feature vectors with correlated
 *   coordinates and a decaying spectrum (as real features have), the second set shifted and
 *   scaled, written with `statisticsToNpz`.
 * - Ours: `frechetDistance` on the statistics read from the files (the library call; one call
 *   before the rounds compiles the kernels and grows their memory), with each phase's time.
 * - NumPy (a fresh python3 per round, timed inside Python around the computation only): the eigh
 *   route, R = Σ₁^½ from eigh, then eigvalsh(R Σ₂ R); and where SciPy imports, pytorch-fid's
 *   route, scipy.linalg.sqrtm(Σ₁ Σ₂).
 *
 * The report names the BLAS and LAPACK that NumPy ran on and the threads OpenBLAS may use
 * (python-blas.ts). OpenBLAS picks its kernels by CPU model, and an OpenBLAS older than the CPU
 * falls back to slow generic ones: the reference runs with OPENBLAS_CORETYPE set by the CPU's
 * instruction sets unless the environment sets it (python-blas.ts, referenceEnv).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { Rng } from '@ddpm/core';
import {
  FeatureAccumulator,
  type FeatureStatistics,
  type LinalgPhase,
  frechetDistance,
  statisticsFromNpz,
  statisticsToNpz,
} from '@ddpm/eval';

import { CliUsageError } from '@ddpm/cli/toolkit';
import { probePythonBlas, referenceEnv } from './python-blas';
import { median, round } from './timing';

export interface FidBenchOptions {
  readonly dim: number;
  readonly rounds: number;
  /** The Python with NumPy (and SciPy, optionally). */
  readonly python: string;
  /** Report a skip instead of failing when NumPy does not import (`ddpm bench all`). */
  readonly skipWithoutNumpy?: boolean;
}

/** Feature vectors per set: a few thousand, and more than the dimension (full-rank covariances). */
export function fidBenchVectors(dim: number): number {
  return Math.max(3000, dim + 1000);
}

/**
 * Statistics of `count` vectors: an AR(1) along the coordinates (neighbours correlate), scaled by
 * (1 + k/64)⁻¹ so that the spectrum decays, times `scale`, plus `shift`.
 */
function syntheticStatistics(
  dim: number,
  count: number,
  seed: number,
  shift: number,
  scale: number,
): FeatureStatistics {
  const rng = Rng.fromSeed(seed);
  const x = Float64Array.from(rng.normals(count * dim));
  for (let i = 0; i < count; i++) {
    let carry = 0;
    for (let k = 0; k < dim; k++) {
      carry = 0.6 * carry + x[i * dim + k]!;
      x[i * dim + k] = (scale * carry) / (1 + k / 64) + shift;
    }
  }
  const acc = new FeatureAccumulator(dim);
  acc.add(x, count);
  return acc.statistics();
}

const NUMPY_SCRIPT = String.raw`
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings('ignore')
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
mu1, s1, mu2, s2 = a['mu'], a['sigma'], b['mu'], b['sigma']
np.linalg.eigvalsh(np.eye(8) + 1.0)  # LAPACK loaded, BLAS threads started
def tail(tr):
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr)
start = time.perf_counter()
w, v = np.linalg.eigh(s1)
r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
lam = np.linalg.eigvalsh(r @ s2 @ r)
eigh = tail(np.sum(np.sqrt(np.clip(lam, 0, None))))
out = {'numpy': np.__version__, 'eighMs': (time.perf_counter() - start) * 1e3, 'eighDistance': eigh}
try:
    import scipy, scipy.linalg
    out['scipy'] = scipy.__version__
except ImportError:
    out['scipy'] = None
if out['scipy'] is not None:
    start = time.perf_counter()
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    if isinstance(covmean, tuple):
        covmean = covmean[0]
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
        covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    out['sqrtmDistance'] = tail(np.trace(covmean))
    out['sqrtmMs'] = (time.perf_counter() - start) * 1e3
print(json.dumps(out))
`;

interface NumpyRound {
  readonly numpy: string;
  readonly scipy: string | null;
  readonly eighMs: number;
  readonly eighDistance: number;
  readonly sqrtmMs?: number;
  readonly sqrtmDistance?: number;
}

function runNumpy(python: string, a: string, b: string): Promise<NumpyRound> {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-c', NUMPY_SCRIPT, a, b],
      { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 20, env: referenceEnv().env },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new Error(
              `the NumPy reference (${python}) failed: ${(stderr.trim().split('\n').pop() ?? '') || err.message}`,
            ),
          );
        else resolve(JSON.parse(stdout) as NumpyRound);
      },
    );
  });
}

const relative = (x: number, reference: number): number => Math.abs(x - reference) / Math.abs(reference);

/** Medians of each phase's time over the rounds, with its GFLOP/s. */
function phaseSummary(rounds: readonly LinalgPhase[][]): Record<string, { ms: number; gflops: number }> {
  const names = [...new Set(rounds.flat().map((p) => p.name))];
  return Object.fromEntries(
    names.map((name) => {
      const of = rounds.map((phases) => phases.find((p) => p.name === name)!).filter(Boolean);
      const ms = median(of.map((p) => p.ms));
      return [name, { ms: round(ms, 1), gflops: round(median(of.map((p) => p.flops / p.ms / 1e6)), 2) }];
    }),
  );
}

export async function benchFid(options: FidBenchOptions): Promise<Record<string, unknown>> {
  const { dim, rounds, python } = options;
  const probe = await probePythonBlas(python, ['numpy', 'scipy']).catch((err: Error) => err);
  const noNumpy =
    probe instanceof Error
      ? probe.message
      : probe.modules['numpy'] === null
        ? `${python} cannot import numpy (apt-get install python3-numpy)`
        : undefined;
  if (noNumpy !== undefined) {
    if (options.skipWithoutNumpy) return { benchmark: 'fid', skipped: noNumpy };
    throw new CliUsageError(`ddpm bench fid needs NumPy: ${noNumpy}`);
  }
  const vectors = fidBenchVectors(dim);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-bench-fid-'));
  try {
    const files = [path.join(dir, 'a.npz'), path.join(dir, 'b.npz')] as const;
    await fs.writeFile(files[0], statisticsToNpz(syntheticStatistics(dim, vectors, 1, 0, 1)));
    await fs.writeFile(files[1], statisticsToNpz(syntheticStatistics(dim, vectors, 2, 0.05, 1.1)));
    const [a, b] = await Promise.all(files.map(async (f) => statisticsFromNpz(await fs.readFile(f), f)));
    const time = (): { ms: number; phases: LinalgPhase[]; distance: number; rank: number } => {
      const phases: LinalgPhase[] = [];
      const start = performance.now();
      const r = frechetDistance(a!, b!, { onPhase: (p) => phases.push(p) });
      return { ms: performance.now() - start, phases, distance: r.distance, rank: r.rank };
    };
    const first = time();
    const ours: ReturnType<typeof time>[] = [];
    const numpy: NumpyRound[] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(time());
      numpy.push(await runNumpy(python, files[0], files[1]));
    }
    return report(options, vectors, first.ms, ours, numpy, probe as Exclude<typeof probe, Error>);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function report(
  options: FidBenchOptions,
  vectors: number,
  firstMs: number,
  ours: readonly { ms: number; phases: LinalgPhase[]; distance: number; rank: number }[],
  numpy: readonly NumpyRound[],
  probe: Awaited<ReturnType<typeof probePythonBlas>>,
): Record<string, unknown> {
  const oursMs = median(ours.map((o) => o.ms));
  const distance = ours[0]!.distance;
  const eighMs = median(numpy.map((n) => n.eighMs));
  const eighDistance = numpy[0]!.eighDistance;
  const sqrtm = numpy[0]!.sqrtmMs !== undefined;
  const sqrtmMs = sqrtm ? median(numpy.map((n) => n.sqrtmMs!)) : undefined;
  return {
    benchmark: 'fid',
    dim: options.dim,
    vectors,
    rounds: options.rounds,
    ours: {
      medianMs: round(oursMs, 1),
      samplesMs: ours.map((o) => round(o.ms, 1)),
      firstCallMs: round(firstMs, 1),
      distance,
      rank: ours[0]!.rank,
      phases: phaseSummary(ours.map((o) => o.phases)),
      sameBitsEveryRound: ours.every((o) => o.distance === distance),
    },
    numpy: {
      version: numpy[0]!.numpy,
      eighMedianMs: round(eighMs, 1),
      samplesMs: numpy.map((n) => round(n.eighMs, 1)),
      distance: eighDistance,
    },
    scipy: sqrtm
      ? {
          version: numpy[0]!.scipy,
          sqrtmMedianMs: round(sqrtmMs!, 1),
          samplesMs: numpy.map((n) => round(n.sqrtmMs!, 1)),
          distance: numpy[0]!.sqrtmDistance,
        }
      : { skipped: `${options.python} cannot import scipy: pytorch-fid's sqrtm route not timed` },
    ratios: {
      oursOverNumpyEigh: round(oursMs / eighMs, 3),
      ...(sqrtm ? { oursOverScipySqrtm: round(oursMs / sqrtmMs!, 3) } : {}),
    },
    agreement: {
      relativeDifferenceNumpyEigh: relative(distance, eighDistance),
      ...(sqrtm ? { relativeDifferenceScipySqrtm: relative(distance, numpy[0]!.sqrtmDistance!) } : {}),
    },
    python: probe,
    // The kernels OpenBLAS ran (OPENBLAS_CORETYPE: the environment's, or ours by the CPU's flags).
    openblasCoretype: referenceEnv().coretype,
  };
}

/**
 * `ddpm study quality` — the sample-quality study: on Fashion-MNIST, through the real service (the
 * API, two workers, every train job a data-parallel group of 2: both cores of a 2-core machine),
 * each candidate configuration trains for the same budget of training time (`budgetMinutes`),
 * evaluated on the way (the offline extractor's distance, pixel statistics against the reference),
 * then the test-set bound in bits/dim of each final checkpoint (eval jobs). Writes the curves (PNG),
 * the table (CSV and Markdown) and the best run's samples at its start, middle and end into --docs
 * (study-report.ts writes them).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FASHION_MNIST_DIR } from '@ddpm/data';
import { realDataDistance } from '@ddpm/engine';
import { openStore } from '@ddpm/storage';

import { type ApiClient, type TrainRequest } from '@ddpm/api-client';
import {
  type CliIo,
  CliUsageError,
  formatDuration,
  parseCommandArgs,
  parseInteger,
  parseNumber,
  waitForJob,
  startTensors,
} from '@ddpm/cli/toolkit';
import { type LocalService, startLocalService } from '../local-services';
import {
  type PixelStatistics,
  type RunResult,
  type SampleGrid,
  type StudyBudget,
  budgetText,
  finalFd,
  writeStudyDocs,
} from './study-report';
import { STUDY_CANDIDATES, type StudyCandidate } from './study-candidates';

export const STUDY_USAGE = `Usage: ddpm study quality [--budget-minutes M | --budget-steps S] [--candidates LIST] [--evals N] [--eval-count N]
                          [--eval-steps S] [--nll-images N] [--out DIR] [--docs DIR]

The sample-quality study on Fashion-MNIST (apt-get install dataset-fashion-mnist). Starts Redis (if
none answers), the API and 2 workers; trains each candidate as a data-parallel group of 2 for
--budget-minutes of training time (default 10), evaluating it --evals times on the way (default 3:
fd_fmnist_cnn and pixel statistics of --eval-count samples (default 128), ancestral sampling in
--eval-steps strided steps (default 50)); then measures the bound in bits/dim of every final
checkpoint on --nll-images test images (default 8; eval jobs) and the real-data floor of the
distance at the same sample count. Writes curves (PNG), results.csv, README.md and the best run's
samples at its start, middle and end into --docs (default docs/quality-study); runs and logs in
--out (default runs/quality-study-<time>).
  --budget-steps S    train each candidate for S optimizer steps instead of a time budget: a step-matched
                      comparison, for candidates of the same cost per step compared at an earlier
                      run's step count (curves then by step)
  --candidates LIST   of: ${STUDY_CANDIDATES.map((c) => c.name).join(', ')} (default: ${STUDY_CANDIDATES.filter(
    (c) => c.byDefault,
  )
    .map((c) => c.name)
    .join(', ')}; fashion32's evaluations alone take ~30 min on 2 cores)
  --adopt NAME=JOB,...  use these finished train jobs of an interrupted study (same --out and --queue-prefix) instead of training the candidates again
  --queue-prefix P    the queue prefix of the study's service (default study-<time>; an interrupted study's, to adopt its jobs)
A candidate whose train job fails or is cancelled is reported and left out of the curves.
`;

/** The study's settings, from its flags. */
interface StudySettings {
  readonly budget: StudyBudget;
  readonly evals: number;
  readonly evalCount: number;
  readonly evalSteps: number;
  readonly nllImages: number;
  readonly candidates: readonly StudyCandidate[];
  /** Finished train jobs of an interrupted study to use instead of training again, by candidate. */
  readonly adopted: ReadonlyMap<string, string>;
}

type StudyEnv = { tty: boolean; signal?: AbortSignal };

export async function studyCommand(
  argv: readonly string[],
  io: CliIo,
  env: StudyEnv = { tty: false },
): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind !== 'quality')
    throw new CliUsageError(`expected "ddpm study quality", got ${JSON.stringify(['study', ...argv].join(' '))}`);
  const { values, settings } = parseStudyArgs(rest);
  try {
    await fs.access(path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
  } catch {
    io.stderr(`the study needs Fashion-MNIST in ${FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)\n`);
    return 1;
  }
  const started = Date.now();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(String(values['out'] ?? path.join('runs', `quality-study-${stamp}`)));
  const docs = path.resolve(String(values['docs'] ?? path.join('docs', 'quality-study')));
  await fs.mkdir(docs, { recursive: true });
  const service = await startLocalService(out, 2, String(values['queue-prefix'] ?? `study-${stamp}`), io);
  if (!service) return 1;
  try {
    const command = `ddpm study quality ${rest.join(' ')}`.trim();
    return await runStudy(service, settings, { command, docs, out, started }, io, env);
  } finally {
    await service.stop();
  }
}

/** The flags of `ddpm study quality`, checked (usage errors name the flag) before anything starts. */
function parseStudyArgs(rest: readonly string[]): {
  values: Record<string, string | boolean | undefined>;
  settings: StudySettings;
} {
  const { values, positionals } = parseCommandArgs(rest, {
    'budget-minutes': { type: 'string' },
    'budget-steps': { type: 'string' },
    candidates: { type: 'string' },
    evals: { type: 'string' },
    'eval-count': { type: 'string' },
    'eval-steps': { type: 'string' },
    'nll-images': { type: 'string' },
    out: { type: 'string' },
    docs: { type: 'string' },
    adopt: { type: 'string' },
    'queue-prefix': { type: 'string' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values['budget-minutes'] !== undefined && values['budget-steps'] !== undefined) {
    throw new CliUsageError('--budget-minutes and --budget-steps are alternatives: give one');
  }
  const budget: StudyBudget =
    values['budget-steps'] !== undefined
      ? { steps: parseInteger('budget-steps', values['budget-steps'], 1, { min: 1, max: 10_000_000 }) }
      : { minutes: parseNumber('budget-minutes', values['budget-minutes'], 10) };
  if ('minutes' in budget && !(budget.minutes > 0))
    throw new CliUsageError(`--budget-minutes must be positive, got ${JSON.stringify(values['budget-minutes'])}`);
  const evals = parseInteger('evals', values['evals'], 3, { min: 1, max: 100 });
  const evalCount = parseInteger('eval-count', values['eval-count'], 128, { min: 16, max: 10_000 });
  const evalSteps = parseInteger('eval-steps', values['eval-steps'], 50, { min: 1, max: 1000 });
  const nllImages = parseInteger('nll-images', values['nll-images'], 8, { min: 1, max: 10_000 });
  const candidates = candidatesOf(values['candidates']);
  const adopted = adoptedOf(values['adopt'], candidates);
  return { values, settings: { budget, evals, evalCount, evalSteps, nllImages, candidates, adopted } };
}

/** The candidates --candidates names (default: those run by default). */
function candidatesOf(flag: string | boolean | undefined): StudyCandidate[] {
  const names =
    typeof flag === 'string'
      ? flag.split(',').map((n) => n.trim())
      : STUDY_CANDIDATES.filter((c) => c.byDefault).map((c) => c.name);
  return names.map((n) => {
    const found = STUDY_CANDIDATES.find((c) => c.name === n);
    if (!found)
      throw new CliUsageError(
        `--candidates: unknown candidate ${JSON.stringify(n)} (known: ${STUDY_CANDIDATES.map((c) => c.name).join(', ')})`,
      );
    return found;
  });
}

/** --adopt's NAME=JOB pairs, each naming a candidate the study runs. */
function adoptedOf(flag: string | boolean | undefined, candidates: readonly StudyCandidate[]): Map<string, string> {
  const adopted = new Map<string, string>();
  for (const pair of typeof flag === 'string' ? flag.split(',') : []) {
    const [name, job] = pair.split('=').map((x) => x.trim());
    if (!name || !job || !candidates.some((c) => c.name === name))
      throw new CliUsageError(`--adopt takes NAME=JOB pairs of the candidates run, got ${JSON.stringify(pair)}`);
    adopted.set(name, job);
  }
  return adopted;
}

/** The study on its running service: the floor, the candidates' runs, their bounds, the best run's samples, the docs. */
async function runStudy(
  service: LocalService,
  settings: StudySettings,
  where: { readonly command: string; readonly docs: string; readonly out: string; readonly started: number },
  io: CliIo,
  env: StudyEnv,
): Promise<number> {
  const { client } = service;
  const { docs, out, started } = where;
  // The floor first: it also computes (and caches in the run's store) the reference statistics every evaluation then reads.
  const backend = await startTensors(process.env, 'wasm');
  const store = openStore(service.storeDir);
  const floor = await realDataDistance(
    'fashion-mnist',
    { extractor: 'fmnist_cnn', reference: { split: 'train' } },
    settings.evalCount,
    { size: 32, channels: 1 },
    { cache: store, onLog: (l) => io.stderr(`${l}\n`) },
  );
  io.stderr(`real-data floor (${backend.name}): ${floor.name} ${floor.value.toFixed(3)} for ${floor.images}\n`);

  const { results, failed } = await trainCandidates(client, settings, io, env);
  await measureBounds(client, results, settings.nllImages, io, env.signal);
  if (results.length === 0) {
    io.stderr('no candidate finished\n');
    return 1;
  }
  const reference = (
    results.find((r) => r.history.length > 0)?.history[0]?.pixels as { reference?: PixelStatistics } | undefined
  )?.reference;
  const best = [...results].sort((a, b) => finalFd(a) - finalFd(b))[0]!;
  const grids = await sampleBestRun(client, best, docs, io, env.signal);

  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${backend.name} backend, Node ${process.version}`;
  const { budget, evalCount, evalSteps, nllImages } = settings;
  await writeStudyDocs(
    docs,
    {
      command: where.command,
      machine,
      failed,
      budget,
      evalCount,
      evalSteps,
      nllImages,
      floor: floor.value,
      realPixels: floor.pixels,
      reference,
      results,
      best,
      grids,
    },
    started,
  );
  io.stdout(
    `${JSON.stringify({ docs, out, floor: floor.value, runs: results.map((r) => ({ name: r.candidate.name, job: r.job.id, nllJob: r.nllJob, steps: r.job.result?.step, fd: finalFd(r), bitsPerDim: r.bitsPerDim, ...r.history.at(-1)?.metrics })) })}\n`,
  );
  io.stderr(`\nwrote ${docs} in ${formatDuration((Date.now() - started) / 1000)}\n`);
  return 0;
}

/** Trains (or adopts) every candidate in turn; one whose train job does not complete is reported and left out. */
async function trainCandidates(
  client: ApiClient,
  settings: StudySettings,
  io: CliIo,
  env: StudyEnv,
): Promise<{ results: RunResult[]; failed: string[] }> {
  const { budget } = settings;
  const results: RunResult[] = [];
  const failed: string[] = [];
  for (const candidate of settings.candidates) {
    const { request, every } = candidateRequest(candidate, settings);
    const adopt = settings.adopted.get(candidate.name);
    io.stderr(
      `\n${candidate.name}: ${candidate.summary}; ${budgetText(budget)} of training, evaluated every ${every} steps${adopt ? ` (adopting ${adopt})` : ''}\n`,
    );
    const id = adopt ?? (await client.submit({ type: 'train', body: request })).id;
    const job = await waitForJob(client, id, io, env.tty, candidate.name, env.signal);
    if (job.state !== 'completed') {
      io.stderr(`${candidate.name}: the train job ended ${job.state}: ${job.error ?? ''}; left out\n`);
      failed.push(`${candidate.name} (${job.state}${job.error ? `: ${job.error}` : ''})`);
      continue;
    }
    const history = (await client.metrics(job.id)).entries;
    results.push({ candidate, job, history });
    io.stderr(
      `${candidate.name}: ${job.result?.step} steps; last evaluation ${JSON.stringify(history.at(-1)?.metrics)}\n`,
    );
  }
  return { results, failed };
}

/** A candidate's train job for the study's budget, evaluated (and checkpointed) `evals` times on the way. */
function candidateRequest(
  candidate: StudyCandidate,
  settings: StudySettings,
): { request: TrainRequest; every: number } {
  const { budget, evals, evalCount, evalSteps } = settings;
  const every = Math.max(
    1,
    Math.round(('steps' in budget ? budget.steps : (budget.minutes * 60) / candidate.secondsPerStep) / evals),
  );
  const request: TrainRequest = {
    dataset: 'fashion-mnist',
    ...candidate.request,
    ...('steps' in budget ? { steps: budget.steps } : { steps: 1_000_000, budgetMinutes: budget.minutes }),
    workers: 2,
    checkpointEvery: every,
    keepCheckpoints: 1000,
    evalEvery: every,
    evalMetrics: ['fd'],
    evalCount,
    evalSteps,
    evalSeed: 0,
  };
  return { request, every };
}

/** The bound of every final checkpoint, two eval jobs at a time (one worker each), noted in `results`. */
async function measureBounds(
  client: ApiClient,
  results: RunResult[],
  nllImages: number,
  io: CliIo,
  signal: AbortSignal | undefined,
): Promise<void> {
  io.stderr(`\nbits/dim of each final checkpoint on ${nllImages} test images (all T terms of the bound)\n`);
  const evalJobs = await Promise.all(
    results.map((r) => client.submit({ type: 'eval', body: { trainJobId: r.job.id, metrics: ['nll'], nllImages } })),
  );
  for (const [i, submitted] of evalJobs.entries()) {
    const done = await waitForJob(client, submitted.id, io, false, `nll ${results[i]!.candidate.name}`, signal);
    const bpd = done.result?.metrics?.['bits_per_dim'];
    results[i] = { ...results[i]!, nllJob: submitted.id, ...(typeof bpd === 'number' ? { bitsPerDim: bpd } : {}) };
  }
}

/** The best run at its start, middle and end: the same 16 noise draws from three checkpoints, written into `docs`. */
async function sampleBestRun(
  client: ApiClient,
  best: RunResult,
  docs: string,
  io: CliIo,
  signal: AbortSignal | undefined,
): Promise<SampleGrid[]> {
  const steps = best.history.map((e) => e.step);
  const picks = [...new Set([steps[0]!, steps[Math.floor((steps.length - 1) / 2)]!, steps.at(-1)!])];
  const grids: SampleGrid[] = [];
  for (const step of picks) {
    const submitted = await client.submit({
      type: 'sample',
      body: { trainJobId: best.job.id, step, count: 16, steps: 100, seed: 0, workers: 2 },
    });
    const done = await waitForJob(client, submitted.id, io, false, `samples at step ${step}`, signal);
    if (done.state !== 'completed')
      throw new Error(`the sample job at step ${step} ended ${done.state}: ${done.error ?? ''}`);
    const file = `best-step-${step}.png`;
    await fs.writeFile(path.join(docs, file), await client.sample(submitted.id));
    grids.push({ step, file, minutes: (best.history.find((e) => e.step === step)?.trainSeconds ?? 0) / 60 });
  }
  return grids;
}

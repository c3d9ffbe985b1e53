/**
 * `ddpm study quality` — the sample-quality study: on Fashion-MNIST, through the real service (the
 * API, two workers, every train job a data-parallel group of 2: both cores of a 2-core machine),
 * each candidate configuration trains for the same budget of training time (`budgetMinutes`),
 * evaluated on the way (the offline extractor's distance, pixel statistics against the reference),
 * then the test-set bound in bits/dim of each final checkpoint (eval jobs). Writes the curves (PNG),
 * the table (CSV and Markdown) and the best run's samples at its start, middle and end into --docs.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend } from '@ddpm/kernels';
import { FASHION_MNIST_DIR } from '@ddpm/data';
import { type ChartSeries, lineChartPng, realDataDistance } from '@ddpm/engine';
import { openStore } from '@ddpm/storage';

import { type JobView, type MetricsHistory, type TrainRequest } from '../api-client';
import { parseCommandArgs, parseInteger, parseNumber } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { startLocalService } from '../local-services';
import { formatDuration } from '../progress';
import { waitForJob } from './jobs';

/** A configuration the study trains; `secondsPerStep` (a group of 2 on a 2-core machine) only spaces its evaluations. */
export interface StudyCandidate {
  readonly name: string;
  /** In the default set (`npm run study:quality`); the others are run by naming them. */
  readonly byDefault: boolean;
  readonly summary: string;
  readonly request: Omit<TrainRequest, 'dataset' | 'steps'>;
  readonly secondsPerStep: number;
}

const EMA = { emaDecay: 0.995, emaWarmup: true } as const;

export const STUDY_CANDIDATES: readonly StudyCandidate[] = [
  {
    name: 'micro32-lr1e-3',
    byDefault: true,
    summary:
      'micro32 (1.1 M parameters), batch 16, lr 1e-3 after 20 warm-up steps, EMA 0.995 with warm-up (the fashion-mnist-cpu recipe)',
    request: { preset: 'micro32', batchSize: 16, learningRate: 1e-3, warmupSteps: 20, ...EMA },
    secondsPerStep: 0.95,
  },
  {
    name: 'micro32-b32',
    byDefault: true,
    summary: 'micro32, batch 32, lr 1e-3 after 20 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'micro32', batchSize: 32, learningRate: 1e-3, warmupSteps: 20, ...EMA },
    secondsPerStep: 1.8,
  },
  {
    name: 'micro32-lr3e-4',
    byDefault: true,
    summary: 'micro32, batch 16, lr 3e-4 after 100 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'micro32', batchSize: 16, learningRate: 3e-4, warmupSteps: 100, ...EMA },
    secondsPerStep: 0.95,
  },
  {
    name: 'micro32-ema0.99',
    byDefault: true,
    summary:
      'micro32, batch 16, lr 1e-3 after 20 warm-up steps, EMA 0.99 with warm-up (a shorter average of the weights)',
    request: { preset: 'micro32', batchSize: 16, learningRate: 1e-3, warmupSteps: 20, emaDecay: 0.99, emaWarmup: true },
    secondsPerStep: 0.95,
  },
  {
    name: 'fashion32',
    // Each 128-sample evaluation of this 6x larger network takes ~13 min on a 2-core machine, and its bound ~15 min.
    byDefault: false,
    summary:
      'fashion32 (6.5 M parameters, dropout 0.1), batch 16, lr 5e-4 after 50 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'fashion32', batchSize: 16, learningRate: 5e-4, warmupSteps: 50, ...EMA },
    secondsPerStep: 6,
  },
];

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

interface RunResult {
  readonly candidate: StudyCandidate;
  readonly job: JobView;
  readonly history: MetricsHistory['entries'];
  readonly bitsPerDim?: number;
  readonly nllJob?: string;
}

const round = (x: number | undefined, digits = 4): string =>
  x === undefined || !Number.isFinite(x) ? '' : String(Number(x.toPrecision(digits)));

export async function studyCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind !== 'quality')
    throw new CliUsageError(`expected "ddpm study quality", got ${JSON.stringify(['study', ...argv].join(' '))}`);
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
  const names =
    typeof values['candidates'] === 'string'
      ? values['candidates'].split(',').map((n) => n.trim())
      : STUDY_CANDIDATES.filter((c) => c.byDefault).map((c) => c.name);
  const candidates = names.map((n) => {
    const found = STUDY_CANDIDATES.find((c) => c.name === n);
    if (!found)
      throw new CliUsageError(
        `--candidates: unknown candidate ${JSON.stringify(n)} (known: ${STUDY_CANDIDATES.map((c) => c.name).join(', ')})`,
      );
    return found;
  });
  const adopted = new Map<string, string>();
  for (const pair of typeof values['adopt'] === 'string' ? values['adopt'].split(',') : []) {
    const [name, job] = pair.split('=').map((x) => x.trim());
    if (!name || !job || !candidates.some((c) => c.name === name))
      throw new CliUsageError(`--adopt takes NAME=JOB pairs of the candidates run, got ${JSON.stringify(pair)}`);
    adopted.set(name, job);
  }
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
    const { client } = service;
    // The floor first: it also computes (and caches in the run's store) the reference statistics every evaluation then reads.
    const backend = await initBackend({ preferred: 'wasm' });
    const store = openStore(service.storeDir);
    const floor = await realDataDistance(
      'fashion-mnist',
      { extractor: 'fmnist_cnn', reference: { split: 'train' } },
      evalCount,
      { size: 32, channels: 1 },
      { cache: store, onLog: (l) => io.stderr(`${l}\n`) },
    );
    io.stderr(`real-data floor (${backend.name}): ${floor.name} ${floor.value.toFixed(3)} for ${floor.images}\n`);

    const results: RunResult[] = [];
    const failed: string[] = [];
    for (const candidate of candidates) {
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
      const adopt = adopted.get(candidate.name);
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

    // The bound of every final checkpoint, two eval jobs at a time (one worker each).
    io.stderr(`\nbits/dim of each final checkpoint on ${nllImages} test images (all T terms of the bound)\n`);
    const evalJobs = await Promise.all(
      results.map((r) => client.submit({ type: 'eval', body: { trainJobId: r.job.id, metrics: ['nll'], nllImages } })),
    );
    for (const [i, submitted] of evalJobs.entries()) {
      const done = await waitForJob(client, submitted.id, io, false, `nll ${results[i]!.candidate.name}`, env.signal);
      const bpd = done.result?.metrics?.['bits_per_dim'];
      results[i] = { ...results[i]!, nllJob: submitted.id, ...(typeof bpd === 'number' ? { bitsPerDim: bpd } : {}) };
    }

    if (results.length === 0) {
      io.stderr('no candidate finished\n');
      return 1;
    }
    const reference = (
      results.find((r) => r.history.length > 0)?.history[0]?.pixels as
        { reference?: { mean: number; background: number; saturated: number } } | undefined
    )?.reference;
    const best = [...results].sort((a, b) => finalFd(a) - finalFd(b))[0]!;
    // The best run at its start, middle and end: the same 16 noise draws from three checkpoints.
    const steps = best.history.map((e) => e.step);
    const picks = [...new Set([steps[0]!, steps[Math.floor((steps.length - 1) / 2)]!, steps.at(-1)!])];
    const grids: { step: number; file: string; minutes: number }[] = [];
    for (const step of picks) {
      const submitted = await client.submit({
        type: 'sample',
        body: { trainJobId: best.job.id, step, count: 16, steps: 100, seed: 0, workers: 2 },
      });
      const done = await waitForJob(client, submitted.id, io, false, `samples at step ${step}`, env.signal);
      if (done.state !== 'completed')
        throw new Error(`the sample job at step ${step} ended ${done.state}: ${done.error ?? ''}`);
      const file = `best-step-${step}.png`;
      await fs.writeFile(path.join(docs, file), await client.sample(submitted.id));
      grids.push({ step, file, minutes: (best.history.find((e) => e.step === step)?.trainSeconds ?? 0) / 60 });
    }

    await writeCharts(docs, results, floor.value, reference, 'steps' in budget ? 'step' : 'minutes');
    await fs.writeFile(path.join(docs, 'results.csv'), resultsCsv(results, floor.value));
    const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${backend.name} backend, Node ${process.version}`;
    const command = `ddpm study quality ${rest.join(' ')}`.trim();
    await fs.writeFile(
      path.join(docs, 'README.md'),
      studyMarkdown({
        command,
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
        wallSeconds: (Date.now() - started) / 1000,
      }),
    );
    io.stdout(
      `${JSON.stringify({ docs, out, floor: floor.value, runs: results.map((r) => ({ name: r.candidate.name, job: r.job.id, nllJob: r.nllJob, steps: r.job.result?.step, fd: finalFd(r), bitsPerDim: r.bitsPerDim, ...r.history.at(-1)?.metrics })) })}\n`,
    );
    io.stderr(`\nwrote ${docs} in ${formatDuration((Date.now() - started) / 1000)}\n`);
    return 0;
  } finally {
    await service.stop();
  }
}

/** What each candidate trains for: minutes of training time (the default) or a number of steps. */
type StudyBudget = { readonly minutes: number } | { readonly steps: number };

function budgetText(budget: StudyBudget): string {
  return 'steps' in budget ? `${budget.steps} steps` : `${budget.minutes} min`;
}

function finalFd(r: RunResult): number {
  return r.history.at(-1)?.metrics['fd_fmnist_cnn'] ?? Number.POSITIVE_INFINITY;
}

async function writeCharts(
  docs: string,
  results: readonly RunResult[],
  floor: number,
  reference: { mean: number; background: number; saturated: number } | undefined,
  axis: 'minutes' | 'step',
): Promise<void> {
  const x = (e: MetricsHistory['entries'][number]): number =>
    axis === 'step' ? e.step : (e.trainSeconds ?? Number.NaN) / 60;
  const seriesOf = (metric: string): ChartSeries[] =>
    results.map((r) => ({
      name: r.candidate.name,
      points: r.history.map((e) => [x(e), e.metrics[metric] ?? Number.NaN] as const),
    }));
  const span = Math.max(...results.flatMap((r) => r.history.map(x)).filter(Number.isFinite), 1);
  const flat = (name: string, y: number): ChartSeries => ({
    name,
    points: [
      [0, y],
      [span, y],
    ],
  });
  const charts: { file: string; title: string; metric: string; yLabel: string; line?: ChartSeries }[] = [
    {
      file: 'fd.png',
      title: `fd_fmnist_cnn over training ${axis === 'step' ? 'steps' : 'time'}`,
      metric: 'fd_fmnist_cnn',
      yLabel: 'fd_fmnist_cnn',
      line: flat('real data (floor)', floor),
    },
    {
      file: 'pixel-mean.png',
      title: 'mean pixel of the samples',
      metric: 'pixel_mean',
      yLabel: 'mean on [0, 1]',
      ...(reference ? { line: flat('training set', reference.mean) } : {}),
    },
    {
      file: 'pixel-background.png',
      title: 'fraction of background (< 0.1) in the samples',
      metric: 'pixel_background',
      yLabel: 'fraction',
      ...(reference ? { line: flat('training set', reference.background) } : {}),
    },
    {
      file: 'pixel-saturated.png',
      title: 'fraction saturated (> 0.9) in the samples',
      metric: 'pixel_saturated',
      yLabel: 'fraction',
      ...(reference ? { line: flat('training set', reference.saturated) } : {}),
    },
  ];
  for (const c of charts) {
    const png = await lineChartPng({
      title: c.title,
      xLabel: axis === 'step' ? 'optimizer step' : 'training time (minutes, 2 workers)',
      yLabel: c.yLabel,
      series: [...seriesOf(c.metric), ...(c.line ? [c.line] : [])],
    });
    await fs.writeFile(path.join(docs, c.file), png);
  }
}

function resultsCsv(results: readonly RunResult[], floor: number): string {
  const header =
    'candidate,step,train_minutes,fd_fmnist_cnn,fd_over_floor,pixel_mean,pixel_background,pixel_saturated,bits_per_dim';
  const rows = results.flatMap((r) =>
    r.history.map((e, i) =>
      [
        r.candidate.name,
        e.step,
        round((e.trainSeconds ?? Number.NaN) / 60),
        round(e.metrics['fd_fmnist_cnn']),
        round((e.metrics['fd_fmnist_cnn'] ?? Number.NaN) / floor, 3),
        round(e.metrics['pixel_mean']),
        round(e.metrics['pixel_background']),
        round(e.metrics['pixel_saturated']),
        i === r.history.length - 1 ? round(r.bitsPerDim) : '',
      ].join(','),
    ),
  );
  return `${[header, ...rows].join('\n')}\n`;
}

function studyMarkdown(s: {
  command: string;
  failed: readonly string[];
  machine: string;
  budget: StudyBudget;
  evalCount: number;
  evalSteps: number;
  nllImages: number;
  floor: number;
  realPixels: { mean: number; background: number; saturated: number };
  reference: { mean: number; background: number; saturated: number } | undefined;
  results: readonly RunResult[];
  best: RunResult;
  grids: readonly { step: number; file: string; minutes: number }[];
  wallSeconds: number;
}): string {
  const rows = s.results.map((r) => {
    const last = r.history.at(-1);
    const m = last?.metrics ?? {};
    const images = (r.job.result?.step ?? 0) * (r.candidate.request.batchSize ?? 16);
    return `| ${r.candidate.name} | ${r.job.result?.step ?? ''} | ${images.toLocaleString('en-US')} | ${round(m['fd_fmnist_cnn'], 3)} | ${round((m['fd_fmnist_cnn'] ?? Number.NaN) / s.floor, 3)} | ${round(r.bitsPerDim, 3)} | ${round(m['pixel_mean'], 3)} | ${round(m['pixel_background'], 3)} | ${round(m['pixel_saturated'], 3)} |`;
  });
  const ref = s.reference;
  return `# Sample quality per CPU-minute on Fashion-MNIST

Generated by \`${s.command}\` (\`npm run study:quality\` runs it with the defaults) in ${formatDuration(s.wallSeconds)}.

- Date: ${new Date().toISOString().slice(0, 10)}.
- Machine: ${s.machine}. Every run is a train job of the real service, a data-parallel group of 2 workers (both cores).
- Budget: ${'steps' in s.budget ? `${s.budget.steps} optimizer steps per candidate (a step-matched comparison: the candidates cost the same per step)` : `${s.budget.minutes} minutes of training time per candidate (\`budgetMinutes\`: time in steps; evaluations and checkpoints are not counted)`}.
- Evaluations: ${s.evalCount} samples of the EMA weights, ancestral sampling in ${s.evalSteps} evenly strided steps (seed 0), through the offline \`fmnist_cnn\` extractor against the training set; pixel statistics on [0, 1] at the model's 32 × 32 (Fashion-MNIST's 28 × 28 padded with black, in the samples and the reference alike).
- Real-data floor: ${s.evalCount} real test images score fd_fmnist_cnn ${round(s.floor, 3)} against the same reference. FD is biased upward at small counts; compare the distances with this floor, not with zero.
- bits/dim: the full bound (all T = 1000 terms) on the first ${s.nllImages} test images, over the data's 28 × 28 dimensions, of each final checkpoint's EMA weights.
- Precision: every fd_fmnist_cnn is one evaluation of n = ${s.evalCount} samples. Compare differences with one evaluation's standard error, which \`node scripts/quality-errors.cjs\` measures on a model by evaluating it with several seeds (for the shipped model at n = 128: about 4 at fd_fmnist_cnn ≈ 30, larger at larger distances).
- Pixel statistics of real images (32 × 32): training set mean ${round(ref?.mean, 3)}, background ${round(ref?.background, 3)}, saturated ${round(ref?.saturated, 3)}; the ${s.evalCount} test images of the floor: mean ${round(s.realPixels.mean, 3)}, background ${round(s.realPixels.background, 3)}, saturated ${round(s.realPixels.saturated, 3)}.

## Candidates

${s.results.map((r) => `- \`${r.candidate.name}\`: ${r.candidate.summary}.`).join('\n')}
${s.failed.map((f) => `- not finished: ${f}`).join('\n')}

## At the end of the budget

| candidate | steps | images seen | fd_fmnist_cnn (n = ${s.evalCount}) | fd / floor | bits/dim (n = ${s.nllImages}) | pixel mean | background | saturated |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Every evaluation is in [results.csv](results.csv).

## Curves

![fd over training ${'steps' in s.budget ? 'steps' : 'time'}](fd.png)

![mean pixel](pixel-mean.png) ![background](pixel-background.png) ![saturated](pixel-saturated.png)

## The best run (\`${s.best.candidate.name}\`) at its start, middle and end

The same 16 noise draws (seed 0, 100 strided ancestral steps, EMA weights) from three of its checkpoints:

| ${s.grids.map((g) => `step ${g.step} (${round(g.minutes, 2)} min)`).join(' | ')} |
| ${s.grids.map(() => '---').join(' | ')} |
| ${s.grids.map((g) => `![step ${g.step}](${g.file})`).join(' | ')} |
`;
}

/**
 * What `ddpm study quality` writes into --docs (study.ts runs the study): the curves of every
 * candidate (PNG), every evaluation as results.csv, and README.md with the table at the end of the
 * budget and the best run's samples at its start, middle and end.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type ChartSeries, lineChartPng } from '@ddpm/engine';

import { type JobView, type MetricsHistory } from '@ddpm/api-client';
import { formatDuration } from '@ddpm/cli/toolkit';
import { type StudyCandidate } from './study-candidates';

/** A candidate's finished train job, its evaluations, and the bound of its final checkpoint. */
export interface RunResult {
  readonly candidate: StudyCandidate;
  readonly job: JobView;
  readonly history: MetricsHistory['entries'];
  readonly bitsPerDim?: number;
  readonly nllJob?: string;
}

/** Pixel statistics on [0, 1]: the mean, the fraction of background (< 0.1) and of saturated (> 0.9) pixels. */
export interface PixelStatistics {
  readonly mean: number;
  readonly background: number;
  readonly saturated: number;
}

/** A grid of the best run's samples: the checkpoint's step, the picture's file in --docs, the training time to it. */
export interface SampleGrid {
  readonly step: number;
  readonly file: string;
  readonly minutes: number;
}

const round = (x: number | undefined, digits = 4): string =>
  x === undefined || !Number.isFinite(x) ? '' : String(Number(x.toPrecision(digits)));

/** What each candidate trains for: minutes of training time (the default) or a number of steps. */
export type StudyBudget = { readonly minutes: number } | { readonly steps: number };

export function budgetText(budget: StudyBudget): string {
  return 'steps' in budget ? `${budget.steps} steps` : `${budget.minutes} min`;
}

export function finalFd(r: RunResult): number {
  return r.history.at(-1)?.metrics['fd_fmnist_cnn'] ?? Number.POSITIVE_INFINITY;
}

/** Writes the curves, results.csv and README.md into `docs`; README.md's wall time is the study's up to it. */
export async function writeStudyDocs(
  docs: string,
  summary: Omit<StudySummary, 'wallSeconds'>,
  started: number,
): Promise<void> {
  const { results, floor, reference, budget } = summary;
  await writeCharts(docs, results, floor, reference, 'steps' in budget ? 'step' : 'minutes');
  await fs.writeFile(path.join(docs, 'results.csv'), resultsCsv(results, floor));
  await fs.writeFile(
    path.join(docs, 'README.md'),
    studyMarkdown({ ...summary, wallSeconds: (Date.now() - started) / 1000 }),
  );
}

async function writeCharts(
  docs: string,
  results: readonly RunResult[],
  floor: number,
  reference: PixelStatistics | undefined,
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

/** What README.md says of the study. */
export interface StudySummary {
  command: string;
  failed: readonly string[];
  machine: string;
  budget: StudyBudget;
  evalCount: number;
  evalSteps: number;
  nllImages: number;
  floor: number;
  realPixels: PixelStatistics;
  reference: PixelStatistics | undefined;
  results: readonly RunResult[];
  best: RunResult;
  grids: readonly SampleGrid[];
  wallSeconds: number;
}

function studyMarkdown(s: StudySummary): string {
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

/**
 * Evaluation during training (`evalEvery`): at every multiple of `every` steps and at the last
 * step, the EMA weights are evaluated by the run's spec (model-evaluation.ts), the result
 * appended to the run's history and its curves redrawn. In a data-parallel group every rank
 * evaluates: with the link's `evaluationGather` each draws 1/N of the samples and all of them
 * measure the whole set (the bytes one process draws), so the ranks finish together and no rank
 * waits at the next exchange; only the writer records.
 */
import { type TrainingEvalConfig } from '@ddpm/settings';
import { type GaussianDiffusion } from '@ddpm/diffusion';
import { type EvalHistory, type EvalHistoryEntry, evalCurveKey, evalHistoryKey, readEvalHistory } from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';
import { type UNet } from '@ddpm/unet';

import { lineChartPng } from './charts';
import { type ExtractorCacheOptions } from './extractor-cache';
import { type ModelEvaluation, type SampleGather, evaluateModel } from './model-evaluation';

/** Whether the run evaluates after `step`; `last`: the run's last step (its length or its time budget). */
export function evaluatesAt(config: TrainingEvalConfig, step: number, last: boolean): boolean {
  return step > 0 && (step % config.every === 0 || last);
}

/** Adds an entry (replacing one at the same step) and redraws the curves; returns the history. */
export async function appendEvalHistory(
  store: ObjectStore,
  prefix: string,
  entry: EvalHistoryEntry,
): Promise<EvalHistory> {
  const before = await readEvalHistory(store, prefix);
  const entries = [...before.entries.filter((e) => e.step !== entry.step), entry].sort((a, b) => a.step - b.step);
  const history: EvalHistory = { version: 1, entries };
  await store.put(evalHistoryKey(prefix), new TextEncoder().encode(`${JSON.stringify(history, null, 2)}\n`), {
    contentType: 'application/json',
  });
  for (const name of [...new Set(entries.flatMap((e) => Object.keys(e.metrics)))]) {
    const points = entries.filter((e) => e.metrics[name] !== undefined).map((e) => [e.step, e.metrics[name]!] as const);
    const png = await lineChartPng({
      title: `${name} over training (EMA weights)`,
      xLabel: 'training step',
      yLabel: name,
      series: [{ name, points }],
    });
    await store.put(evalCurveKey(prefix, name), png, { contentType: 'image/png' });
  }
  return history;
}

/** One evaluation of the EMA weights at `step`, as a history entry. */
export async function evaluateDuringTraining(
  ema: UNet,
  diffusion: GaussianDiffusion,
  dataset: string,
  config: TrainingEvalConfig,
  step: number,
  options: ExtractorCacheOptions & { readonly gather?: SampleGather },
): Promise<{ entry: EvalHistoryEntry; evaluation: ModelEvaluation }> {
  const started = Date.now();
  const { every: _every, ...spec } = config;
  // A resumed run keeps its own T, which may be fewer steps than the request's sampler asked for.
  const sampler = { ...spec.samples.sampler, steps: Math.min(spec.samples.sampler.steps, diffusion.numTimesteps) };
  const evaluation = await evaluateModel(
    ema,
    diffusion,
    dataset,
    { ...spec, samples: { ...spec.samples, sampler } },
    { ...options, describeWeights: `EMA weights at step ${step}` },
  );
  const entry: EvalHistoryEntry = {
    step,
    time: new Date().toISOString(),
    seconds: (Date.now() - started) / 1000,
    metrics: evaluation.metrics,
    ...(evaluation.extractor
      ? { extractor: { name: evaluation.extractor.name, weightsSha256: evaluation.extractor.weightsSha256 } }
      : {}),
    ...(evaluation.samples ? { samples: evaluation.samples } : {}),
    ...(evaluation.reference ? { reference: evaluation.reference } : {}),
    ...(evaluation.pixels ? { pixels: evaluation.pixels } : {}),
  };
  return { entry, evaluation };
}

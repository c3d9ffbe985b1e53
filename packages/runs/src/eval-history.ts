/**
 * The metrics of a run over training: one entry per evaluation, kept next to the checkpoints as
 * `eval/history.json`, with a PNG curve per metric (`eval/<metric>.png`; training-evaluation.ts
 * writes both). The layout and the reader are tensor-free: the API serves them
 * (`@ddpm/runs`).
 */
import { type ObjectStore, joinKey } from '@ddpm/storage';

import { runError } from './errors';

export interface EvalHistoryEntry {
  readonly step: number;
  /** ISO time of the evaluation. */
  readonly time: string;
  readonly seconds: number;
  /** The run's training time (seconds in steps) when the evaluated weights were reached. */
  readonly trainSeconds?: number;
  /** Metric values by name (fd_fmnist_cnn, kid_fmnist_cnn, is_fmnist_cnn, bits_per_dim). */
  readonly metrics: Readonly<Record<string, number>>;
  /** What makes the values comparable (extractor weights, samples, reference). */
  readonly extractor?: { readonly name: string; readonly weightsSha256: string };
  readonly samples?: unknown;
  readonly reference?: unknown;
  /** Pixel statistics of the samples and of the reference images (eval-job.ts's `pixels`). */
  readonly pixels?: unknown;
}

export interface EvalHistory {
  readonly version: 1;
  readonly entries: readonly EvalHistoryEntry[];
}

/** Metric names become file names: letters, digits and underscores only. */
const METRIC_NAME = /^[a-z][a-z0-9_]{0,63}$/;

export function evalHistoryKey(prefix: string): string {
  return joinKey(prefix, 'eval', 'history.json');
}

export function evalCurveKey(prefix: string, metric: string): string {
  if (!METRIC_NAME.test(metric))
    throw runError('DDPM_CONFIG_INVALID', `${JSON.stringify(metric)} is not a metric name`);
  return joinKey(prefix, 'eval', `${metric}.png`);
}

/** The run's history (empty when it has none yet). */
export async function readEvalHistory(store: ObjectStore, prefix: string): Promise<EvalHistory> {
  const key = evalHistoryKey(prefix);
  if (!(await store.exists(key))) return { version: 1, entries: [] };
  const parsed = JSON.parse(new TextDecoder().decode(await store.get(key))) as EvalHistory;
  if (parsed.version !== 1 || !Array.isArray(parsed.entries))
    throw runError('DDPM_CHECKPOINT_INVALID', `${store.urlOf(key)} is not an evaluation history`);
  return parsed;
}

/**
 * An evaluation job: the metrics of one checkpoint (or of a shipped model), as a JSON report that
 * records everything a reader needs to know whether two numbers are comparable
 * (docs/evaluation.md). The model is measured by {@link evaluateModel} (model-evaluation.ts); the
 * job loads it, shares the sampling with the other ranks of its group, and writes Table 4's
 * rate-distortion CSV and plot beside the report.
 */
import { type EvalJobConfig } from '@ddpm/settings';
import { type ObjectStore } from '@ddpm/storage';
import { rateDistortionKeyBase } from '@ddpm/storage/layout';

import { lineChartPng } from './charts';
import { engineError } from './errors';
import { rateDistortionCsv } from './evaluation';
import { type ModelEvaluation, drawSampleShare, evaluateModel } from './model-evaluation';
import { type LoadedModel, loadModelFromCheckpoint } from './model-loading';
import { loadPretrainedModel } from './pretrained';
import { type SamplingGroupLink } from './sampling';

export interface EvalJobOptions {
  /** The run's checkpoints (and, unless `cache` is given, the artifacts too). */
  readonly store: ObjectStore;
  readonly cache?: ObjectStore;
  /** The run's checkpoint prefix in the store (not used for a shipped model). */
  readonly prefix?: string;
  readonly jobId: string;
  readonly backendName: string;
  readonly signal?: AbortSignal;
  readonly onLog?: (line: string) => void;
  readonly onProgress?: (phase: string, done: number, total: number) => void;
  /** Rank 0 of a sampling group: the other ranks draw their share of the samples. */
  readonly group?: SamplingGroupLink;
  /** Called often: a rank of a group shows it is alive while it works alone (reference statistics). */
  readonly onAlive?: () => void;
}

/** An eval job's report: what model it evaluated, where, and what the evaluation measured. */
export interface EvalReport extends ModelEvaluation {
  readonly job: string;
  /** The train job whose checkpoint was evaluated, or the shipped model (`pretrained`). */
  readonly trainJobId?: string;
  readonly pretrained?: string;
  readonly checkpoint: { readonly url: string; readonly step: number };
  readonly ema: boolean;
  readonly backend: string;
  readonly seconds: number;
}

/** The model an eval job names: a shipped one, or the run's checkpoint (at `step`, or the newest valid one). */
async function loadEvaluated(
  config: EvalJobConfig,
  options: Pick<EvalJobOptions, 'store' | 'prefix'>,
  step: number | undefined,
): Promise<LoadedModel> {
  if (config.pretrained !== undefined) return loadPretrainedModel(config.pretrained);
  if (options.prefix === undefined)
    throw engineError('DDPM_CONFIG_INVALID', 'an eval job of a train job needs the run’s prefix');
  return loadModelFromCheckpoint(options.store, options.prefix, {
    ema: config.samples.ema,
    ...(step !== undefined ? { step } : {}),
  });
}

/** An eval job: the checkpoint (or shipped model) it names, evaluated by {@link evaluateModel}. */
export async function runEvalJob(config: EvalJobConfig, options: EvalJobOptions): Promise<EvalReport> {
  const started = Date.now();
  if (options.group && options.group.rank !== 0)
    throw engineError('DDPM_CONFIG_INVALID', 'ranks other than 0 of a sampling group run runEvalShare');
  const loaded = await loadEvaluated(config, options, config.step);
  for (const s of loaded.skipped) options.onLog?.(`warning: ${s}`);
  try {
    await options.group?.announce(loaded.ref.step);
    const { trainJobId, pretrained, step: _step, group: _group, ...spec } = config;
    const evaluation = await evaluateModel(loaded.model, loaded.diffusion, loaded.config.dataset, spec, {
      ...options,
      cache: options.cache ?? options.store,
      describeWeights: `${loaded.ema ? 'EMA' : 'raw'} weights of step ${loaded.ref.step}`,
      ...(options.group ? { split: options.group } : {}),
    });
    // Table 4 beside the report: CSV and the curve (distortion against rate, as Fig. 5).
    let rateDistortion = evaluation.rateDistortion;
    if (rateDistortion) {
      const base = rateDistortionKeyBase(options.jobId);
      await options.store.put(`${base}.csv`, new TextEncoder().encode(rateDistortionCsv(rateDistortion.rows)), {
        contentType: 'text/csv',
      });
      const plot = await lineChartPng({
        title: `rate-distortion, step ${loaded.ref.step} (${rateDistortion.images} test images)`,
        xLabel: 'rate (bits/dim, data dimensions)',
        yLabel: 'distortion (RMSE, 0-255)',
        series: [
          {
            name: 'x_t, t = T ... 1',
            points: rateDistortion.rows.map((r) => [r.rateBitsPerDim, r.distortionRmse] as const),
          },
        ],
      });
      await options.store.put(`${base}.png`, plot, { contentType: 'image/png' });
      rateDistortion = {
        ...rateDistortion,
        csv: options.store.urlOf(`${base}.csv`),
        plot: options.store.urlOf(`${base}.png`),
      };
    }
    return {
      job: options.jobId,
      ...(trainJobId !== undefined ? { trainJobId } : {}),
      ...(pretrained !== undefined ? { pretrained } : {}),
      checkpoint: { url: loaded.ref.url, step: loaded.ref.step },
      ema: loaded.ema,
      backend: options.backendName,
      ...evaluation,
      ...(rateDistortion ? { rateDistortion } : {}),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    loaded.model.dispose();
  }
}

/**
 * A rank other than 0 of an eval job's sampling group: the checkpoint rank 0 announced, its share
 * of the samples drawn and handed over. Resolves to that step.
 */
export async function runEvalShare(
  config: EvalJobConfig,
  options: Pick<EvalJobOptions, 'store' | 'prefix' | 'signal' | 'onLog' | 'onProgress'> & {
    readonly group: SamplingGroupLink;
    readonly onAlive?: () => void;
  },
): Promise<number> {
  const step = await options.group.announced();
  const loaded = await loadEvaluated(config, options, step);
  try {
    options.onLog?.(
      `rank ${options.group.rank} of ${options.group.worldSize}: drawing its share of ${config.samples.count} samples from ${loaded.ref.url}`,
    );
    await drawSampleShare(loaded.model, loaded.diffusion, config.samples, options.group, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onAlive ? { onAlive: options.onAlive } : {}),
      onProgress: (done, total) => options.onProgress?.('sampling', done, total),
    });
    return step;
  } finally {
    loaded.model.dispose();
  }
}

/**
 * The three kinds of job a job process runs: train (alone or as a rank of a group), sample and
 * eval (alone or as a rank of a sampling group), each reporting its progress, log and result to
 * the worker through child-channel.ts.
 */
import { type TrainJobConfig, WASM_HEAP_BYTES, trainingStepBytes, validateTrainJobConfig } from '@ddpm/settings';
import { CodedError, type StopReason } from '@ddpm/core';
import {
  type StepStats,
  type Trainer,
  listCheckpoints,
  loadModelFromCheckpoint,
  loadPretrainedModel,
  renderSamples,
  runEvalJob,
  runEvalShare,
  runTrainJob,
  savePicture,
} from '@ddpm/engine';
import { type JobData, type JobProgress, type JobResult } from '@ddpm/service';
import { type ObjectStore, PatientStore } from '@ddpm/storage';
import { evalReportKey, progressGridName, runPrefixOf, sampleKeyBase } from '@ddpm/storage/layout';

import { controller, log, progressReporter, send, sendProgress } from './child-channel';
import { type RankSession, type SamplingSession } from './child-groups';

/**
 * The job's store, waiting out I/O outages (a read-only volume, an endpoint away) for up to
 * `patienceSeconds`: the job pauses at the write, says so in its log, and goes on.
 */
export function patientStore(store: ObjectStore, patienceSeconds: number): ObjectStore {
  return new PatientStore(store, {
    patienceSeconds,
    onWait: (w) => {
      // The first failure and then every fifth: a long outage should not flood the log.
      if (w.failures % 5 === 1)
        log(
          `the store failed to ${w.operation} ${w.key} (${w.error}); trying again for up to ${patienceSeconds} s (DDPM_STORAGE_PATIENCE_SECONDS)`,
        );
    },
    onRecovered: (r) =>
      log(
        `the store took the ${r.operation} of ${r.key} after ${r.failures} failures (${r.waitedSeconds.toFixed(1)} s)`,
      ),
  });
}

/** A budgeted run's training time against its budget (`budgetMinutes`), for the progress report. */
function budgetProgress(trainer: Trainer): { trainSeconds: number; budgetSeconds: number } | Record<string, never> {
  const minutes = trainer.config.budgetMinutes;
  return minutes === undefined
    ? {}
    : { trainSeconds: Math.round(trainer.trainingSeconds * 10) / 10, budgetSeconds: minutes * 60 };
}

/**
 * A train job's progress as its trainer reports it: the steps an earlier attempt did past its last
 * checkpoint (redone here), the slowest step (a group's stall limits follow it), the budget.
 */
class TrainProgress {
  /** The work an earlier attempt did past its last checkpoint, which this run does again. */
  private redo: { from: number; to: number; startedMs: number; seconds?: number } | undefined;
  private slowestStepMs = 0;
  private running: Trainer | undefined;
  private readonly report = progressReporter();

  constructor(
    private readonly config: TrainJobConfig,
    private readonly backend: string,
    private readonly group: RankSession | undefined,
    private readonly previousStep: number | undefined,
  ) {}

  onStart(trainer: Trainer): void {
    this.running = trainer;
    const previous = this.previousStep;
    if (trainer.resumedFrom !== undefined && previous !== undefined && previous > trainer.step) {
      this.redo = { from: trainer.step, to: previous, startedMs: performance.now() };
      log(
        `the last attempt reached step ${previous}: ${previous - trainer.step} steps since its last checkpoint are redone`,
      );
    }
    this.report({
      phase: 'training',
      step: trainer.step,
      totalSteps: trainer.config.steps,
      ...budgetProgress(trainer),
    });
  }

  onStep(s: StepStats): void {
    const { redo, group } = this;
    if (redo !== undefined && redo.seconds === undefined && s.step >= redo.to)
      redo.seconds = (performance.now() - redo.startedMs) / 1000;
    if (group) {
      // Alive and moving: a rank silent for much longer than its slowest step is wedged (a long
      // synchronous stretch stops its heartbeat) or hung (its peers stop waiting for it).
      this.slowestStepMs = Math.max(this.slowestStepMs, s.stepSeconds * 1000);
      group.heartbeat.progress();
      group.heartbeat.setAllowedStall(Math.max(group.rankTimeoutMs, 10 * this.slowestStepMs));
      group.setMaxWait(Math.max(group.rankTimeoutMs, 10 * this.slowestStepMs));
    }
    send({
      type: 'step',
      stats: s,
      backend: this.backend,
      ...(group?.lastExchange ? { exchange: group.lastExchange } : {}),
    });
    const total = this.config.train.steps;
    const budget = this.running ? budgetProgress(this.running) : {};
    const toSteps = ((total - s.step) * this.config.train.batchSize) / Math.max(s.imagesPerSecond, 1e-9);
    this.report({
      phase: 'training',
      step: s.step,
      totalSteps: total,
      imagesPerSecond: s.imagesPerSecond,
      loss: s.loss,
      etaSeconds:
        budget.budgetSeconds !== undefined
          ? Math.min(toSteps, Math.max(0, budget.budgetSeconds - budget.trainSeconds))
          : toSteps,
      ...budget,
    });
  }

  onProgress(progress: Omit<JobProgress, 'updatedAt'>): void {
    this.report(progress);
  }

  /** What the run redid of an earlier attempt's work, for the result (ending at `step`). */
  redone(step: number): { redone?: { steps: number; seconds: number } } {
    const redo = this.redo;
    if (redo === undefined) return {};
    const seconds = redo.seconds ?? (performance.now() - redo.startedMs) / 1000;
    return { redone: { steps: Math.min(step, redo.to) - redo.from, seconds: Math.round(seconds * 1000) / 1000 } };
  }
}

export async function runTrain(
  jobId: string,
  data: JobData<'train'>,
  store: ObjectStore,
  backend: string,
  group: RankSession | undefined,
  fence: (() => Promise<void>) | undefined,
  previousStep: number | undefined,
): Promise<{ result: JobResult; stopReason?: StopReason }> {
  const config = data.config;
  validateTrainJobConfig(config);
  checkBackendMemory(config, backend);
  const progress = new TrainProgress(config, backend, group, previousStep);
  const outcome = await runTrainJob(config, {
    store,
    prefix: data.runPrefix,
    backendName: backend,
    signal: controller.signal,
    ...(group
      ? { group: group.link, ...(group.resumeStep !== undefined ? { resumeStep: group.resumeStep } : {}) }
      : {}),
    ...(fence ? { fence } : {}),
    // The final grid, and those drawn during training (sampleEvery), which GET /jobs/:id/grids lists.
    gridKey: (step, final) => sampleKeyBase(final ? `${jobId}-final` : progressGridName(jobId, step)),
    gridMetadata: { job: jobId },
    onLog: log,
    onStart: (trainer) => progress.onStart(trainer),
    onStep: (s) => progress.onStep(s),
    // A checkpoint of a large model can take a while to write: the job says what it is doing.
    onCheckpointStart: (step) => sendProgress({ phase: 'checkpointing', step, totalSteps: config.train.steps }),
    onCheckpoint: (ref, reason, seconds) => send({ type: 'checkpoint', step: ref.step, url: ref.url, reason, seconds }),
    onSampling: (done, total) => progress.onProgress({ phase: 'sampling', step: done, totalSteps: total }),
    onEvaluationProgress: (phase, done, total) =>
      progress.onProgress({ phase: phase === 'sampling' ? 'sampling' : 'evaluating', step: done, totalSteps: total }),
    onEvaluation: (entry) =>
      send({
        type: 'evaluation',
        step: entry.step,
        metrics: entry.metrics,
        ...(entry.extractor ? { extractor: entry.extractor.name } : {}),
        seconds: entry.seconds,
      }),
    // Between steps a rank evaluating is alive: its heartbeat must not read the long stretch as a wedge.
    ...(group ? { onAlive: () => group.heartbeat.progress() } : {}),
  });
  return {
    result: {
      status: outcome.status === 'stopped' ? 'cancelled' : 'completed',
      step: outcome.step,
      ...(outcome.checkpoint ? { checkpoint: outcome.checkpoint.url } : {}),
      ...(outcome.status === 'completed' ? { samples: outcome.grid ? [`${jobId}-final`] : [] } : {}),
      ...(outcome.resumedFrom
        ? {
            resumedFrom: {
              step: outcome.resumedFrom.step,
              ignored: [...outcome.resumedFrom.ignored],
              ...progress.redone(outcome.step),
            },
          }
        : {}),
    },
    ...(outcome.stopReason !== undefined ? { stopReason: outcome.stopReason } : {}),
  };
}

/**
 * The server's budget (DDPM_MAX_STEP_MEMORY_MB) is set per deployment; the backend this process
 * got has a hard ceiling of its own: on wasm a step that cannot fit the 4 GiB heap fails now, for
 * good, with what to change, rather than crashing out of memory mid-step and being retried.
 */
function checkBackendMemory(config: TrainJobConfig, backend: string): void {
  if (backend !== 'wasm' && backend !== 'native') return;
  const micro = config.train.batchSize / config.train.accumulation;
  const bytes = trainingStepBytes(config.train, micro);
  if (bytes > WASM_HEAP_BYTES) {
    throw new CodedError(
      'DDPM_BACKEND_MEMORY',
      'invalid',
      `a training micro-batch of ${micro} images of ${config.train.model.preset} needs an estimated ${Math.ceil(bytes / 2 ** 20)} MiB, more than the wasm backend's 4 GiB heap; raise accumulation (or run on a tensorflow backend)`,
    );
  }
}

/** The train job whose run a sample job samples (when it names no shipped model). */
function trainJobOf(config: { readonly trainJobId?: string }): string {
  if (config.trainJobId === undefined)
    throw new CodedError(
      'DDPM_JOB_UNSUPPORTED',
      'invalid',
      'the sample job names neither a shipped model nor a train job (queued by an older API version?); submit it again',
    );
  return config.trainJobId;
}

export async function runSample(
  jobId: string,
  data: JobData<'sample'>,
  store: ObjectStore,
  group: SamplingSession | undefined,
): Promise<JobResult> {
  const config = data.config;
  const link = group?.link;
  // Every rank of a group samples the checkpoint rank 0 loaded.
  const step = link && link.rank > 0 ? await link.announced() : config.step;
  // A shipped model (its manifest's step), or the run's checkpoint.
  const loaded =
    config.pretrained !== undefined
      ? loadPretrainedModel(config.pretrained)
      : await loadModelFromCheckpoint(store, runPrefixOf(trainJobOf(config)), {
          ema: config.ema,
          ...(step !== undefined ? { step } : {}),
        });
  try {
    if (link?.rank === 0) await link.announce(loaded.ref.step);
    for (const s of loaded.skipped) log(`warning: ${s}`);
    const shared = link ? `, rank ${link.rank} of a sampling group of ${link.worldSize}` : '';
    log(
      `sampling ${config.count} (${config.kind}) from ${loaded.ref.url} (${loaded.ema ? 'EMA' : 'raw'} weights), sampler ${JSON.stringify(config.sampler)}, seed ${config.seed}${shared}`,
    );
    const report = progressReporter();
    const { picture, metadata } = await renderSamples(loaded.model, loaded.diffusion, config, {
      signal: controller.signal,
      ...(link ? { split: link } : {}),
      onProgress: (done, total) => {
        group?.heartbeat.progress();
        report({ phase: 'sampling', step: done, totalSteps: total });
      },
    });
    // Another rank's picture holds only its own batches: rank 0 writes the job's.
    if (link && link.rank > 0) return { status: 'completed', step: loaded.ref.step };
    await savePicture(store, sampleKeyBase(jobId), picture, {
      job: jobId,
      ...(config.trainJobId !== undefined ? { trainJobId: config.trainJobId } : {}),
      ...(config.pretrained !== undefined ? { pretrained: config.pretrained } : {}),
      checkpoint: loaded.ref.url,
      step: loaded.ref.step,
      ema: loaded.ema,
      ...metadata,
      ...(link ? { workers: link.worldSize } : {}),
    });
    return { status: 'completed', step: loaded.ref.step, samples: [jobId] };
  } finally {
    loaded.model.dispose();
  }
}

export async function runEval(
  jobId: string,
  data: JobData<'eval'>,
  store: ObjectStore,
  backend: string,
  group: SamplingSession | undefined,
): Promise<JobResult> {
  const report = progressReporter();
  const onProgress = (phase: string, done: number, total: number): void =>
    report({ phase: phase === 'sampling' ? 'sampling' : 'evaluating', step: done, totalSteps: total });
  if (group && group.link.rank > 0) {
    const step = await runEvalShare(data.config, {
      store,
      ...(data.config.trainJobId !== undefined ? { prefix: runPrefixOf(data.config.trainJobId) } : {}),
      group: group.link,
      signal: controller.signal,
      onLog: log,
      onProgress,
      onAlive: () => group.heartbeat.progress(),
    });
    return { status: 'completed', step };
  }
  const evaluation = await runEvalJob(data.config, {
    store,
    ...(data.config.trainJobId !== undefined ? { prefix: runPrefixOf(data.config.trainJobId) } : {}),
    jobId,
    backendName: backend,
    signal: controller.signal,
    onLog: log,
    // Sampling, or the rest (training the extractor, reference statistics, features).
    onProgress: (phase, done, total) => {
      group?.heartbeat.progress();
      onProgress(phase, done, total);
    },
    ...(group ? { group: group.link, onAlive: () => group.heartbeat.progress() } : {}),
  });
  send({
    type: 'evaluation',
    step: evaluation.checkpoint.step,
    metrics: evaluation.metrics,
    ...(evaluation.extractor ? { extractor: evaluation.extractor.name } : {}),
    seconds: evaluation.seconds,
  });
  const key = evalReportKey(jobId);
  await store.put(key, new TextEncoder().encode(`${JSON.stringify(evaluation, null, 2)}\n`), {
    contentType: 'application/json',
  });
  log(
    `metrics of step ${evaluation.checkpoint.step}: ${JSON.stringify(evaluation.metrics)} (${evaluation.seconds.toFixed(0)} s); report ${store.urlOf(key)}`,
  );
  return {
    status: 'completed',
    step: evaluation.checkpoint.step,
    metrics: evaluation.metrics,
    report: store.urlOf(key),
  };
}

/**
 * Where a job starts: a train job at its run's newest checkpoint (a resumed attempt goes on from
 * there, so its progress never seems to go back to 0), of its steps; others at 0 of 0 until they
 * know their work.
 */
export async function startingPoint(data: JobData, store: ObjectStore): Promise<{ step: number; totalSteps: number }> {
  if (data.type !== 'train') return { step: 0, totalSteps: 0 };
  const newest = await listCheckpoints(store, data.runPrefix).catch(() => []);
  return { step: newest[0]?.step ?? 0, totalSteps: data.config.train.steps };
}

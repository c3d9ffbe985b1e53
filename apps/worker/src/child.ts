/**
 * The child process that runs one job's tensor work, so the worker's event loop (BullMQ lock
 * renewal, heartbeats, cancellation) never waits for a training step. It talks to its parent over
 * IPC (child-protocol.ts), runs exactly the configuration the API resolved and queued, and exits
 * when the job ends.
 */
import { randomBytes } from 'node:crypto';

import {
  BatchRelay,
  type PlaneChoice,
  Heartbeat,
  RedisCollective,
  assertGenerationAlive,
  collectiveError,
  evaluationNamespace,
  generationEnded,
  sharedMemoryBytes,
} from '@ddpm/allreduce';
import { initBackend } from '@ddpm/kernels';
import {
  type SamplingGroupConfig,
  type TrainJobConfig,
  WASM_HEAP_BYTES,
  parameterCount,
  trainingStepBytes,
  validateTrainJobConfig,
} from '@ddpm/config';
import { CodedError, type StopReason, codedErrorOf, stopReasonOf } from '@ddpm/core';
import { configureDataAccess } from '@ddpm/data';
import {
  type GroupLink,
  type SamplingGroupLink,
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
import { type JobData, type JobProgress, type JobResult } from '@ddpm/jobs';
import { type ObjectStore, PatientStore, openStore } from '@ddpm/storage';
import { evalReportKey, progressGridName, runPrefixOf, sampleKeyBase } from '@ddpm/storage/layout';
import { Redis } from 'ioredis';

import { type ChildGroup, type ChildMessage, type ExchangeStats, type ParentMessage } from './child-protocol';
import { generationFence } from './group';

const controller = new AbortController();
/** Set once the result is sent: from then on a lost parent is no longer an error. */
let finished = false;

function send(message: ChildMessage): void {
  if (!process.connected) return;
  // With a callback, a write to a parent that just died reports here instead of crashing.
  process.send?.(message, undefined, {}, (err) => {
    if (err && !finished) process.exit(1);
  });
}

function log(line: string): void {
  send({ type: 'log', line: `${new Date().toISOString()} ${line}` });
}

/**
 * The job's store, waiting out I/O outages (a read-only volume, an endpoint away) for up to
 * `patienceSeconds`: the job pauses at the write, says so in its log, and goes on.
 */
function patientStore(store: ObjectStore, patienceSeconds: number): ObjectStore {
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

/** Progress at most twice a second, and always the last step of a phase. */
function sendProgress(progress: Omit<JobProgress, 'updatedAt'>): void {
  send({ type: 'progress', progress: { ...progress, updatedAt: new Date().toISOString() } });
}

/** Progress at most twice a second (and always the last step's). */
function progressReporter(): (progress: Omit<JobProgress, 'updatedAt'>) => void {
  let last = 0;
  return (progress) => {
    const now = Date.now();
    if (now - last < 500 && progress.step < progress.totalSteps) return;
    last = now;
    sendProgress(progress);
  };
}

/** A budgeted run's training time against its budget (`budgetMinutes`), for the progress report. */
function budgetProgress(trainer: Trainer): { trainSeconds: number; budgetSeconds: number } | Record<string, never> {
  const minutes = trainer.config.budgetMinutes;
  return minutes === undefined
    ? {}
    : { trainSeconds: Math.round(trainer.trainingSeconds * 10) / 10, budgetSeconds: minutes * 60 };
}

async function runTrain(
  jobId: string,
  data: JobData<'train'>,
  store: ObjectStore,
  backend: string,
  group: RankSession | undefined,
  fence: (() => Promise<void>) | undefined,
  previousStep: number | undefined,
): Promise<{ result: JobResult; stopReason?: StopReason }> {
  const config = data.config;
  /** The work an earlier attempt did past its last checkpoint, which this run does again. */
  let redo: { from: number; to: number; startedMs: number; seconds?: number } | undefined;
  validateTrainJobConfig(config);
  checkBackendMemory(config, backend);
  const report = progressReporter();
  let slowestStepMs = 0;
  let running: Trainer | undefined;
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
    onStart: (trainer) => {
      running = trainer;
      if (trainer.resumedFrom !== undefined && previousStep !== undefined && previousStep > trainer.step) {
        redo = { from: trainer.step, to: previousStep, startedMs: performance.now() };
        log(
          `the last attempt reached step ${previousStep}: ${previousStep - trainer.step} steps since its last checkpoint are redone`,
        );
      }
      report({ phase: 'training', step: trainer.step, totalSteps: trainer.config.steps, ...budgetProgress(trainer) });
    },
    onStep: (s) => {
      if (redo !== undefined && redo.seconds === undefined && s.step >= redo.to)
        redo.seconds = (performance.now() - redo.startedMs) / 1000;
      if (group) {
        // Alive and moving: a rank silent for much longer than its slowest step is wedged (a long
        // synchronous stretch stops its heartbeat) or hung (its peers stop waiting for it).
        slowestStepMs = Math.max(slowestStepMs, s.stepSeconds * 1000);
        group.heartbeat.progress();
        group.heartbeat.setAllowedStall(Math.max(group.rankTimeoutMs, 10 * slowestStepMs));
        group.setMaxWait(Math.max(group.rankTimeoutMs, 10 * slowestStepMs));
      }
      send({ type: 'step', stats: s, backend, ...(group?.lastExchange ? { exchange: group.lastExchange } : {}) });
      const total = config.train.steps;
      const budget = running ? budgetProgress(running) : {};
      const toSteps = ((total - s.step) * config.train.batchSize) / Math.max(s.imagesPerSecond, 1e-9);
      report({
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
    },
    // A checkpoint of a large model can take a while to write: the job says what it is doing.
    onCheckpointStart: (step) => sendProgress({ phase: 'checkpointing', step, totalSteps: config.train.steps }),
    onCheckpoint: (ref, reason, seconds) => send({ type: 'checkpoint', step: ref.step, url: ref.url, reason, seconds }),
    onSampling: (done, total) => report({ phase: 'sampling', step: done, totalSteps: total }),
    onEvaluationProgress: (phase, done, total) =>
      report({ phase: phase === 'sampling' ? 'sampling' : 'evaluating', step: done, totalSteps: total }),
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
              ...(redo !== undefined
                ? {
                    redone: {
                      steps: Math.min(outcome.step, redo.to) - redo.from,
                      seconds: Math.round((redo.seconds ?? (performance.now() - redo.startedMs) / 1000) * 1000) / 1000,
                    },
                  }
                : {}),
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
  if (backend !== 'wasm') return;
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

async function runSample(
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
      : await loadModelFromCheckpoint(store, runPrefixOf(config.trainJobId!), {
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

async function runEval(
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
async function startingPoint(data: JobData, store: ObjectStore): Promise<{ step: number; totalSteps: number }> {
  if (data.type !== 'train') return { step: 0, totalSteps: 0 };
  const newest = await listCheckpoints(store, data.runPrefix).catch(() => []);
  return { step: newest[0]?.step ?? 0, totalSteps: data.config.train.steps };
}

async function start(message: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  let sampling: SamplingSession | undefined;
  try {
    const data = message.data;
    if (typeof data.config !== 'object' || data.config === null) {
      throw new CodedError(
        'DDPM_JOB_UNSUPPORTED',
        'invalid',
        'the job carries no resolved configuration (queued by an older API version?); submit it again',
      );
    }
    const store = patientStore(openStore(message.storageUrl), message.storagePatienceSeconds);
    // Joining a group, loading the backend and opening the run take seconds before the first
    // step or sample: say so, rather than leave the job's progress empty.
    sendProgress({ phase: 'starting', ...(await startingPoint(data, store)) });
    // A rank beats from its first moment (peers wait for every heartbeat before the first step).
    const group = message.group && data.type === 'train' ? await joinGroup(message.group, data.config) : undefined;
    if (message.group && data.type !== 'train' && data.config.group === undefined) {
      throw new CodedError(
        'DDPM_JOB_UNSUPPORTED',
        'invalid',
        'a rank of a sampling group got a job without its group settings (queued by an older API version?); submit it again',
      );
    }
    sampling =
      message.group && data.type !== 'train' ? await joinSamplingGroup(message.group, data.config.group!) : undefined;
    const info = await initBackend(message.backend ? { preferred: message.backend } : {});
    // From here on this process reads data only inside the worker's data roots and caps.
    const { roots, maxFileBytes } = message.dataAccess;
    await configureDataAccess({
      roots,
      maxFileBytes,
      maxDecodedBytes: maxFileBytes,
      signal: controller.signal,
      readStoreObject: async (key, maxBytes) => {
        const info = (await store.list(key)).find((o) => o.key === key);
        if (info === undefined)
          throw new CodedError('DDPM_DATA_NOT_FOUND', 'not-found', `no object ${store.urlOf(key)}`);
        if (info.size > maxBytes)
          throw new CodedError(
            'DDPM_DATA_REFUSED',
            'invalid',
            `${store.urlOf(key)} is ${info.size} bytes, over the data file cap of ${maxBytes}`,
          );
        return store.get(key);
      },
    });
    let result: JobResult;
    let stopReason: StopReason | undefined;
    switch (data.type) {
      case 'train': {
        let finishedCleanly = false;
        // Alone, the run's writes are fenced like a group's rank 0: a run that lost its lock cannot
        // write. While Redis is away the check waits for it (the run pauses at its checkpoint)
        // rather than failing the job: the worker ends this process if the job's lock is lost.
        const control = message.fence
          ? new Redis(message.fence.controlRedisUrl, { maxRetriesPerRequest: null })
          : undefined;
        control?.on('error', () => undefined);
        try {
          const fence =
            message.fence && control ? generationFence(control, message.fence.key, message.fence.value) : undefined;
          ({ result, stopReason } = await runTrain(
            message.jobId,
            data,
            store,
            info.name,
            group,
            fence,
            message.previousStep,
          ));
          finishedCleanly = true;
        } finally {
          control?.disconnect();
          // A rank done with its work leaves; one that failed falls silent and its peers notice.
          await group?.close(finishedCleanly);
        }
        if (!group || group.link.rank === 0) {
          sendProgress({
            phase: 'finishing',
            step: result.step ?? data.config.train.steps,
            totalSteps: data.config.train.steps,
          });
        }
        break;
      }
      case 'sample':
        result = await runSample(message.jobId, data, store, sampling);
        break;
      case 'eval':
        result = await runEval(message.jobId, data, store, info.name, sampling);
        break;
      default: {
        const unreachable: never = data;
        throw new CodedError(
          'DDPM_JOB_UNSUPPORTED',
          'invalid',
          `unknown job type ${JSON.stringify((unreachable as { type: unknown }).type)}`,
        );
      }
    }
    await store.close();
    // A rank done with its share leaves; one that failed falls silent and its peers notice.
    await sampling?.close(true);
    send({ type: 'result', result, ...(stopReason !== undefined ? { stopReason } : {}) });
  } catch (err) {
    await sampling?.close(false).catch(() => undefined);
    const coded = codedErrorOf(err);
    if (coded?.code === 'DDPM_DATA_REFUSED' || coded?.code === 'DDPM_DATA_NOT_FOUND') {
      // Which paths exist or are refused on this worker is for its operator, not for the client.
      const ref = randomBytes(6).toString('hex');
      send({ type: 'server-log', message: 'dataset refused or missing', detail: coded.message, ref });
      send({
        type: 'error',
        error: new CodedError(
          'DDPM_DATA_UNAVAILABLE',
          'invalid',
          `the dataset is not available on this server: missing, outside its data roots, or over its size caps (operator reference ${ref})`,
        ).toJSON(),
      });
    } else if (coded?.kind === 'aborted' && message.group === undefined) {
      send({ type: 'result', result: { status: 'cancelled' } });
    } else if (sampling && controller.signal.aborted) {
      // Cancelled or shut down while sampling together: every rank was told; nothing to keep.
      send({ type: 'result', result: { status: 'cancelled' }, stopReason: stopReasonOf(controller.signal.reason) });
    } else {
      send({
        type: 'error',
        error: coded ? coded.toJSON() : { message: err instanceof Error ? err.message : String(err) },
      });
    }
  } finally {
    finished = true;
    process.disconnect?.();
  }
}

/** This process as one rank of a group generation: its heartbeat thread, its data-plane connections, its link. */
interface RankSession {
  readonly link: GroupLink;
  readonly heartbeat: Heartbeat;
  readonly rankTimeoutMs: number;
  readonly resumeStep?: number;
  /** The traffic of the latest exchange, for the step's metrics. */
  lastExchange?: ExchangeStats;
  /** How long a wait for peers may last (see RedisCollective.setMaxWait). */
  setMaxWait(ms: number): void;
  close(left: boolean): Promise<void>;
}

/**
 * What every rank of a generation has: its heartbeat (beating at once), a data-plane and a
 * control-plane connection, and the rendezvous behind it: every rank beats.
 */
async function joinGeneration(g: ChildGroup, rankTimeoutMs: number) {
  // Until the first step ends, allow the slow start of a large model (loading, compiling kernels).
  const heartbeat = new Heartbeat({
    redisUrl: g.dataRedisUrl,
    namespace: g.namespace,
    rank: g.rank,
    rankTimeoutMs,
    stallMs: Math.max(rankTimeoutMs, 600_000),
  });
  const dataOptions = { maxRetriesPerRequest: 2, connectTimeout: rankTimeoutMs };
  const redis = new Redis(g.dataRedisUrl, dataOptions);
  const control = new Redis(g.controlRedisUrl, { maxRetriesPerRequest: 2 });
  for (const c of [redis, control]) c.on('error', () => undefined);
  const keys = { namespace: g.namespace, worldSize: g.worldSize };
  const closeBase = async (left = false): Promise<void> => {
    await heartbeat.stop({ left });
    for (const c of [redis, control]) c.disconnect();
  };
  try {
    // A claimed worker that died in the last seconds (its slot still looked alive) never beats: give up soon.
    const deadline = Date.now() + Math.max(2 * rankTimeoutMs, 15_000);
    for (;;) {
      const ended = await generationEnded(redis, keys);
      if (ended === undefined) break;
      if (ended.cause !== 'heartbeat' || Date.now() > deadline)
        throw collectiveError(
          'DDPM_GROUP_LOST',
          `rank ${g.rank} could not join generation ${g.generation}: ${ended.message}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (err) {
    await closeBase();
    throw err;
  }
  return { heartbeat, redis, control, keys, dataOptions, closeBase };
}

/** Where a generation's values travel, for its log. */
function describePlane(choice: PlaneChoice): string {
  const why = choice.reasons.length > 0 ? ` (${choice.reasons.join('; ')})` : '';
  switch (choice.plane) {
    case 'shared-memory':
      return `through ${String(choice.where)}: every rank is on this host, Redis carries the signals`;
    case 'ranks':
      return `between the ranks' own data servers${why}`;
    case 'hub':
      return `through the group's data Redis${why}`;
    default: {
      const unreachable: never = choice.plane;
      return String(unreachable);
    }
  }
}

/**
 * Joins a generation: beats at once, connects to the data plane, waits until every rank beats
 * (the rendezvous), and builds the link the trainer exchanges through. Only rank 0 writes, and only
 * while the control plane still names this generation as the run's (the write fence).
 */
async function joinGroup(g: ChildGroup, config: TrainJobConfig): Promise<RankSession> {
  const rankTimeoutMs = config.group.rankTimeoutSeconds * 1000;
  const { heartbeat, redis, control, keys, dataOptions, closeBase } = await joinGeneration(g, rankTimeoutMs);
  const collective = new RedisCollective({
    redisUrl: g.dataRedisUrl,
    redisOptions: dataOptions,
    namespace: g.namespace,
    rank: g.rank,
    worldSize: g.worldSize,
    transport: config.group.transport,
    keyTtlSeconds: Math.ceil((2 * rankTimeoutMs) / 1000) + 60,
    checkAlive: () => assertGenerationAlive(redis, keys),
    onWait: () => heartbeat.progress(),
    // Until a step's time is known: the slow start of a large model (loading, compiling kernels).
    maxWaitMs: Math.max(rankTimeoutMs, 600_000),
    ...(g.sharedMemoryDir !== undefined ? { sharedMemoryDir: g.sharedMemoryDir } : {}),
    ...(g.ownDataUrl !== undefined ? { ownDataUrl: g.ownDataUrl } : {}),
  });
  const close = async (left = false): Promise<void> => {
    // A failed generation's gradients in shared memory have no reader left (Redis keys expire); a
    // rank done with its work leaves, and the last to leave deletes them (if that fails, the
    // files go with the day-old sweep of the next group on this host).
    if (!left) await collective.abandonSharedMemory();
    else await collective.leaveSharedMemory().catch(() => undefined);
    collective.close();
    await closeBase(left);
  };
  let choice: PlaneChoice;
  try {
    // Ranks on one host keep the gradients out of Redis (room for every rank's values of two
    // steps, and some); ranks on several hosts use their own data servers when they all have one.
    choice = await collective.negotiatePlane(
      sharedMemoryBytes(parameterCount(config.train), g.worldSize, config.group.transport) + 64 * 2 ** 20,
    );
    send({ type: 'plane', plane: choice.plane, reasons: choice.reasons });
    log(`rank ${g.rank}: generation ${g.generation}'s gradients travel ${describePlane(choice)}`);
  } catch (err) {
    await close();
    throw err;
  }
  let sumBuffer: Float32Array | undefined;
  const session: RankSession = {
    heartbeat,
    setMaxWait: (ms) => collective.setMaxWait(ms),
    rankTimeoutMs,
    ...(g.resumeStep !== undefined ? { resumeStep: g.resumeStep } : {}),
    link: {
      rank: g.rank,
      worldSize: g.worldSize,
      // The job's own world size blocks the sums, whatever this generation's (trainer.ts).
      blocks: config.group.workers,
      checksumEvery: config.group.checksumEvery,
      exchange: async (step, partial, report) => {
        const started = process.hrtime.bigint();
        // The sum lands in one buffer for every step; the trainer copies it into tensors at once.
        sumBuffer ??= new Float32Array(partial.length);
        const exchanged = await collective.exchange(step, partial, report, sumBuffer);
        session.lastExchange = {
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
          bytesSent: exchanged.bytesSent,
          bytesReceived: exchanged.bytesReceived,
        };
        heartbeat.progress();
        // Waits only look at liveness when nothing arrives; an aborted generation must stop even
        // while its data keeps flowing: one look a step.
        await assertGenerationAlive(redis, keys);
        return exchanged;
      },
      assertWriter: generationFence(control, g.generationKey, g.generation),
      evaluationGather: (step) => {
        // Its own keys (the evaluation after `step`), full precision whatever the gradients' transport:
        // the samples must arrive as drawn. A peer is waited for as long as it beats.
        const samples = new RedisCollective({
          redisUrl: g.dataRedisUrl,
          redisOptions: dataOptions,
          namespace: evaluationNamespace(g.namespace, step),
          rank: g.rank,
          worldSize: g.worldSize,
          transport: 'fp32',
          keyTtlSeconds: EVAL_GATHER_TTL_SECONDS,
          checkAlive: () => assertGenerationAlive(redis, keys),
          onWait: () => heartbeat.progress(),
        });
        // Between the ranks' own servers when the generation agreed on them (never shared memory:
        // an evaluation's chunks are read once, and files would outlive it).
        if (choice.plane === 'ranks') samples.useRankServers(choice.where as readonly string[]);
        return {
          rank: g.rank,
          worldSize: g.worldSize,
          sum: async (chunk, values) => {
            const { sum, bytesSent, bytesReceived } = await samples.allReduceSum(chunk, values);
            send({ type: 'relayed', bytes: bytesSent, direction: 'sent' });
            send({ type: 'relayed', bytes: bytesReceived, direction: 'received' });
            heartbeat.progress();
            return sum;
          },
          close: () => Promise.resolve(samples.close()),
        };
      },
    },
    close,
  };
  log(
    `rank ${g.rank} of ${g.worldSize} joined generation ${g.generation}${g.resumeStep !== undefined ? `, from the checkpoint of step ${g.resumeStep}` : ''}`,
  );
  return session;
}

/**
 * How long a rank's share of an evaluation's samples may wait on the data plane for a slower
 * peer (every rank draws the same share, so seconds, not hours; a failed generation leaves them there
 * this long at most).
 */
const EVAL_GATHER_TTL_SECONDS = 3600;

/** This process as one rank of a sampling group (a sample or eval job with workers > 1). */
interface SamplingSession {
  readonly link: SamplingGroupLink;
  readonly heartbeat: Heartbeat;
  close(left: boolean): Promise<void>;
}

/**
 * How long a drawn batch may wait on the data plane for rank 0, which may be busy for a long while
 * before it reads the first (reference statistics, an extractor to train). At most a window of
 * batches per rank waits there; the keys go with the generation's namespace.
 */
const RELAY_TTL_SECONDS = 6 * 3600;

/** Joins a sampling group's generation: the rendezvous, then the relay that brings batches to rank 0. */
async function joinSamplingGroup(g: ChildGroup, group: SamplingGroupConfig): Promise<SamplingSession> {
  const { heartbeat, redis, keys, dataOptions, closeBase } = await joinGeneration(g, group.rankTimeoutSeconds * 1000);
  // The batches go to rank 0's own data server when every rank has one and reaches the others'
  // (each batch then crosses the sender's link and rank 0's once), else through the hub.
  let relayUrl = g.dataRedisUrl;
  const common = {
    redisOptions: dataOptions,
    namespace: g.namespace,
    rank: g.rank,
    worldSize: g.worldSize,
    keyTtlSeconds: RELAY_TTL_SECONDS,
    checkAlive: () => assertGenerationAlive(redis, keys),
    onWait: () => heartbeat.progress(),
  };
  try {
    const negotiator = new RedisCollective({
      ...common,
      redisUrl: g.dataRedisUrl,
      ...(g.ownDataUrl !== undefined ? { ownDataUrl: g.ownDataUrl } : {}),
    });
    try {
      const servers = await negotiator.agreeOnRankServers();
      if (servers.endpoints !== undefined) relayUrl = servers.endpoints[0]!;
      send({
        type: 'plane',
        plane: servers.endpoints !== undefined ? 'ranks' : 'hub',
        reasons: servers.endpoints !== undefined ? [] : [servers.why],
      });
      log(
        `rank ${g.rank}: the samples travel to rank 0 ${servers.endpoints !== undefined ? 'through its own data server' : `through the group's data Redis (${servers.why})`}`,
      );
    } finally {
      negotiator.close();
    }
  } catch (err) {
    await closeBase();
    throw err;
  }
  const relay = new BatchRelay({ ...common, redisUrl: relayUrl, signal: controller.signal });
  log(`rank ${g.rank} of ${g.worldSize} joined generation ${g.generation} of a sampling group`);
  return {
    heartbeat,
    link: {
      rank: g.rank,
      worldSize: g.worldSize,
      send: async (index, values) => {
        send({ type: 'relayed', bytes: await relay.send(index, values), direction: 'sent' });
        heartbeat.progress();
      },
      receive: async (index) => {
        const values = await relay.receive(index);
        send({ type: 'relayed', bytes: values.byteLength, direction: 'received' });
        heartbeat.progress();
        return values;
      },
      announce: (step) => relay.announce(String(step)),
      announced: async () => Number(await relay.announced()),
    },
    close: async (left) => {
      // A rank leaving a failed or cancelled generation takes what it left on the data plane with it.
      await relay.close({ abandon: !left });
      await closeBase(left);
    },
  };
}

/** Loads the backend a job would get and says which; the worker is ready only once one loads. */
async function probe(message: Extract<ParentMessage, { type: 'probe' }>): Promise<void> {
  try {
    const info = await initBackend(message.backend ? { preferred: message.backend } : {});
    send({ type: 'probed', backend: info.name });
  } catch (err) {
    const coded = codedErrorOf(err);
    send({
      type: 'error',
      error: coded ? coded.toJSON() : { message: err instanceof Error ? err.message : String(err) },
    });
  } finally {
    finished = true;
    process.disconnect?.();
  }
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'start') void start(message);
  else if (message.type === 'probe') void probe(message);
  // The reason is checked as it arrives: `shutdown` exactly, or a cancel.
  else if (message.type === 'cancel') controller.abort(new Error(stopReasonOf(message.reason)));
});
// The worker's liveness: a beat whenever this event loop is free, once a second. A training step
// is synchronous and sends none while it runs; the worker judges that silence against the longest
// step it has seen (job-runner.ts), so a long step is never taken for a wedged process.
setInterval(() => send({ type: 'beat' }), 1000).unref();
// A Ctrl-C, or a stop signal sent to the whole process group (a terminal, systemd, a container's
// init), is for the worker: it asks this process to checkpoint and stop, and kills it past the
// grace period. Taken here, the signal would end the step without a checkpoint.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
// The parent going away (worker killed) means the job's lock will expire and another worker will
// resume it from the last checkpoint: stop at once rather than race it writing checkpoints.
process.on('disconnect', () => {
  if (!finished) process.exit(1);
  // Finished, and said so: whatever is still open (a reconnecting client, a thread pool) must not
  // keep this process alive after its job, with its parent or without it.
  setTimeout(() => process.exit(0), 5000).unref();
});

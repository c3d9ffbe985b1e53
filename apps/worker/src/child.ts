/**
 * The child process that runs one job's tensor work, so the worker's event loop (BullMQ lock
 * renewal, heartbeats, cancellation) never waits for a training step. It talks to its parent over
 * IPC (child-protocol.ts), runs exactly the configuration the API resolved and queued, and exits
 * when the job ends.
 */
import { initBackend } from '@ddpm/backend';
import { validateTrainJobConfig } from '@ddpm/config';
import { CodedError, codedErrorOf } from '@ddpm/core';
import { loadModelFromCheckpoint, renderSamples, runTrainJob, savePicture } from '@ddpm/engine';
import { type JobData, type JobProgress, type JobResult, runPrefixOf, sampleKeyBase } from '@ddpm/jobs';
import { type ObjectStore, openStore } from '@ddpm/storage';

import { type ChildMessage, type ParentMessage } from './child-protocol';

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

/** Progress at most twice a second, and always the last step of a phase. */
function progressReporter(): (progress: Omit<JobProgress, 'updatedAt'>) => void {
  let last = 0;
  return (progress) => {
    const now = Date.now();
    if (now - last < 500 && progress.step < progress.totalSteps) return;
    last = now;
    send({ type: 'progress', progress: { ...progress, updatedAt: new Date().toISOString() } });
  };
}

async function runTrain(jobId: string, data: JobData<'train'>, store: ObjectStore, backend: string): Promise<JobResult> {
  const config = data.config;
  validateTrainJobConfig(config);
  const report = progressReporter();
  const outcome = await runTrainJob(config, {
    store,
    prefix: data.runPrefix,
    backendName: backend,
    signal: controller.signal,
    gridKey: () => sampleKeyBase(`${jobId}-final`),
    gridMetadata: { job: jobId },
    onLog: log,
    onStart: (trainer) => report({ phase: 'training', step: trainer.step, totalSteps: trainer.config.steps }),
    onStep: (s) => {
      send({ type: 'step', stats: s, backend });
      const total = config.train.steps;
      report({
        phase: 'training',
        step: s.step,
        totalSteps: total,
        imagesPerSecond: s.imagesPerSecond,
        loss: s.loss,
        etaSeconds: ((total - s.step) * config.train.batchSize) / Math.max(s.imagesPerSecond, 1e-9),
      });
    },
    onCheckpoint: (ref, reason, seconds) => send({ type: 'checkpoint', step: ref.step, url: ref.url, reason, seconds }),
    onSampling: (done, total) => report({ phase: 'sampling', step: done, totalSteps: total }),
  });
  return {
    status: outcome.status === 'stopped' ? 'cancelled' : 'completed',
    step: outcome.step,
    ...(outcome.checkpoint ? { checkpoint: outcome.checkpoint.url } : {}),
    ...(outcome.status === 'completed' ? { samples: outcome.grid ? [`${jobId}-final`] : [] } : {}),
    ...(outcome.resumedFrom ? { resumedFrom: { step: outcome.resumedFrom.step, ignored: [...outcome.resumedFrom.ignored] } } : {}),
  };
}

async function runSample(jobId: string, data: JobData<'sample'>, store: ObjectStore): Promise<JobResult> {
  const config = data.config;
  const loaded = await loadModelFromCheckpoint(store, runPrefixOf(config.trainJobId), {
    ema: config.ema,
    ...(config.step !== undefined ? { step: config.step } : {}),
  });
  try {
    for (const s of loaded.skipped) log(`warning: ${s}`);
    log(`sampling ${config.count} (${config.kind}) from ${loaded.ref.url} (${loaded.ema ? 'EMA' : 'raw'} weights), sampler ${JSON.stringify(config.sampler)}, seed ${config.seed}`);
    const report = progressReporter();
    const { picture, metadata } = await renderSamples(loaded.model, loaded.diffusion, config, {
      signal: controller.signal,
      onProgress: (done, total) => report({ phase: 'sampling', step: done, totalSteps: total }),
    });
    await savePicture(store, sampleKeyBase(jobId), picture, {
      job: jobId,
      trainJobId: config.trainJobId,
      checkpoint: loaded.ref.url,
      step: loaded.ref.step,
      ema: loaded.ema,
      ...metadata,
    });
    return { status: 'completed', step: loaded.ref.step, samples: [jobId] };
  } finally {
    loaded.model.dispose();
  }
}

async function start(message: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  try {
    const data = message.data;
    if (typeof data.config !== 'object' || data.config === null) {
      throw new CodedError('DDPM_JOB_UNSUPPORTED', 'invalid', 'the job carries no resolved configuration (queued by an older API version?); submit it again');
    }
    const info = await initBackend(message.backend ? { preferred: message.backend } : {});
    const store = openStore(message.storageUrl);
    let result: JobResult;
    switch (data.type) {
      case 'train':
        result = await runTrain(message.jobId, data, store, info.name);
        send({ type: 'progress', progress: { phase: 'finishing', step: result.step ?? data.config.train.steps, totalSteps: data.config.train.steps, updatedAt: new Date().toISOString() } });
        break;
      case 'sample':
        result = await runSample(message.jobId, data, store);
        break;
      case 'eval':
        throw new CodedError('DDPM_JOB_UNSUPPORTED', 'invalid', 'evaluation jobs are not processed by this worker version yet');
      default: {
        const unreachable: never = data;
        throw new CodedError('DDPM_JOB_UNSUPPORTED', 'invalid', `unknown job type ${JSON.stringify((unreachable as { type: unknown }).type)}`);
      }
    }
    await store.close();
    send({ type: 'result', result });
  } catch (err) {
    const coded = codedErrorOf(err);
    if (coded?.kind === 'aborted') {
      send({ type: 'result', result: { status: 'cancelled' } });
    } else {
      send({ type: 'error', error: coded ? coded.toJSON() : { message: err instanceof Error ? err.message : String(err) } });
    }
  } finally {
    finished = true;
    process.disconnect?.();
  }
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'start') void start(message);
  else if (message.type === 'cancel') controller.abort(new Error(message.reason));
});
// The parent going away (worker killed) means the job's lock will expire and another worker will
// resume it from the last checkpoint: stop at once rather than race it writing checkpoints.
process.on('disconnect', () => {
  if (!finished) process.exit(1);
});

/**
 * The child process that runs one job's tensor work, so the worker's event loop (BullMQ lock
 * renewal, heartbeats, cancellation) never waits for a training step. It talks to its parent over
 * IPC (child-protocol.ts) and exits when the job ends.
 */
import { initBackend } from '@ddpm/backend';
import { CodedError, codedErrorOf } from '@ddpm/core';
import {
  type SamplerSpec,
  Trainer,
  type TrainConfigInput,
  encodePng,
  loadModelFromCheckpoint,
  progressiveStrip,
  sampleGrid,
} from '@ddpm/engine';
import { type JobData, type JobResult, type SampleJobRequest, type TrainJobRequest, runPrefixOf, sampleKey, trainConfigOf } from '@ddpm/jobs';
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

async function putPicture(store: ObjectStore, sampleId: string, png: Uint8Array, metadata: Record<string, unknown>): Promise<void> {
  await store.put(sampleKey(sampleId, 'png'), png, { contentType: 'image/png' });
  await store.put(sampleKey(sampleId, 'json'), new TextEncoder().encode(JSON.stringify({ id: sampleId, ...metadata, createdAt: new Date().toISOString() }, null, 2)), {
    contentType: 'application/json',
  });
}

async function runTrain(jobId: string, data: JobData<'train'>, store: ObjectStore, backend: string): Promise<JobResult> {
  const request: TrainJobRequest = data.request;
  const trainer = await Trainer.open(trainConfigOf(request) as unknown as TrainConfigInput, {
    store,
    prefix: data.runPrefix,
    backendName: backend,
    onWarning: (w) => log(`warning: ${w}`),
  });
  try {
    log(
      `${trainer.resumedFrom ? `resuming from step ${trainer.resumedFrom.step}` : 'starting'}: ${request.preset} ` +
        `(${trainer.unet.numParams} parameters) on ${trainer.dataset.name}, ${trainer.config.steps} steps of batch ${trainer.config.batchSize}, backend ${backend}`,
    );
    const total = trainer.config.steps;
    send({ type: 'progress', progress: { phase: 'training', step: trainer.step, totalSteps: total, updatedAt: new Date().toISOString() } });
    let lastProgress = 0;
    let checkpointStarted = Date.now();
    const result = await trainer.run({
      signal: controller.signal,
      onStep: (s) => {
        send({ type: 'step', stats: s, backend });
        const now = Date.now();
        if (now - lastProgress > 500 || s.step === total) {
          lastProgress = now;
          send({
            type: 'progress',
            progress: {
              phase: 'training',
              step: s.step,
              totalSteps: total,
              imagesPerSecond: s.imagesPerSecond,
              loss: s.loss,
              etaSeconds: ((total - s.step) * trainer.config.batchSize) / Math.max(s.imagesPerSecond, 1e-9),
              updatedAt: new Date().toISOString(),
            },
          });
        }
        checkpointStarted = Date.now();
      },
      onCheckpoint: (ref, reason) => {
        send({ type: 'checkpoint', step: ref.step, url: ref.url, reason, seconds: (Date.now() - checkpointStarted) / 1000 });
        log(`checkpoint (${reason}) at step ${ref.step}: ${ref.url}`);
      },
    });
    if (result.status === 'stopped') {
      log(`cancelled at step ${result.step}`);
      return { status: 'cancelled', step: result.step, ...(result.checkpoint ? { checkpoint: result.checkpoint.url } : {}) };
    }
    const samples: string[] = [];
    if ((request.sampleCount ?? 0) > 0) {
      send({ type: 'progress', progress: { phase: 'sampling', step: result.step, totalSteps: total, updatedAt: new Date().toISOString() } });
      const sampler: SamplerSpec = request.sampleSteps ? { kind: 'ancestral', steps: request.sampleSteps } : { kind: 'ancestral' };
      const { picture, seed } = await sampleGrid(trainer.ema, trainer.diffusion, request.sampleCount!, { seed: 0, sampler, signal: controller.signal });
      const sampleId = `${jobId}-final`;
      await putPicture(store, sampleId, await encodePng(picture, picture.width < 256 ? 2 : 1), {
        job: jobId,
        step: result.step,
        seed,
        sampler,
        count: request.sampleCount,
        ema: true,
      });
      samples.push(sampleId);
      log(`sample grid ${sampleId}: ${store.urlOf(sampleKey(sampleId, 'png'))}`);
    }
    return { status: 'completed', step: result.step, ...(result.checkpoint ? { checkpoint: result.checkpoint.url } : {}), samples };
  } finally {
    trainer.dispose();
  }
}

async function runSample(jobId: string, data: JobData<'sample'>, store: ObjectStore): Promise<JobResult> {
  const request: SampleJobRequest = data.request;
  const loaded = await loadModelFromCheckpoint(store, runPrefixOf(request.trainJobId), {
    ema: request.ema ?? true,
    ...(request.step !== undefined ? { step: request.step } : {}),
  });
  try {
    for (const s of loaded.skipped) log(`warning: ${s}`);
    const T = loaded.diffusion.numTimesteps;
    const steps = request.steps === undefined ? undefined : Math.min(request.steps, T);
    const sampler: SamplerSpec =
      request.sampler === 'ddim' ? { kind: 'ddim', steps: steps ?? 50, eta: request.eta ?? 0 } : steps ? { kind: 'ancestral', steps } : { kind: 'ancestral' };
    const seed = request.seed ?? 0;
    const total = sampler.kind === 'ddim' || sampler.steps ? (sampler.steps ?? T) : T;
    let last = 0;
    const onProgress = (done: number, all: number): void => {
      const now = Date.now();
      if (now - last < 500 && done < all) return;
      last = now;
      send({ type: 'progress', progress: { phase: 'sampling', step: done, totalSteps: all, updatedAt: new Date().toISOString() } });
    };
    log(`sampling ${request.count} (${request.kind ?? 'grid'}) from ${loaded.ref.url} (${loaded.ema ? 'EMA' : 'raw'} weights), sampler ${JSON.stringify(sampler)}`);
    const picture =
      request.kind === 'progressive'
        ? (
            await progressiveStrip(loaded.model, loaded.diffusion, request.count, request.every ?? Math.max(1, Math.floor(total / 10)), {
              sampler,
              seed,
              signal: controller.signal,
              onProgress,
            })
          ).picture
        : (await sampleGrid(loaded.model, loaded.diffusion, request.count, { sampler, seed, signal: controller.signal, onProgress })).picture;
    await putPicture(store, jobId, await encodePng(picture, picture.width < 256 ? 2 : 1), {
      job: jobId,
      kind: request.kind ?? 'grid',
      trainJobId: request.trainJobId,
      checkpoint: loaded.ref.url,
      step: loaded.ref.step,
      seed,
      sampler,
      count: request.count,
      ema: loaded.ema,
    });
    return { status: 'completed', step: loaded.ref.step, samples: [jobId] };
  } finally {
    loaded.model.dispose();
  }
}

async function start(message: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  try {
    const info = await initBackend(message.backend ? { preferred: message.backend } : {});
    const store = openStore(message.storageUrl);
    let result: JobResult;
    switch (message.data.type) {
      case 'train':
        result = await runTrain(message.jobId, message.data as JobData<'train'>, store, info.name);
        break;
      case 'sample':
        result = await runSample(message.jobId, message.data as JobData<'sample'>, store);
        break;
      case 'eval':
        throw new CodedError('DDPM_JOB_UNSUPPORTED', 'invalid', 'evaluation jobs are not processed by this worker version yet');
      default:
        throw new CodedError('DDPM_JOB_UNSUPPORTED', 'invalid', `unknown job type ${JSON.stringify((message.data as { type: unknown }).type)}`);
    }
    await store.close();
    if (message.data.type === 'train') {
      const total = (message.data.request as TrainJobRequest).steps;
      send({ type: 'progress', progress: { phase: 'finishing', step: result.step ?? total, totalSteps: total, updatedAt: new Date().toISOString() } });
    }
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

/**
 * The child process that runs one job's tensor work, so the worker's event loop (BullMQ lock
 * renewal, heartbeats, cancellation) never waits for a training step. It talks to its parent over
 * IPC (child-protocol.ts, child-channel.ts), runs exactly the configuration the API resolved and
 * queued (child-jobs.ts), as one rank of a group where the job has several (child-groups.ts), and
 * exits when the job ends.
 */
import { randomBytes } from 'node:crypto';

import { initBackend } from '@ddpm/kernels';
import { CodedError, type StopReason, codedErrorOf, stopReasonOf } from '@ddpm/core';
import { configureDataAccess } from '@ddpm/data';
import { type JobData, type JobResult } from '@ddpm/service';
import { type ObjectStore, openStore } from '@ddpm/storage';
import { Redis } from 'ioredis';

import { controller, isFinished, markFinished, send, sendProgress } from './child-channel';
import { type RankSession, type SamplingSession, joinGroup, joinSamplingGroup } from './child-groups';
import { patientStore, runEval, runSample, runTrain, startingPoint } from './child-jobs';
import { type ParentMessage } from './child-protocol';
import { generationFence } from './group';

type StartMessage = Extract<ParentMessage, { type: 'start' }>;

/** What a job runs with once it has started: its store, its group (if any) and its backend. */
interface Started {
  readonly data: JobData;
  readonly store: ObjectStore;
  readonly group: RankSession | undefined;
  readonly backend: string;
}

/**
 * Everything before the work: the store, the first progress, the group (a rank beats from its
 * first moment: peers wait for every heartbeat before the first step), the backend, and the data
 * this process may read. `joined` is called with a sampling group's session as soon as it exists.
 */
async function open(message: StartMessage, joined: (session: SamplingSession) => void): Promise<Started> {
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
  const group = message.group && data.type === 'train' ? await joinGroup(message.group, data.config) : undefined;
  if (message.group && data.type !== 'train') {
    if (data.config.group === undefined)
      throw new CodedError(
        'DDPM_JOB_UNSUPPORTED',
        'invalid',
        'a rank of a sampling group got a job without its group settings (queued by an older API version?); submit it again',
      );
    joined(await joinSamplingGroup(message.group, data.config.group));
  }
  const info = await initBackend(message.tensors);
  await limitDataAccess(message, store);
  return { data, store, group, backend: info.name };
}

/** From here on this process reads data only inside the worker's data roots and caps. */
async function limitDataAccess(message: StartMessage, store: ObjectStore): Promise<void> {
  const { roots, maxFileBytes } = message.dataAccess;
  await configureDataAccess({
    roots,
    maxFileBytes,
    maxDecodedBytes: maxFileBytes,
    signal: controller.signal,
    readStoreObject: async (key, maxBytes) => {
      const info = (await store.list(key)).find((o) => o.key === key);
      if (info === undefined) throw new CodedError('DDPM_DATA_NOT_FOUND', 'not-found', `no object ${store.urlOf(key)}`);
      if (info.size > maxBytes)
        throw new CodedError(
          'DDPM_DATA_REFUSED',
          'invalid',
          `${store.urlOf(key)} is ${info.size} bytes, over the data file cap of ${maxBytes}`,
        );
      return store.get(key);
    },
  });
}

/**
 * A train job, alone or as a rank. Alone, the run's writes are fenced like a group's rank 0: a run
 * that lost its lock cannot write. While Redis is away the check waits for it (the run pauses at
 * its checkpoint) rather than failing the job: the worker ends this process if the job's lock is lost.
 */
async function train(
  message: StartMessage,
  started: Started & { data: JobData<'train'> },
): Promise<{ result: JobResult; stopReason?: StopReason }> {
  const { data, store, group, backend } = started;
  let finishedCleanly = false;
  const control = message.fence ? new Redis(message.fence.controlRedisUrl, { maxRetriesPerRequest: null }) : undefined;
  control?.on('error', () => undefined);
  let outcome: { result: JobResult; stopReason?: StopReason };
  try {
    const fence =
      message.fence && control ? generationFence(control, message.fence.key, message.fence.value) : undefined;
    outcome = await runTrain(message.jobId, data, store, backend, group, fence, message.previousStep);
    finishedCleanly = true;
  } finally {
    control?.disconnect();
    // A rank done with its work leaves; one that failed falls silent and its peers notice.
    await group?.close(finishedCleanly);
  }
  if (!group || group.link.rank === 0) {
    const total = data.config.train.steps;
    sendProgress({ phase: 'finishing', step: outcome.result.step ?? total, totalSteps: total });
  }
  return outcome;
}

/** The job's work by its kind. */
async function work(
  message: StartMessage,
  started: Started,
  sampling: SamplingSession | undefined,
): Promise<{ result: JobResult; stopReason?: StopReason }> {
  const { data, store, backend } = started;
  switch (data.type) {
    case 'train':
      return train(message, { ...started, data });
    case 'sample':
      return { result: await runSample(message.jobId, data, store, sampling) };
    case 'eval':
      return { result: await runEval(message.jobId, data, store, backend, sampling) };
    default: {
      const unreachable: never = data;
      throw new CodedError(
        'DDPM_JOB_UNSUPPORTED',
        'invalid',
        `unknown job type ${JSON.stringify((unreachable as { type: unknown }).type)}`,
      );
    }
  }
}

/** Tells the worker how the job failed, in words fit for the job's client. */
function reportFailure(err: unknown, message: StartMessage, sampling: SamplingSession | undefined): void {
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
}

async function start(message: StartMessage): Promise<void> {
  let sampling: SamplingSession | undefined;
  try {
    const started = await open(message, (session) => (sampling = session));
    const { result, stopReason } = await work(message, started, sampling);
    await started.store.close();
    // A rank done with its share leaves; one that failed falls silent and its peers notice.
    await sampling?.close(true);
    send({ type: 'result', result, ...(stopReason !== undefined ? { stopReason } : {}) });
  } catch (err) {
    await sampling?.close(false).catch(() => undefined);
    reportFailure(err, message, sampling);
  } finally {
    markFinished();
    process.disconnect?.();
  }
}

/** Loads the backend a job would get and says which; the worker is ready only once one loads. */
async function probe(message: Extract<ParentMessage, { type: 'probe' }>): Promise<void> {
  try {
    const info = await initBackend(message.tensors);
    send({ type: 'probed', backend: info.name });
  } catch (err) {
    const coded = codedErrorOf(err);
    send({
      type: 'error',
      error: coded ? coded.toJSON() : { message: err instanceof Error ? err.message : String(err) },
    });
  } finally {
    markFinished();
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
  if (!isFinished()) process.exit(1);
  // Finished, and said so: whatever is still open (a reconnecting client, a thread pool) must not
  // keep this process alive after its job, with its parent or without it.
  setTimeout(() => process.exit(0), 5000).unref();
});

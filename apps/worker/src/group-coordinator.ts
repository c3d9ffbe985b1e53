/**
 * A group job on the worker that took it from the queue: it claims the ranks all at once (slot.ts),
 * forms generation after generation with itself as rank 0, and ends when one completes or stops,
 * or when more than `maxRestarts` have failed. And any worker's rank of a generation: its job
 * process, watched with the generation (group.ts).
 */
import { type PlaneName, removeSharedMemoryFiles } from '@ddpm/allreduce';
import { hasCode } from '@ddpm/core';
import { type GroupGeneration, type JobData, type JobResult, generationNamespace } from '@ddpm/service';
import { listCheckpoints } from '@ddpm/runs';
import { DelayedError, type Job, UnrecoverableError } from 'bullmq';

import {
  type GroupAssignment,
  childGroupOf,
  endGeneration,
  groupOf,
  parseGroupAssignment,
  peerShutDown,
  rankFailure,
  rankShutdown,
  startGeneration,
  watchGeneration,
} from './group';
import { type ChildOutcome, type ChildRun, isPermanent, runInChild } from './job-runner';
import { type WorkerContext, handBack, jobIdOf, sleep, trainingStepOf } from './worker-context';

/** One coordination: the job, and how its generations have gone so far. */
interface Coordination {
  readonly job: Job<JobData, JobResult>;
  readonly data: JobData;
  readonly token: string | undefined;
  readonly group: ReturnType<typeof groupOf>;
  readonly jobId: string;
  readonly failures: string[];
  restarts: number;
  /** The generations this coordinator formed, and how each ended (the last one: finished the job). */
  readonly generations: GroupGeneration[];
  /** The training step the job reached last (its steps past a checkpoint are redone). */
  reached: number | undefined;
  log(line: string): void;
}

/**
 * A group job: claim the ranks all at once, run generation after generation (rank 0 here)
 * until the job completes, stops or fails more than maxRestarts times.
 */
export async function coordinateGroup(
  ctx: WorkerContext,
  job: Job<JobData, JobResult>,
  data: JobData,
  token: string | undefined,
): Promise<JobResult> {
  const c: Coordination = {
    job,
    data,
    token,
    group: groupOf(data),
    jobId: jobIdOf(job),
    failures: [],
    restarts: 0,
    generations: [],
    reached: trainingStepOf(data, job.progress),
    log: (line) => void job.log(`${new Date().toISOString()} ${line}`).catch(() => undefined),
  };
  for (let formation = 0; ; formation++) {
    // (The first time, process() put the slot in `waiting`; after a failed generation it is `busy`.)
    if (formation > 0 && !(await ctx.connections.slot.enter('waiting', { job: c.jobId, priority: job.timestamp }))) {
      return handBack(
        job,
        token,
        1000,
        'this worker was claimed by an older group job while re-forming; handed back to the queue',
      );
    }
    const formed = await formGroup(ctx, c);
    if ('result' in formed) return formed.result;
    const result = await runGeneration(ctx, c, formed.claimed);
    if (result !== undefined) return result;
  }
}

/**
 * Forms a group: everything at once or nothing (slot.ts); prefers all `workers` for a while, then
 * accepts `minWorkers`. The slots claimed, or the job's result (cancelled); handed back when an
 * older job preempts this worker, when the worker shuts down, or when no group forms in time.
 */
async function formGroup(
  ctx: WorkerContext,
  c: Coordination,
): Promise<{ claimed: readonly string[] } | { result: JobResult }> {
  const { job, token, group, jobId } = c;
  const slot = ctx.connections.slot;
  const formedBy = Date.now() + group.joinTimeoutSeconds * 1000;
  const settleAt = Date.now() + Math.min((group.joinTimeoutSeconds * 1000) / 2, 60_000);
  for (;;) {
    if (await ctx.cancelRequested(jobId)) {
      c.log('cancelled while forming its group');
      return { result: { status: 'cancelled' } };
    }
    if (ctx.closing)
      return handBack(job, token, 0, 'worker shutting down while forming a group; handed back to the queue');
    const atLeast = (Date.now() < settleAt ? group.workers : group.minWorkers) - 1;
    const claim = await slot.claim(jobId, job.timestamp, group.workers - 1, atLeast);
    if (claim.outcome === 'ok') return { claimed: claim.slots };
    if (claim.outcome === 'preempted') {
      // An older job took this worker: it goes first; this job waits in the queue.
      return handBack(
        job,
        token,
        1000,
        `an older group job (${claim.by}) claimed this worker; handed back to the queue`,
      );
    }
    if (Date.now() > formedBy) {
      const live = await slot.liveSlots();
      if (live < group.minWorkers) {
        throw new UnrecoverableError(
          `the job needs at least ${group.minWorkers} workers at once and ${live} are running`,
        );
      }
      return handBack(
        job,
        token,
        5000 + Math.floor(Math.random() * 5000),
        `no group of ${group.minWorkers}-${group.workers} could form in ${group.joinTimeoutSeconds} s (${claim.claimable} of ${claim.live} workers free); back to the queue, nobody holds a worker meanwhile`,
      );
    }
    await sleep(300 + Math.floor(Math.random() * 400));
  }
}

/**
 * A new generation of the claimed slots with this worker as rank 0: its number fences writers,
 * its marker says it lives. The job's result when the generation finishes it; undefined when it
 * failed and the group re-forms.
 */
async function runGeneration(
  ctx: WorkerContext,
  c: Coordination,
  claimed: readonly string[],
): Promise<JobResult | undefined> {
  const { job, data, group, jobId } = c;
  const { slot, data: dataPlane, store } = ctx.connections;
  const generation = await ctx.nextWriter(jobId);
  const worldSize = claimed.length + 1;
  const namespace = generationNamespace(ctx.config.queuePrefix, jobId, generation);
  await startGeneration(dataPlane, namespace, group.rankTimeoutSeconds);
  // A train job resumes from its last checkpoint; a sampling group starts its sampling again.
  const resumeStep = data.type === 'train' ? (await listCheckpoints(store, data.runPrefix))[0]?.step : undefined;
  const base = {
    jobId,
    data,
    worldSize,
    generation,
    namespace,
    coordinator: slot.id,
    ...(resumeStep !== undefined ? { resumeStep } : {}),
  };
  await Promise.all(claimed.map((id, i) => slot.assign(id, { ...base, rank: i + 1 } satisfies GroupAssignment)));
  ctx.metrics.worldSize.set({ queue: job.queueName }, worldSize);
  c.log(
    `generation ${generation}: ${worldSize} ranks (this worker is rank 0)${resumeStep !== undefined ? `, from the checkpoint of step ${resumeStep}` : ''}`,
  );
  const formed: GroupGeneration = {
    generation,
    worldSize,
    ...(resumeStep !== undefined ? { fromStep: resumeStep } : {}),
  };
  c.generations.push(formed);
  try {
    return await runAsRankZero(ctx, c, { ...base, rank: 0 });
  } catch (err) {
    if (err instanceof DelayedError) throw err;
    await generationFailed(ctx, c, err, formed, namespace);
    return undefined;
  }
}

/** This worker's rank 0 of a generation, to the job's result (a shutdown hands the job back). */
async function runAsRankZero(ctx: WorkerContext, c: Coordination, assignment: GroupAssignment): Promise<JobResult> {
  const { job, data, token, jobId } = c;
  const { worldSize, generation } = assignment;
  let plane: PlaneName | undefined;
  const { result, stopReason } = await runRank(ctx, assignment, true, {
    // How far the last generation (or an earlier coordinator) got: the steps past the
    // checkpoint this one starts from are redone.
    ...(c.reached !== undefined ? { previousStep: c.reached } : {}),
    onProgress: (p) => {
      c.reached = trainingStepOf(data, p) ?? c.reached;
      void job.updateProgress({ ...p, group: { worldSize, generation, restarts: c.restarts } }).catch(() => undefined);
    },
    onLog: (line) => void job.log(line).catch(() => undefined),
    onPlane: (agreed) => (plane = agreed),
  });
  if (result.status === 'cancelled' && stopReason === 'shutdown' && !(await ctx.cancelRequested(jobId))) {
    // A rank's worker is shutting down: the group stopped after a common step and checkpointed.
    await handBack(
      job,
      token,
      0,
      `a worker of the group is shutting down; stopped at step ${result.step ?? '?'} and handed back to the queue`,
    );
  }
  const restarts = c.restarts;
  return {
    ...result,
    group: {
      worldSize,
      generation,
      restarts,
      ...(plane !== undefined ? { dataPlane: plane } : {}),
      generations: c.generations,
    },
  };
}

/**
 * A generation that failed: ended for every rank, its files removed; the job fails for good on a
 * permanent error or past maxRestarts, and otherwise the group re-forms (a peer's shutdown is not
 * counted as a restart).
 */
async function generationFailed(
  ctx: WorkerContext,
  c: Coordination,
  err: unknown,
  formed: GroupGeneration,
  namespace: string,
): Promise<void> {
  const { job, data, group } = c;
  const { generation, worldSize } = formed;
  const message = err instanceof Error ? err.message : String(err);
  await endGeneration(ctx.connections.data, namespace, rankFailure(0, message), group.rankTimeoutSeconds);
  await removeGenerationFiles(ctx, namespace);
  if (isPermanent(err) && !hasCode(err, 'DDPM_GROUP_FENCED')) throw new UnrecoverableError(message);
  const again = data.type === 'train' ? ' from the last checkpoint' : ', sampling again';
  const shutDown = await peerShutDown(ctx.connections.data, namespace, worldSize);
  if (shutDown !== undefined) {
    c.generations[c.generations.length - 1] = { ...formed, ended: shutDown, restart: false };
    c.log(`generation ${generation} ended: ${shutDown}; re-forming without it${again} (not counted as a restart)`);
    return;
  }
  c.restarts += 1;
  c.generations[c.generations.length - 1] = { ...formed, ended: message, restart: true };
  c.failures.push(`generation ${generation}: ${message}`);
  ctx.metrics.groupRestarts.inc({ queue: job.queueName });
  if (c.restarts > group.maxRestarts)
    throw new UnrecoverableError(
      `the group failed ${c.restarts} times (maxRestarts ${group.maxRestarts}): ${c.failures.join('; ')}`,
    );
  c.log(`generation ${generation} ended: ${message}; restart ${c.restarts} of ${group.maxRestarts}${again}`);
}

/** A failed generation's gradients left in this host's shared-memory folder (a killed job process cannot delete them). */
async function removeGenerationFiles(ctx: WorkerContext, namespace: string): Promise<void> {
  const dir = ctx.config.sharedMemoryDir;
  if (dir !== undefined) await removeSharedMemoryFiles(dir, namespace);
}

/** Runs this worker's rank of a generation, watching the generation while it runs. */
export async function runRank(
  ctx: WorkerContext,
  a: GroupAssignment,
  coordinator: boolean,
  report: Pick<ChildRun, 'onProgress' | 'onLog' | 'onPlane' | 'previousStep'> = {},
): Promise<ChildOutcome> {
  const { config, logger } = ctx;
  const data = ctx.connections.data;
  const rankTimeoutSeconds = groupOf(a.data).rankTimeoutSeconds;
  const urls = {
    data: config.dataRedisUrl,
    control: config.redisUrl,
    ...(config.sharedMemoryDir !== undefined ? { sharedMemoryDir: config.sharedMemoryDir } : {}),
    ...(config.rankDataUrl !== undefined ? { ownData: config.rankDataUrl } : {}),
  };
  const running = runInChild(
    { jobId: a.jobId, data: a.data, queue: a.data.type, group: childGroupOf(a, urls, config.queuePrefix), ...report },
    ctx.childOptions(),
  );
  ctx.running.set(a.jobId, running);
  const stopWatching = watchGeneration({
    data,
    namespace: a.namespace,
    worldSize: a.worldSize,
    rankTimeoutSeconds,
    coordinator,
    running,
    onEnded: (why) =>
      logger.warn(
        { jobId: a.jobId, rank: a.rank, generation: a.generation, why },
        'generation over and the rank does not stop: killing it',
      ),
  });
  try {
    if (await ctx.cancelRequested(a.jobId)) running.cancel('cancel');
    if (ctx.closing) running.cancel('shutdown');
    const outcome = await running.done;
    // A sampling rank stopped by its worker's shutdown: its peers cannot finish without its share.
    // Say so at once (rather than at their heartbeat timeout), and that it is no failure: the
    // coordinator re-forms without counting a restart. (A train group stops together and is handed back.)
    if (!coordinator && a.data.type !== 'train' && outcome.stopReason === 'shutdown')
      await endGeneration(data, a.namespace, rankShutdown(a.rank), rankTimeoutSeconds);
    return outcome;
  } catch (err) {
    // This rank cannot go on: end the generation for everyone now rather than at their timeouts.
    const message = err instanceof Error ? err.message : String(err);
    await endGeneration(data, a.namespace, rankFailure(a.rank, message), rankTimeoutSeconds);
    await removeGenerationFiles(ctx, a.namespace);
    throw err;
  } finally {
    stopWatching();
    ctx.running.delete(a.jobId);
  }
}

/** Assignments from coordinators: run them as a rank, one at a time, between jobs. */
export async function serveInbox(ctx: WorkerContext): Promise<void> {
  const { logger } = ctx;
  const { slot, data } = ctx.connections;
  while (!ctx.closing) {
    let raw: string | undefined;
    try {
      raw = await slot.nextAssignment(1);
    } catch (err) {
      if (ctx.closing) return;
      logger.warn({ err: (err as Error).message }, 'could not read the slot inbox');
      await sleep(1000);
      continue;
    }
    if (raw === undefined) continue;
    const assignment = parseGroupAssignment(raw);
    if ('problem' in assignment) {
      // Not from a coordinator of this version (or damaged): nothing to run; its coordinator, if
      // any, sees no heartbeat from this rank and re-forms its group.
      logger.error({ problem: assignment.problem, raw: raw.slice(0, 200) }, 'an unreadable group assignment: skipped');
      continue;
    }
    // The coordinating path of this worker may still be handing its own job back.
    for (let waited = 0; ctx.busy && waited < 30_000; waited += 100) await sleep(100);
    if (ctx.busy || ctx.closing) {
      await endGeneration(
        data,
        assignment.namespace,
        {
          kind: 'failure',
          rank: assignment.rank,
          message: `rank ${assignment.rank}'s worker was not free`,
        },
        groupOf(assignment.data).rankTimeoutSeconds,
      );
      continue;
    }
    await ctx.occupy('rank');
    await slot.setState('busy', { job: assignment.jobId });
    logger.info(
      {
        jobId: assignment.jobId,
        rank: assignment.rank,
        worldSize: assignment.worldSize,
        generation: assignment.generation,
      },
      'serving as a rank',
    );
    try {
      const { result } = await runRank(ctx, assignment, false);
      logger.info(
        { jobId: assignment.jobId, rank: assignment.rank, status: result.status, step: result.step },
        'rank finished',
      );
    } catch (err) {
      logger.warn({ jobId: assignment.jobId, rank: assignment.rank, err: (err as Error).message }, 'rank failed');
    } finally {
      await ctx.release();
    }
  }
}

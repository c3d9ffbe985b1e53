/** Listing jobs: newest first across the queues, by type, state and run, a page at a time. */
import { JOB_TYPES, type JobData, type JobResult, type JobType } from '@ddpm/service';
import { type Job, type JobType as BullState, type Queue } from 'bullmq';

import { type JobView, type PublicState } from './job-view';
import { invalid } from './job-resolution';

/** The deepest a listing may page (offset + limit), so one request reads a bounded number of jobs. */
export const MAX_LIST_DEPTH = 1000;

/** The states a client may list by (`cancelling` jobs are listed as `active`). */
export const LIST_STATE_NAMES = [
  'queued',
  'delayed',
  'active',
  'completed',
  'cancelled',
  'failed',
] as const satisfies readonly PublicState[];
export type ListState = (typeof LIST_STATE_NAMES)[number];

/** BullMQ states behind each of them. */
const LIST_STATES: Readonly<Record<ListState, readonly BullState[]>> = {
  queued: ['waiting', 'prioritized', 'waiting-children'],
  delayed: ['delayed'],
  active: ['active'],
  completed: ['completed'],
  cancelled: ['completed'],
  failed: ['failed'],
};

/**
 * Jobs, newest first, by type and state; with `run`, only the sample and eval jobs of that train
 * job (among the newest MAX_LIST_DEPTH of each type and state). `show` is how a job is shown.
 */
export async function listJobs(
  queues: Readonly<Record<JobType, Queue<JobData, JobResult>>>,
  query: { type?: JobType; state?: ListState; run?: string; limit: number; offset: number },
  show: (job: Job<JobData, JobResult>) => Promise<JobView>,
): Promise<JobView[]> {
  const { limit, offset } = query;
  if (offset + limit > MAX_LIST_DEPTH)
    throw invalid(
      `offset + limit must be at most ${MAX_LIST_DEPTH}, got ${offset + limit}; filter by type or state to reach older jobs`,
    );
  const types = (query.type ? [query.type] : [...JOB_TYPES]).filter((t) => query.run === undefined || t !== 'train');
  const states: BullState[] = query.state
    ? [...LIST_STATES[query.state]]
    : ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'];
  const depth = query.run === undefined ? offset + limit : MAX_LIST_DEPTH;
  let jobs = (await Promise.all(types.map((t) => queues[t].getJobs(states, 0, depth - 1, false)))).flat();
  if (query.run !== undefined)
    jobs = jobs.filter((j) => j.data.type !== 'train' && j.data.request.trainJobId === query.run);
  jobs.sort((a, b) => b.timestamp - a.timestamp);
  let views = await Promise.all(jobs.slice(0, offset + limit).map((j) => show(j)));
  if (query.state)
    views = views.filter((v) => v.state === query.state || (query.state === 'active' && v.state === 'cancelling'));
  return views.slice(offset, offset + limit);
}

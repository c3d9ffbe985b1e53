/**
 * Following a job's log as it grows: lines are written to the reader as they come, at the pace
 * the reader reads, and found again when the per-job cap drops the oldest ones.
 */
import { type Writable } from 'node:stream';

import { type JobData, type JobResult, type JobType } from '@ddpm/service';
import { type Job, type Queue } from 'bullmq';

/** Log lines one `GET /jobs/:id/logs` returns at most. */
export const MAX_LOG_PAGE = 5000;

/** The queues the logs are in, the lines kept per job, and how long one may follow. */
export interface FollowOptions {
  readonly queues: Readonly<Record<JobType, Queue<JobData, JobResult>>>;
  readonly jobLogLines: number;
  readonly logFollowSeconds: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `out` drains or closes, or when `stop()` says so (checked twice a second). */
function drained(out: Writable, stop: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearInterval(poll);
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    const poll = setInterval(() => {
      if (stop()) done();
    }, 500);
    out.once('drain', done);
    out.once('close', done);
  });
}

/**
 * Writes a job's log lines to `out` as they come, until the job ends, `closed()` says stop, or
 * the follow time limit passes; waits for `out` to drain, so a reader that does not read holds
 * no more than a page of lines in memory.
 */
export async function followJobLogs(
  options: FollowOptions,
  job: Job<JobData, JobResult>,
  out: Writable,
  closed: () => boolean,
): Promise<void> {
  const queue = options.queues[job.data.type];
  const cap = options.jobLogLines;
  const until = Date.now() + options.logFollowSeconds * 1000;
  const over = (): boolean => closed() || Date.now() >= until;
  /** Where the next line is in the list as it is now, and the last line sent. */
  let next = 0;
  let last: string | undefined;
  while (!over()) {
    const page = await queue.getJobLogs(job.id!, next, next + 999);
    let logs = page.logs;
    // count: the lines kept now (LLEN), whatever the range.
    const count = page.count;
    if (count >= cap && last !== undefined) {
      // At the cap every new line drops the oldest, shifting the list: find the last line sent
      // (0 when it was dropped too: those lines are gone for every reader).
      const all = (await queue.getJobLogs(job.id!, 0, -1)).logs;
      next = all.lastIndexOf(last) + 1;
      logs = all.slice(next, next + 1000);
    }
    for (const line of logs) {
      if (over()) break;
      const room = out.write(`${line}\n`);
      last = line;
      next += 1;
      // A reader that does not read holds the stream's buffer, not this loop's pages.
      if (!room) await drained(out, over);
    }
    if (logs.length === 0) {
      const state = await job.getState();
      if (state === 'completed' || state === 'failed' || state === 'unknown') return;
      await sleep(500);
    }
  }
  if (!closed())
    out.write(
      `(stopped following after ${options.logFollowSeconds} s, DDPM_LOG_FOLLOW_SECONDS; request again to go on)\n`,
    );
}

/**
 * A job process's line to its worker (child-protocol.ts): the messages it sends, its log and
 * progress, the signal that stops its job, and whether its result is out. One per process.
 */
import { type JobProgress } from '@ddpm/service';

import { type ChildMessage } from './child-protocol';

/** Aborted when the worker asks the job to stop (cancel or shutdown). */
export const controller = new AbortController();
/** Set once the result is sent: from then on a lost parent is no longer an error. */
let finished = false;

/** The result (or the error) is out: the parent may go. */
export function markFinished(): void {
  finished = true;
}

export function isFinished(): boolean {
  return finished;
}

export function send(message: ChildMessage): void {
  if (!process.connected) return;
  // With a callback, a write to a parent that just died reports here instead of crashing.
  process.send?.(message, undefined, {}, (err) => {
    if (err && !finished) process.exit(1);
  });
}

export function log(line: string): void {
  send({ type: 'log', line: `${new Date().toISOString()} ${line}` });
}

/** A progress report, sent now (the start and end of a phase, and what progressReporter lets through). */
export function sendProgress(progress: Omit<JobProgress, 'updatedAt'>): void {
  send({ type: 'progress', progress: { ...progress, updatedAt: new Date().toISOString() } });
}

/** Progress at most twice a second (and always the last step's). */
export function progressReporter(): (progress: Omit<JobProgress, 'updatedAt'>) => void {
  let last = 0;
  return (progress) => {
    const now = Date.now();
    if (now - last < 500 && progress.step < progress.totalSteps) return;
    last = now;
    sendProgress(progress);
  };
}

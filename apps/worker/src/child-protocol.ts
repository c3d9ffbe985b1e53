/** Messages between a worker and the child process that runs one job's tensor work. */
import { type JobData, type JobProgress, type JobResult } from '@ddpm/jobs';
import { type StepStats } from '@ddpm/engine';

export type ParentMessage =
  | { readonly type: 'start'; readonly jobId: string; readonly data: JobData; readonly storageUrl: string; readonly backend?: string }
  /** Stop: checkpoint (train) and finish as cancelled. */
  | { readonly type: 'cancel'; readonly reason: string };

export type ChildMessage =
  | { readonly type: 'progress'; readonly progress: JobProgress }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'step'; readonly stats: StepStats; readonly backend: string }
  | { readonly type: 'checkpoint'; readonly step: number; readonly url: string; readonly reason: string; readonly seconds: number }
  | { readonly type: 'result'; readonly result: JobResult }
  /** `code` and `kind` when the error is one of ours (a CodedError), so the parent can tell permanent from transient. */
  | { readonly type: 'error'; readonly error: { readonly message: string; readonly code?: string; readonly kind?: string } };

/** Messages between a worker and the child process that runs one job's (or one rank's) tensor work. */
import { type PlaneName } from '@ddpm/allreduce';
import { type StopReason } from '@ddpm/core';
import { type StepStats } from '@ddpm/engine';
import { type JobData, type JobProgress, type JobResult, type TensorSettings } from '@ddpm/service';

/** A rank's place in one generation of a data-parallel group, as its child needs it. */
export interface ChildGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
  /** The generation's key namespace on the data plane. */
  readonly namespace: string;
  /** The checkpoint every rank starts from (absent: the run starts fresh). */
  readonly resumeStep?: number;
  readonly dataRedisUrl: string;
  /** Where the gradients may travel instead when every rank shares one host (DDPM_SHM_DIR). */
  readonly sharedMemoryDir?: string;
  /** This worker's own data server, as its peers reach it (DDPM_RANK_DATA_URL). */
  readonly ownDataUrl?: string;
  /** The control plane (the queues' Redis), where the run's current generation is kept: the write fence. */
  readonly controlRedisUrl: string;
  /** Key of the run's generation counter on the control plane. */
  readonly generationKey: string;
}

/** Where a job process may read data (see configureDataAccess of @ddpm/data). */
export interface ChildDataAccess {
  readonly roots: readonly string[];
  readonly maxFileBytes: number;
}

/** The write fence of a job run alone: its writes go on only while `key` on the control plane holds `value`. */
export interface ChildFence {
  readonly controlRedisUrl: string;
  readonly key: string;
  readonly value: number;
}

export type ParentMessage =
  | {
      readonly type: 'start';
      readonly jobId: string;
      readonly data: JobData;
      readonly storageUrl: string;
      /** How long a store operation that fails with an I/O error keeps being tried, seconds. */
      readonly storagePatienceSeconds: number;
      readonly dataAccess: ChildDataAccess;
      /** The backend to load and the kernels' switches (the worker's environment). */
      readonly tensors: TensorSettings;
      readonly group?: ChildGroup;
      readonly fence?: ChildFence;
      /** The step an earlier attempt reported last: a resumed run says how much it redoes. */
      readonly previousStep?: number;
    }
  /** Stop: checkpoint (train) and finish as cancelled, saying why (the worker hands a shutdown's job back). */
  | { readonly type: 'cancel'; readonly reason: StopReason }
  /** Load the tensor backend and say which (the worker's readiness), then exit. */
  | { readonly type: 'probe'; readonly tensors: TensorSettings };

/** A group step's traffic, as the rank saw it. */
export interface ExchangeStats {
  readonly seconds: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

export type ChildMessage =
  /** Sent every second while the child's event loop is free: it is alive and not wedged (a long step is judged by its length). */
  | { readonly type: 'beat' }
  /** The answer to a probe: the backend that loaded. */
  | { readonly type: 'probed'; readonly backend: string }
  | { readonly type: 'progress'; readonly progress: JobProgress }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'step'; readonly stats: StepStats; readonly backend: string; readonly exchange?: ExchangeStats }
  /** The plane the group's generation agreed on for its values, and why not a better one. */
  | { readonly type: 'plane'; readonly plane: PlaneName; readonly reasons: readonly string[] }
  /** A batch of samples relayed in a sampling group: sent to rank 0, or received by it. */
  | { readonly type: 'relayed'; readonly bytes: number; readonly direction: 'sent' | 'received' }
  | {
      readonly type: 'checkpoint';
      readonly step: number;
      readonly url: string;
      readonly reason: string;
      readonly seconds: number;
    }
  /** An evaluation finished (during training, or an eval job's): its metrics by name. */
  | {
      readonly type: 'evaluation';
      readonly step: number;
      readonly metrics: Readonly<Record<string, number>>;
      readonly extractor?: string;
      readonly seconds: number;
    }
  | { readonly type: 'result'; readonly result: JobResult; readonly stopReason?: StopReason }
  /** For the worker's own log only (details a client must not see), with a reference the client's message quotes. */
  | { readonly type: 'server-log'; readonly message: string; readonly detail: string; readonly ref: string }
  /** `code` and `kind` when the error is one of ours (a CodedError), so the parent can tell permanent from transient. */
  | {
      readonly type: 'error';
      readonly error: { readonly message: string; readonly code?: string; readonly kind?: string };
    };

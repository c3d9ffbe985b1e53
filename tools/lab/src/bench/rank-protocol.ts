/** Commands between `ddpm bench allreduce|dp` and its rank processes. */
import { type PlaneName, type Transport } from '@ddpm/allreduce';

export type BenchRankCommand =
  | {
      readonly cmd: 'join';
      readonly redisUrl: string;
      readonly namespace: string;
      readonly rank: number;
      readonly worldSize: number;
      readonly transport: Transport;
      readonly backend?: string;
      readonly sharedMemoryDir?: string;
      /** This rank's own data server (the ranks plane, where every rank has one). */
      readonly ownDataUrl?: string;
    }
  /** A raw SET and GET of `bytes` bytes to the Redis at `url` on a lean connection: what one link carries. */
  | { readonly cmd: 'raw'; readonly url: string; readonly bytes: number }
  | {
      readonly cmd: 'allreduce';
      readonly step: number;
      readonly values: number;
      readonly fill: number;
      readonly expect: number;
    }
  /** Opens a trainer named `name` (a group rank when worldSize > 1, else alone). */
  | {
      readonly cmd: 'open';
      readonly name: string;
      readonly config: unknown;
      readonly storeDir: string;
      readonly rank: number;
      readonly worldSize: number;
      readonly stepOffset: number;
    }
  | { readonly cmd: 'train'; readonly name: string; readonly steps: number }
  /** Times `steps` reverse-process steps (Algorithm 2, x̂0 clipped) of `batch` images of the preset's freshly initialised model. */
  | { readonly cmd: 'sample'; readonly preset: string; readonly batch: number; readonly steps: number }
  /** The wasm heap's size now and the process's resident set (after a trainer's steps, its peak: the heap never shrinks). */
  | { readonly cmd: 'memory' }
  | { readonly cmd: 'exit' };

export type BenchRankReply =
  | { readonly cmd: 'joined'; readonly sharedMemory: boolean; readonly plane: PlaneName }
  | { readonly cmd: 'raw'; readonly setMs: number; readonly getMs: number }
  | { readonly cmd: 'opened' }
  | { readonly cmd: 'done'; readonly ms: number; readonly computeMs?: number; readonly exchangeMs?: number }
  | { readonly cmd: 'memory'; readonly heapBytes: number | null; readonly rssBytes: number }
  | { readonly cmd: 'error'; readonly message: string };

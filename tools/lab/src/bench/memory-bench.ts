/**
 * `ddpm bench memory`: the peak memory of a training step per preset and micro-batch on the
 * backend, against the estimate the server budgets with (@ddpm/settings's trainingStepBytes).
 *
 * Each case runs in a fresh process (a wasm heap grows and never shrinks, so after the steps its
 * size is the peak): the engine's real step (forward with dropout, L_simple, backward, clipping,
 * Adam, EMA) for `steps` steps, then the heap's size and the resident set. Cases whose estimate
 * exceeds wasm32's 4 GiB heap are reported as not run: the budget refuses them, or splits their
 * batch (fitAccumulation), before they reach a worker.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { generationKeys, openGeneration } from '@ddpm/allreduce';
import { TRAINING_MEMORY_FACTOR, WASM_HEAP_BYTES, trainingStepBytes } from '@ddpm/settings';
import { Redis } from 'ioredis';

import { benchTrainConfig, ranks } from './group-bench';
import { round } from './timing';

const MIB = 2 ** 20;

export interface MemoryBenchOptions {
  readonly redisUrl: string;
  /** [preset, micro-batch] pairs. */
  readonly cases: readonly (readonly [string, number])[];
  readonly steps: number;
  readonly backend: string;
}

/** The default cases: every CPU preset at a small and a large micro-batch, and the paper's models. */
export const DEFAULT_MEMORY_CASES: readonly (readonly [string, number])[] = [
  ['micro32', 8],
  ['micro32', 64],
  ['tiny32', 8],
  ['tiny32', 64],
  ['fashion32', 8],
  ['fashion32', 32],
  ['cifar10', 1],
  ['cifar10', 8],
  ['celebahq256', 1],
];

export async function benchMemory(options: MemoryBenchOptions): Promise<Record<string, unknown>> {
  const storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-bench-memory-'));
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const namespace = `bench-memory-${randomBytes(4).toString('hex')}`;
  const rows: Record<string, unknown>[] = [];
  try {
    await openGeneration(redis, namespace, 3_600_000);
    for (const [presetName, batch] of options.cases) {
      const config = benchTrainConfig(presetName, batch, 1);
      const estimate = trainingStepBytes(config, batch);
      const base = { preset: presetName, microBatch: batch, estimateMiB: round(estimate / MIB, 0) };
      if ((options.backend === 'wasm' || options.backend === 'native') && estimate > WASM_HEAP_BYTES) {
        rows.push({ ...base, run: false, why: `the estimate exceeds wasm32's 4 GiB heap` });
        continue;
      }
      const rank = await ranks(1, options.redisUrl, namespace, { transport: 'fp32', backend: options.backend });
      try {
        const heapAtStart = await rank.one(0, { cmd: 'memory' });
        await rank.one(0, { cmd: 'open', name: 'run', config, storeDir, rank: 0, worldSize: 1, stepOffset: 0 });
        const done = await rank.one(0, { cmd: 'train', name: 'run', steps: options.steps });
        const after = await rank.one(0, { cmd: 'memory' });
        if (after.cmd !== 'memory' || heapAtStart.cmd !== 'memory' || done.cmd !== 'done')
          throw new Error('internal error: unexpected replies');
        rows.push({
          ...base,
          run: true,
          stepMs: round(done.ms / options.steps, 0),
          ...(after.heapBytes !== null
            ? {
                heapMiB: round(after.heapBytes / MIB, 0),
                heapAtStartMiB: round((heapAtStart.heapBytes ?? 0) / MIB, 0),
                estimateOverHeap: round(estimate / after.heapBytes, 2),
              }
            : {}),
          rssMiB: round(after.rssBytes / MIB, 0),
        });
      } finally {
        await rank.close();
      }
    }
  } finally {
    await redis.del(generationKeys(namespace).alive).catch(() => undefined);
    redis.disconnect();
    await fs.rm(storeDir, { recursive: true, force: true });
  }
  return {
    benchmark: 'memory',
    backend: options.backend,
    steps: options.steps,
    trainingMemoryFactor: TRAINING_MEMORY_FACTOR,
    measured:
      'peak wasm heap after the steps of a fresh process (it never shrinks) and its resident set; estimateOverHeap above 1 means the budget errs on the safe side',
    cases: rows,
  };
}

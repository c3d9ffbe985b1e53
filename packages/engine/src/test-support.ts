/** Helpers for this package's tests (not exported). */
import { initBackend } from '@ddpm/kernels';
import { FileStore } from '@ddpm/storage';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type TrainConfig, type TrainRequest, resolveTrainJob } from '@ddpm/settings';

export async function useWasm(): Promise<void> {
  await initBackend({ backend: 'wasm' });
}

export async function tempStore(): Promise<{ store: FileStore; root: string; cleanup: () => Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-engine-'));
  return { store: new FileStore(root), root, cleanup: () => fs.rm(root, { recursive: true, force: true }) };
}

/** A run small enough for unit tests: micro32 (with dropout, to exercise it) on procedural grey shapes. */
export function tinyRun(overrides: Partial<TrainRequest> = {}): TrainConfig {
  return resolveTrainJob({
    dataset: 'procedural:shapes?size=64&imageSize=32&channels=1&seed=1',
    preset: 'micro32',
    dropout: 0.1,
    warmupSteps: 2,
    learningRate: 1e-3,
    emaDecay: 0.9,
    batchSize: 4,
    accumulation: 2,
    steps: 4,
    checkpointEvery: 100,
    seed: 5,
    ...overrides,
  }).train;
}

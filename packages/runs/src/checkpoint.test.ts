import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FileStore } from '@ddpm/storage';

import {
  type CheckpointFiles,
  checkpointProblem,
  listCheckpoints,
  pruneCheckpoints,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint';

let dir: string;
let store: FileStore;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-ckpt-'));
  store = new FileStore(dir);
});
afterEach(async () => {
  await store.close();
  await fs.rm(dir, { recursive: true, force: true });
});

const files = (step: number, fill: number): CheckpointFiles => ({
  state: {
    version: 1,
    step,
    reason: 'test',
    createdAt: new Date(0).toISOString(),
  } as unknown as CheckpointFiles['state'],
  model: new Uint8Array(64).fill(fill),
  ema: new Uint8Array(32).fill(fill),
  optimizer: new Uint8Array(16).fill(fill),
});

describe('checkpoint writers', () => {
  it('never replace a whole checkpoint of the same step (a late writer leaves the owner’s in place)', async () => {
    const ref = await writeCheckpoint(store, 'run', files(5, 1));
    await writeCheckpoint(store, 'run', files(5, 2));
    expect([...(await readCheckpoint(store, ref)).model.subarray(0, 2)]).toEqual([1, 1]);
  });

  it('rewrite a broken checkpoint of the same step', async () => {
    const ref = await writeCheckpoint(store, 'run', files(5, 1));
    await store.put('run/checkpoints/step-000000005/model.safetensors', new Uint8Array(3));
    expect(await checkpointProblem(store, ref)).toMatch(
      /model.safetensors fails its checksum \(3 bytes, manifest says 64 bytes/,
    );
    await writeCheckpoint(store, 'run', files(5, 2));
    expect([...(await readCheckpoint(store, ref)).model.subarray(0, 2)]).toEqual([2, 2]);
  });

  it('are stopped by their fence before any change', async () => {
    const fence = async (): Promise<void> => {
      throw new Error('fenced');
    };
    await expect(writeCheckpoint(store, 'run', files(5, 1), fence)).rejects.toThrow('fenced');
    expect(await store.list('run/')).toEqual([]);
    await writeCheckpoint(store, 'run', files(4, 1));
    await writeCheckpoint(store, 'run', files(5, 1));
    await expect(pruneCheckpoints(store, 'run', 1, fence)).rejects.toThrow('fenced');
    expect((await listCheckpoints(store, 'run')).map((r) => r.step)).toEqual([5, 4]);
  });

  it('prune keeping the newest whole checkpoints: broken ones do not count', async () => {
    for (const step of [1, 2, 3, 4]) await writeCheckpoint(store, 'run', files(step, step));
    // The two newest are broken (a torn write by a writer that lost the run, say).
    await store.delete('run/checkpoints/step-000000004/ema.safetensors');
    // Same size, other bytes: only the checksum tells.
    await store.put('run/checkpoints/step-000000003/optimizer.safetensors', new Uint8Array(16).fill(9));
    await pruneCheckpoints(store, 'run', 2);
    // Steps 2 and 1 are the two whole ones and stay; nothing older existed to delete.
    expect((await listCheckpoints(store, 'run')).map((r) => r.step)).toEqual([4, 3, 2, 1]);
    await writeCheckpoint(store, 'run', files(5, 5));
    await pruneCheckpoints(store, 'run', 2);
    expect((await listCheckpoints(store, 'run')).map((r) => r.step)).toEqual([5, 4, 3, 2]);
  });
});

/** Loading a trained model (EMA by default) and its diffusion from a checkpoint for sampling. */
import { GaussianDiffusion } from '@ddpm/diffusion';
import { type ObjectStore } from '@ddpm/storage';
import { type UNet, unetFromWeights } from '@ddpm/unet';

import { type CheckpointRef, type RunState, listCheckpoints, loadLatestCheckpoint, readCheckpoint } from './checkpoint';
import { engineError } from './errors';

export interface LoadedModel {
  readonly model: UNet;
  readonly diffusion: GaussianDiffusion;
  readonly state: RunState;
  readonly ref: CheckpointRef;
  readonly ema: boolean;
  /** Newer checkpoints skipped as corrupt. */
  readonly skipped: readonly string[];
}

/** The newest valid checkpoint under `prefix` (or the one at `step`), EMA weights unless `ema` is false. */
export async function loadModelFromCheckpoint(
  store: ObjectStore,
  prefix: string,
  options: { step?: number; ema?: boolean } = {},
): Promise<LoadedModel> {
  const useEma = options.ema ?? true;
  let ref: CheckpointRef;
  let files;
  let skipped: string[] = [];
  if (options.step !== undefined) {
    const found = (await listCheckpoints(store, prefix)).find((r) => r.step === options.step);
    if (found === undefined) throw engineError('DDPM_CHECKPOINT_NOT_FOUND', `no checkpoint at step ${options.step} under ${store.urlOf(prefix)}`);
    ref = found;
    files = await readCheckpoint(store, found);
  } else {
    const latest = await loadLatestCheckpoint(store, prefix);
    if (latest === undefined) throw engineError('DDPM_CHECKPOINT_NOT_FOUND', `no checkpoint under ${store.urlOf(prefix)}`);
    ({ ref, files } = latest);
    skipped = latest.skipped.map((s) => s.reason);
  }
  const model = unetFromWeights(useEma ? files.ema : files.model);
  const diffusion = new GaussianDiffusion(files.state.config.diffusion);
  return { model, diffusion, state: files.state, ref, ema: useEma, skipped };
}

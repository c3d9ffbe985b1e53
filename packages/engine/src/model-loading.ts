/** Loading a trained model (EMA by default) and its diffusion from a checkpoint for sampling (pretrained.ts: a shipped one). */
import { type TrainConfig } from '@ddpm/settings';
import { GaussianDiffusion } from '@ddpm/diffusion';
import { type CheckpointRef, type RunState, loadCheckpointAt, loadLatestCheckpoint } from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';
import { type UNet, unetFromWeights } from '@ddpm/unet';

import { engineError } from './errors';

export interface LoadedModel {
  readonly model: UNet;
  readonly diffusion: GaussianDiffusion;
  /** The run's configuration (as its checkpoints, or a shipped model's manifest, store it). */
  readonly config: TrainConfig;
  /** The checkpoint's run state; absent for a shipped model. */
  readonly state?: RunState;
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
  const found =
    options.step !== undefined
      ? await loadCheckpointAt(store, prefix, options.step)
      : await loadLatestCheckpoint(store, prefix);
  if (found === undefined) throw engineError('DDPM_CHECKPOINT_NOT_FOUND', `no checkpoint under ${store.urlOf(prefix)}`);
  const { ref, files } = found;
  const skipped = found.skipped.map((s) => s.reason);
  const model = unetFromWeights(useEma ? files.ema : files.model);
  const diffusion = new GaussianDiffusion(files.state.config.diffusion);
  return { model, diffusion, config: files.state.config, state: files.state, ref, ema: useEma, skipped };
}

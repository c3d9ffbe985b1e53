/**
 * Checkpoints in an object store (docs/training.md): under `<prefix>/checkpoints/step-NNNNNNNNN/`
 * the model, EMA and optimizer tensors (safetensors) and the run state (JSON) are written first,
 * then `manifest.json` listing every file with its size and sha256. A checkpoint without a
 * manifest is invisible; one whose files do not match their manifest is reported and skipped.
 */
import { type RngState, hasCode, sha256Hex as sha256 } from '@ddpm/core';
import { type LoaderState } from '@ddpm/data';
import { type ObjectStore, joinKey } from '@ddpm/storage';
import { type TrainConfig } from '@ddpm/settings';

import { runError } from './errors';
import { type LossCurveState } from './loss-curve';

export const CHECKPOINT_VERSION = 1;

export interface RunState {
  readonly version: number;
  /** Optimizer updates done (the training step). */
  readonly step: number;
  readonly config: TrainConfig;
  /** State of the RNG that draws t, ε and dropout seeds. */
  readonly rng: RngState;
  readonly loader: LoaderState;
  readonly imagesSeen: number;
  /** Seconds spent in training steps over the whole run, across restarts. */
  readonly trainSeconds: number;
  readonly createdAt: string;
  readonly reason: string;
  readonly backend?: string;
  /** The loss over the run so far (absent in checkpoints written before curves were kept). */
  readonly loss?: LossCurveState;
}

export interface CheckpointFiles {
  readonly state: RunState;
  readonly model: Uint8Array;
  readonly ema: Uint8Array;
  readonly optimizer: Uint8Array;
}

export interface CheckpointRef {
  readonly step: number;
  /** Key prefix of the checkpoint's files. */
  readonly key: string;
  readonly url: string;
  /** The size of the checkpoint's files together (manifest included), bytes. */
  readonly bytes: number;
}

interface Manifest {
  readonly version: number;
  readonly step: number;
  readonly createdAt: string;
  readonly files: readonly { name: string; bytes: number; sha256: string }[];
}

const FILE_NAMES = ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors', 'state.json'] as const;

export function checkpointKey(prefix: string, step: number): string {
  return joinKey(prefix, 'checkpoints', `step-${String(step).padStart(9, '0')}`);
}

/**
 * Called before every change a writer makes to the run's checkpoints; throws when the writer has
 * lost the run (a newer generation of its data-parallel group owns it), so a late writer can
 * neither tear nor prune what the owner wrote.
 */
export type WriteFence = () => Promise<void>;

export async function writeCheckpoint(
  store: ObjectStore,
  prefix: string,
  files: CheckpointFiles,
  fence?: WriteFence,
): Promise<CheckpointRef> {
  const key = checkpointKey(prefix, files.state.step);
  const bodies: Record<(typeof FILE_NAMES)[number], Uint8Array> = {
    'model.safetensors': files.model,
    'ema.safetensors': files.ema,
    'optimizer.safetensors': files.optimizer,
    'state.json': new TextEncoder().encode(JSON.stringify(files.state, null, 2)),
  };
  const manifestKey = joinKey(key, 'manifest.json');
  const manifest: Manifest = {
    version: CHECKPOINT_VERSION,
    step: files.state.step,
    createdAt: files.state.createdAt,
    files: FILE_NAMES.map((name) => ({ name, bytes: bodies[name].length, sha256: sha256(bodies[name]) })),
  };
  const manifestBody = new TextEncoder().encode(JSON.stringify(manifest, null, 2));
  const bytes = FILE_NAMES.reduce((sum, name) => sum + bodies[name].length, manifestBody.length);
  const ref: CheckpointRef = { step: files.state.step, key, url: store.urlOf(manifestKey), bytes };
  await fence?.();
  if (await store.exists(manifestKey)) {
    // A whole checkpoint of this step is there already (another run of the job wrote it: runs are
    // deterministic, so it holds this very state). A writer never replaces a whole checkpoint;
    // only a broken one is rewritten, its manifest removed first so the rewrite is invisible until whole.
    if ((await checkpointProblem(store, ref)) === undefined) return ref;
    await store.delete(manifestKey);
  }
  for (const name of FILE_NAMES) {
    await fence?.();
    await store.put(joinKey(key, name), bodies[name]);
  }
  await fence?.();
  await store.put(manifestKey, manifestBody);
  return ref;
}

/**
 * What is wrong with a checkpoint (its manifest, a file missing, a size or checksum that does not
 * match: everything readCheckpoint verifies), or undefined when it is whole.
 */
export async function checkpointProblem(store: ObjectStore, ref: CheckpointRef): Promise<string | undefined> {
  try {
    await readCheckpoint(store, ref);
    return undefined;
  } catch (err) {
    if (hasCode(err, 'DDPM_CHECKPOINT_INVALID')) return err.message;
    throw err;
  }
}

/** Checkpoints with a manifest, newest first (their files are not verified here). */
export async function listCheckpoints(store: ObjectStore, prefix: string): Promise<CheckpointRef[]> {
  const objects = await store.list(joinKey(prefix, 'checkpoints') + '/');
  // The bytes of each checkpoint's folder; a folder without its manifest is not a checkpoint (yet).
  const sizes = new Map<string, number>();
  for (const o of objects) {
    const folder = /^(.*\/step-\d{9})\//.exec(o.key)?.[1];
    if (folder !== undefined) sizes.set(folder, (sizes.get(folder) ?? 0) + o.size);
  }
  const refs: CheckpointRef[] = [];
  for (const o of objects) {
    const match = /\/step-(\d{9})\/manifest\.json$/.exec(o.key);
    if (match) {
      const key = o.key.slice(0, -'/manifest.json'.length);
      refs.push({ step: Number(match[1]), key, url: store.urlOf(o.key), bytes: sizes.get(key) ?? 0 });
    }
  }
  return refs.sort((a, b) => b.step - a.step);
}

/** Reads a checkpoint and verifies every file against its manifest. */
export async function readCheckpoint(store: ObjectStore, ref: CheckpointRef): Promise<CheckpointFiles> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(await store.get(joinKey(ref.key, 'manifest.json')))) as Manifest;
  } catch (err) {
    throw runError(
      'DDPM_CHECKPOINT_INVALID',
      `checkpoint ${ref.url}: unreadable manifest (${(err as Error).message})`,
    );
  }
  const bodies = new Map<string, Uint8Array>();
  for (const name of FILE_NAMES) {
    const entry = manifest.files?.find((f) => f.name === name);
    if (entry === undefined)
      throw runError('DDPM_CHECKPOINT_INVALID', `checkpoint ${ref.url}: the manifest does not list ${name}`);
    let body: Uint8Array;
    try {
      body = await store.get(joinKey(ref.key, name));
    } catch (err) {
      if (hasCode(err, 'DDPM_STORAGE_NOT_FOUND')) {
        throw runError('DDPM_CHECKPOINT_INVALID', `checkpoint ${ref.url}: ${name} is missing`);
      }
      throw err;
    }
    if (body.length !== entry.bytes || sha256(body) !== entry.sha256) {
      throw runError(
        'DDPM_CHECKPOINT_INVALID',
        `checkpoint ${ref.url}: ${name} fails its checksum (${body.length} bytes, manifest says ${entry.bytes} bytes with sha256 ${entry.sha256.slice(0, 12)}…)`,
      );
    }
    bodies.set(name, body);
  }
  const state = JSON.parse(new TextDecoder().decode(bodies.get('state.json'))) as RunState;
  if (state.version !== CHECKPOINT_VERSION) {
    throw runError(
      'DDPM_CHECKPOINT_INVALID',
      `checkpoint ${ref.url}: version ${state.version} is not ${CHECKPOINT_VERSION}`,
    );
  }
  return {
    state,
    model: bodies.get('model.safetensors')!,
    ema: bodies.get('ema.safetensors')!,
    optimizer: bodies.get('optimizer.safetensors')!,
  };
}

/**
 * The newest checkpoint that verifies, with the reasons for any newer one that did not
 * (a corrupt checkpoint is reported, never loaded; the previous good one is used).
 */
export async function loadLatestCheckpoint(
  store: ObjectStore,
  prefix: string,
): Promise<
  { ref: CheckpointRef; files: CheckpointFiles; skipped: { ref: CheckpointRef; reason: string }[] } | undefined
> {
  const skipped: { ref: CheckpointRef; reason: string }[] = [];
  for (const ref of await listCheckpoints(store, prefix)) {
    try {
      return { ref, files: await readCheckpoint(store, ref), skipped };
    } catch (err) {
      if (!hasCode(err, 'DDPM_CHECKPOINT_INVALID')) throw err;
      skipped.push({ ref, reason: err.message });
    }
  }
  if (skipped.length > 0) {
    throw runError(
      'DDPM_CHECKPOINT_INVALID',
      `no usable checkpoint under ${store.urlOf(prefix)}: ${skipped.map((s) => s.reason).join('; ')}`,
    );
  }
  return undefined;
}

/** The checkpoint at exactly `step`, verified; an error (not a fallback) when it is missing or corrupt. */
export async function loadCheckpointAt(
  store: ObjectStore,
  prefix: string,
  step: number,
): Promise<{ ref: CheckpointRef; files: CheckpointFiles; skipped: { ref: CheckpointRef; reason: string }[] }> {
  const ref = (await listCheckpoints(store, prefix)).find((r) => r.step === step);
  if (ref === undefined)
    throw runError('DDPM_CHECKPOINT_NOT_FOUND', `no checkpoint at step ${step} under ${store.urlOf(prefix)}`);
  return { ref, files: await readCheckpoint(store, ref), skipped: [] };
}

/**
 * Deletes the checkpoints older than the newest `keep` whole ones (manifest first, so each
 * vanishes atomically). Whole means verified (checkpointProblem finds nothing): broken checkpoints
 * never count towards `keep`, so pruning cannot leave a run with none that loads. `verified` holds
 * the keys of checkpoints known whole (written or loaded by this process) and gains those verified
 * here, so a long run reads each older checkpoint back once, not at every prune.
 */
export async function pruneCheckpoints(
  store: ObjectStore,
  prefix: string,
  keep: number,
  fence?: WriteFence,
  verified: Set<string> = new Set(),
): Promise<void> {
  const refs = await listCheckpoints(store, prefix);
  let whole = 0;
  let cut = refs.length;
  for (let i = 0; i < refs.length; i++) {
    const ref = refs[i]!;
    if (verified.has(ref.key) || (await checkpointProblem(store, ref)) === undefined) {
      verified.add(ref.key);
      whole += 1;
    }
    if (whole === keep) {
      cut = i + 1;
      break;
    }
  }
  for (const ref of refs.slice(cut)) {
    await fence?.();
    await store.delete(joinKey(ref.key, 'manifest.json'));
    for (const name of FILE_NAMES) await store.delete(joinKey(ref.key, name));
    verified.delete(ref.key);
  }
}

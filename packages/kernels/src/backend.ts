/**
 * Picks the TensorFlow.js backend once at start-up (docs/kernels.md): the one asked for (the
 * service's `DDPM_BACKEND`), otherwise the first that loads of tfjs-node-gpu → tfjs-node → native
 * (wasm with our kernels built for this CPU) → wasm → cpu.
 * The native packages are optional dependencies loaded dynamically, so nothing needs them to
 * build or test.
 */
import { createRequire } from 'node:module';

import { errorCodes } from '@ddpm/core';
import * as tf from '@tensorflow/tfjs-core';

import { nativeBuild } from './ops/native-kernels';
import { useNativeKernels } from './ops/wasm-kernels';
import { type KernelSwitches, setKernelSwitches } from './switches';

/**
 * Loads a package by a name computed at run time: the native backends are optional dependencies
 * that neither tsc nor a bundler may resolve, and a builtin is wanted as the module object itself.
 */
const loadModule = createRequire(__filename);

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'native' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'native', 'wasm', 'cpu'];

/** A backend that is unknown or did not load: another worker (or another install) may have it. */
const backendError = errorCodes({ DDPM_BACKEND_UNAVAILABLE: 'unavailable' });

export interface BackendInfo {
  /** Our name for it (what DDPM_BACKEND takes and what metrics and /healthz show). */
  readonly name: BackendName;
  /** TensorFlow.js's own backend name (`tensorflow`, `wasm`, `cpu`). */
  readonly tfBackend: string;
  /** Why each earlier candidate was passed over, for the start-up log. */
  readonly skipped: readonly { name: BackendName; reason: string }[];
  /** Whether the wasm backend runs SIMD (Node: yes). It runs one thread. */
  readonly wasmSimd?: boolean;
  /** The native kernels' build (`native`): its instruction set. */
  readonly nativeIsa?: string;
}

/** The npm package that provides each backend. */
const PACKAGE: Record<BackendName, string> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
  native: '@tensorflow/tfjs-backend-wasm',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const TF_NAME: Record<BackendName, string> = {
  'tensorflow-gpu': 'tensorflow',
  tensorflow: 'tensorflow',
  native: 'wasm',
  wasm: 'wasm',
  cpu: 'cpu',
};

export function isBackendName(value: unknown): value is BackendName {
  return typeof value === 'string' && (BACKEND_NAMES as readonly string[]).includes(value);
}

let selected: BackendInfo | undefined;

/**
 * Loads a backend's package (registering it with tfjs-core) and makes it current. `native` is the
 * wasm backend with our kernels built for this CPU (ops/native-kernels.ts) in place of their wasm
 * module: it fails, and the next candidate is tried, where they are not built.
 */
async function tryBackend(name: BackendName): Promise<void> {
  if (name === 'native') {
    const build = nativeBuild(true);
    if (typeof build === 'string') throw new Error(build);
  }
  // A computed specifier keeps bundlers and tsc from requiring the optional native packages.
  loadModule(PACKAGE[name]);
  const ok = await tf.setBackend(TF_NAME[name]);
  if (!ok) throw new Error(`tf.setBackend('${TF_NAME[name]}') failed`);
  await tf.ready();
  useNativeKernels(name === 'native');
}

/**
 * What a process asks of its tensors: `@ddpm/service`'s `TensorSettings`, which it reads from the
 * environment (`DDPM_BACKEND`, the kernels' switches), or a caller's own choice.
 */
export interface TensorRequest {
  /** The backend to load; unset: the first of BACKEND_NAMES that loads. */
  readonly backend?: string;
  /** Kernels to switch off (setKernelSwitches); unset: as they are. */
  readonly kernelSwitches?: Partial<KernelSwitches>;
}

/**
 * Sets the kernels' switches, then selects and initialises the backend. Idempotent: later calls
 * return the first result. A `backend` asked for is loaded or fails clearly; otherwise candidates
 * are tried in order. Reads no environment.
 */
export async function initBackend(request: TensorRequest = {}): Promise<BackendInfo> {
  if (request.kernelSwitches) setKernelSwitches(request.kernelSwitches);
  if (selected !== undefined) return selected;
  const forced = request.backend;
  if (forced !== undefined && forced !== '') {
    if (!isBackendName(forced)) {
      throw backendError(
        'DDPM_BACKEND_UNAVAILABLE',
        `backend ${JSON.stringify(forced)} is not one of ${BACKEND_NAMES.join(', ')}`,
      );
    }
    try {
      await tryBackend(forced);
    } catch (err) {
      throw backendError(
        'DDPM_BACKEND_UNAVAILABLE',
        `backend ${forced} could not be loaded (${PACKAGE[forced]}): ${firstLine(err)}. ` +
          (forced.startsWith('tensorflow')
            ? `Install it with "npm install ${PACKAGE[forced]}@4.22.0" on a machine that can download libtensorflow, ` +
              'or unset DDPM_BACKEND to fall back to wasm.'
            : 'Reinstall dependencies with "npm ci".'),
      );
    }
    selected = describe(forced, []);
    return selected;
  }
  const skipped: { name: BackendName; reason: string }[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      await tryBackend(name);
      selected = describe(name, skipped);
      return selected;
    } catch (err) {
      skipped.push({ name, reason: firstLine(err) });
    }
  }
  throw backendError(
    'DDPM_BACKEND_UNAVAILABLE',
    `no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`,
  );
}

/** The backend chosen by {@link initBackend}, or undefined before it ran. */
export function currentBackend(): BackendInfo | undefined {
  return selected;
}

function describe(name: BackendName, skipped: { name: BackendName; reason: string }[]): BackendInfo {
  const base = { name, tfBackend: tf.getBackend(), skipped };
  if (name !== 'wasm' && name !== 'native') return base;
  const build = name === 'native' ? nativeBuild(true) : undefined;
  return {
    ...base,
    wasmSimd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
    ...(typeof build === 'object' ? { nativeIsa: build.isa } : {}),
  };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}

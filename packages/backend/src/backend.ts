/**
 * Picks the TensorFlow.js backend once at start-up (docs/kernels.md):
 * `DDPM_BACKEND` if set, otherwise the first that loads of tfjs-node-gpu → tfjs-node → wasm → cpu.
 * The native packages are optional dependencies loaded dynamically, so nothing needs them to
 * build or test.
 */
import { createRequire } from 'node:module';

import { errorCodes } from '@ddpm/core';
import * as tf from '@tensorflow/tfjs-core';

import { installWasmThreads, threadedWasmMemory } from './wasm-threads';

/**
 * Loads a package by a name computed at run time: the native backends are optional dependencies
 * that neither tsc nor a bundler may resolve, and a builtin is wanted as the module object itself.
 */
const loadModule = createRequire(__filename);

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** A backend that is unknown or did not load: another worker (or another install) may have it. */
const backendError = errorCodes({ DDPM_BACKEND_UNAVAILABLE: 'unavailable' });

export interface BackendInfo {
  /** Our name for it (what DDPM_BACKEND takes and what metrics and /healthz show). */
  readonly name: BackendName;
  /** TensorFlow.js's own backend name (`tensorflow`, `wasm`, `cpu`). */
  readonly tfBackend: string;
  /** Why each earlier candidate was passed over, for the start-up log. */
  readonly skipped: readonly { name: BackendName; reason: string }[];
  /** Whether the wasm backend runs SIMD / several threads (Node: SIMD yes, threads no). */
  readonly wasmSimd?: boolean;
  readonly wasmThreads?: boolean;
  /** XNNPACK's threads (DDPM_WASM_THREADS). */
  readonly wasmThreadCount?: number;
}

/** The npm package that provides each backend. */
const PACKAGE: Record<BackendName, string> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
  wasm: '@tensorflow/tfjs-backend-wasm',
  cpu: '@tensorflow/tfjs-backend-cpu',
};

const TF_NAME: Record<BackendName, string> = {
  'tensorflow-gpu': 'tensorflow',
  tensorflow: 'tensorflow',
  wasm: 'wasm',
  cpu: 'cpu',
};

export function isBackendName(value: unknown): value is BackendName {
  return typeof value === 'string' && (BACKEND_NAMES as readonly string[]).includes(value);
}

let selected: BackendInfo | undefined;

/** The most XNNPACK threads the threaded wasm build has workers for. */
export const MAX_WASM_THREADS = 8;

/**
 * Threads of the wasm backend, from DDPM_WASM_THREADS (default 1: one core per process, as a
 * worker pool of single-threaded processes wants; more runs the threaded build, see wasm-threads.ts).
 */
export function wasmThreadsFrom(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['DDPM_WASM_THREADS'];
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WASM_THREADS) {
    throw backendError(
      'DDPM_BACKEND_UNAVAILABLE',
      `DDPM_WASM_THREADS must be an integer from 1 to ${MAX_WASM_THREADS}, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

/** Loads a backend's package (registering it with tfjs-core) and makes it current. */
async function tryBackend(name: BackendName, env: NodeJS.ProcessEnv): Promise<void> {
  // A computed specifier keeps bundlers and tsc from requiring the optional native packages.
  const specifier = PACKAGE[name];
  const loaded = loadModule(specifier) as { setThreadsCount?: (n: number) => void };
  const threads = name === 'wasm' ? wasmThreadsFrom(env) : 1;
  if (threads > 1) {
    installWasmThreads();
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    loaded.setThreadsCount?.(threads);
  }
  // tfjs-wasm caps its pool at half the logical cores it is told of (it assumes two hardware threads
  // a core) as it instantiates; it is told of twice the threads asked for, until it is ready.
  const restore = threads > 1 ? pretendLogicalCores(2 * threads) : () => undefined;
  try {
    const ok = await tf.setBackend(TF_NAME[name]);
    if (!ok) throw new Error(`tf.setBackend('${TF_NAME[name]}') failed`);
    await tf.ready();
  } finally {
    restore();
  }
  if (threads > 1) {
    // Where our own kernels (@ddpm/unet) look for the heap's memory: the threaded glue imports
    // it rather than exporting it, so it is not under the module's exports as in the plain build.
    const module = (
      tf.backend() as unknown as {
        wasm: {
          wasmMemory?: unknown;
          PThread?: { runningWorkers: { unref(): void }[]; unusedWorkers: { unref(): void }[] };
        };
      }
    ).wasm;
    module.wasmMemory ??= threadedWasmMemory();
    // XNNPACK's pool threads wait for work for the life of the process; they must not keep it alive.
    for (const worker of [...(module.PThread?.runningWorkers ?? []), ...(module.PThread?.unusedWorkers ?? [])])
      worker.unref();
  }
}

function pretendLogicalCores(n: number): () => void {
  // The module object itself (the glue calls require('os').cpus()), not an import's copy of it.
  const os = loadModule('node:os') as { cpus: () => unknown[] };
  const cpus = os.cpus;
  os.cpus = () => {
    const real = cpus();
    return Array.from({ length: n }, (_, i) => real[i % real.length]!);
  };
  return () => {
    os.cpus = cpus;
  };
}

/**
 * Selects and initialises the backend. Idempotent: later calls return the first result.
 * `preferred` (or the DDPM_BACKEND environment variable) forces one, failing clearly if it
 * cannot load; otherwise candidates are tried in order.
 */
export async function initBackend(options: { preferred?: string; env?: NodeJS.ProcessEnv } = {}): Promise<BackendInfo> {
  if (selected !== undefined) return selected;
  // A bad thread count fails here, rather than passing wasm over for the slow cpu backend.
  wasmThreadsFrom(options.env ?? process.env);
  const forced = options.preferred ?? (options.env ?? process.env)['DDPM_BACKEND'];
  if (forced !== undefined && forced !== '') {
    if (!isBackendName(forced)) {
      throw backendError(
        'DDPM_BACKEND_UNAVAILABLE',
        `DDPM_BACKEND=${JSON.stringify(forced)} is not a backend; expected one of ${BACKEND_NAMES.join(', ')}`,
      );
    }
    try {
      await tryBackend(forced, options.env ?? process.env);
    } catch (err) {
      throw backendError(
        'DDPM_BACKEND_UNAVAILABLE',
        `DDPM_BACKEND=${forced} could not be loaded (${PACKAGE[forced]}): ${firstLine(err)}. ` +
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
      await tryBackend(name, options.env ?? process.env);
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
  if (name !== 'wasm') return base;
  return {
    ...base,
    wasmSimd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
    wasmThreads: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT'),
    wasmThreadCount: (loadModule(PACKAGE.wasm) as { getThreadsCount(): number }).getThreadsCount(),
  };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}

/**
 * Our kernels compiled for this machine (c/native/build.cjs, at `npm ci`): the C source of the
 * wasm module, built as a Node-API addon per instruction set, with the products of the Winograd
 * convolutions and of attention at the CPU's vector width (16 floats with AVX-512, 8 with AVX2)
 * and on a pool of threads. They work on the tfjs-wasm heap itself, as the wasm module does: the
 * `native` backend is tfjs's wasm backend with these kernels in place of ours on wasm. Each
 * kernel sums in the order the wasm module sums, so the two give the same bits (the `fma` build
 * as the fused wasm build, the `plain` one as the plain), for any number of threads.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

import { type KernelExports } from './kernel-exports';

/** The instruction sets there are builds for, widest first. */
export const NATIVE_ISAS = ['x86-64-v4', 'x86-64-v3', 'x86-64-v2', 'armv8-a'] as const;
export type NativeIsa = (typeof NATIVE_ISAS)[number];

type NativeAddon = { readonly [K in keyof KernelExports]: (heap: ArrayBufferLike, ...args: number[]) => void } & {
  set_threads(threads: number): void;
};

export interface NativeBuild {
  readonly isa: NativeIsa;
  /** Whether its products fuse multiply-adds (the `fma` build on an instruction set with FMA). */
  readonly fused: boolean;
  readonly file: string;
  readonly addon: NativeAddon;
}

/** Where build.cjs writes the addons: packages/kernels/build/native (from src/ops or dist/ops). */
export const NATIVE_DIR = path.join(__dirname, '..', '..', 'build', 'native');

const load = createRequire(__filename);

/** The CPU's flags (Linux), or undefined where /proc/cpuinfo cannot be read. */
function cpuFlags(): Set<string> | undefined {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:(.*)$/m.exec(text);
    return new Set((line?.[1] ?? '').trim().split(/\s+/));
  } catch {
    return undefined;
  }
}

/** The instruction sets this process's CPU runs, widest first. */
export function cpuIsas(arch: string = process.arch, flags: Set<string> | undefined = cpuFlags()): NativeIsa[] {
  if (arch === 'arm64') return ['armv8-a'];
  if (arch !== 'x64') return [];
  const has = (...names: string[]): boolean => flags !== undefined && names.every((n) => flags.has(n));
  const isas: NativeIsa[] = [];
  if (has('avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl', 'avx2', 'fma', 'bmi2')) isas.push('x86-64-v4');
  if (has('avx2', 'fma', 'bmi1', 'bmi2', 'movbe', 'f16c')) isas.push('x86-64-v3');
  if (has('sse4_2', 'ssse3', 'popcnt')) isas.push('x86-64-v2');
  return isas;
}

const builds = new Map<boolean, NativeBuild | string>();

/**
 * The widest build this CPU runs, with or without fused multiply-adds, or why there is none (not
 * built on this machine, an architecture without a build, a file that does not load).
 */
export function nativeBuild(fma: boolean): NativeBuild | string {
  let found = builds.get(fma);
  if (found === undefined) {
    found = findBuild(fma);
    builds.set(fma, found);
  }
  return found;
}

function findBuild(fma: boolean): NativeBuild | string {
  const isas = cpuIsas();
  if (isas.length === 0) return `no native build for ${process.arch}`;
  const arithmetic = fma ? 'fma' : 'plain';
  for (const isa of isas) {
    const file = path.join(NATIVE_DIR, `ddpm_kernels-${isa}-${arithmetic}.node`);
    if (!existsSync(file)) continue;
    try {
      return { isa, fused: fma && isa !== 'x86-64-v2', file, addon: load(file) as NativeAddon };
    } catch (err) {
      return `${path.basename(file)} does not load: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
    }
  }
  return 'the native kernels are not built (npm ci builds them where a C compiler is installed; or run node packages/kernels/c/native/build.cjs)';
}

/** The kernels of `build` on the heap whose Memory is `memory`, with `threads` threads. */
export function nativeExports(
  build: NativeBuild,
  memory: { readonly buffer: ArrayBufferLike },
  threads: number,
): KernelExports {
  build.addon.set_threads(threads);
  const bound: Record<string, (...args: number[]) => void> = {};
  for (const name of Object.keys(build.addon)) {
    if (name === 'set_threads') continue;
    const kernel = build.addon[name as keyof KernelExports];
    // The heap's buffer is read at every call: growing the memory replaces it.
    bound[name] = (...args: number[]): void => kernel(memory.buffer, ...args);
  }
  return bound as unknown as KernelExports;
}

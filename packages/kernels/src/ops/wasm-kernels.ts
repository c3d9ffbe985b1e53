/**
 * Which build of our kernels runs, bound to the current tfjs-wasm heap: the wasm module (c/ddpm_kernels.c,
 * built by c/build.cjs into kernels-wasm.generated.ts; a small WebAssembly module that imports the
 * backend's memory), with or without fused multiply-adds, or the native build of the same C (the
 * `native` backend). The kernels themselves, as methods on heap tensors: heap-kernels.ts.
 */

import { ProcessScope, kernelSwitches } from '../switches';
import { type KernelExports } from './kernel-exports';
import { WasmKernels } from './heap-kernels';
import { nativeBuild, nativeExports } from './native-kernels';
import { KERNELS_FMA_WASM_BASE64, KERNELS_WASM_BASE64 } from './kernels-wasm.generated';
import { type WasmHeap, type WebAssemblyApi, wasmHeap, webAssembly } from './wasm-heap';

export { type ConvAddends, type GroupNormForward, WasmKernels } from './heap-kernels';

let cached:
  { heap: WasmHeap; kernels: WasmKernels | undefined; fused: boolean; fmaWanted: boolean; native: string } | undefined;

/** Whether the kernels run natively (the `native` backend: c/native, ops/native-kernels.ts). */
let nativeWanted = false;

/** Runs our kernels natively on the wasm heap (the `native` backend) or as the wasm module. */
export function useNativeKernels(on: boolean): void {
  nativeWanted = on;
}

/**
 * The module to run: the build with fused multiply-adds where this Node compiles relaxed SIMD
 * (later V8s ship it; Node 20's V8 11 needs the flag of v8-flags.ts at start-up), unless
 * DDPM_WASM_FMA=0; else the plain build. On x64
 * with FMA3 the products' inner loops then run one vfmadd where the plain build runs a multiply
 * and an add (the two builds differ in rounding, not in what they compute).
 */
function kernelModule(wasm: WebAssemblyApi, fmaWanted: boolean): { module: object; fused: boolean } {
  // Compiled once per choice: withPlainArithmetic switches builds around every scope it runs.
  let chosen = compiledModules.get(fmaWanted);
  if (chosen === undefined) {
    chosen = compileKernelModule(wasm, fmaWanted);
    compiledModules.set(fmaWanted, chosen);
  }
  return chosen;
}

const compiledModules = new Map<boolean, { module: object; fused: boolean }>();

function compileKernelModule(wasm: WebAssemblyApi, fmaWanted: boolean): { module: object; fused: boolean } {
  const prepare = (base64: string): Uint8Array => Buffer.from(base64, 'base64');
  if (fmaWanted) {
    const fusedBytes = prepare(KERNELS_FMA_WASM_BASE64);
    try {
      return { module: new wasm.Module(fusedBytes), fused: true };
    } catch {
      // This process's V8 does not compile relaxed SIMD (Node 20 started without kernelV8Flags()): the plain build.
    }
  }
  return { module: new wasm.Module(prepare(KERNELS_WASM_BASE64)), fused: false };
}

const plainArithmetic = new ProcessScope();

/**
 * Runs `fn` on the plain build (no fused multiply-adds), process-wide while it runs: for results
 * that must be the same bits on every CPU, such as the FD extractor's recipe (its weights are pinned
 * by hash, and V8 fuses relaxed_madd only on CPUs with FMA).
 */
export function withPlainArithmetic<T>(fn: () => Promise<T>): Promise<T> {
  return plainArithmetic.run(fn);
}

/** Whether the kernels in use are the build with fused multiply-adds (see {@link kernelModule}). */
export function wasmKernelsFused(): boolean {
  return wasmKernels() !== undefined && cached?.fused === true;
}

/**
 * The kernels bound to the current wasm backend's heap, or undefined on other backends, when the
 * heap's memory is not reachable, or when they are switched off (`wasmKernels`, to compare against
 * the portable composed ops).
 */
export function wasmKernels(): WasmKernels | undefined {
  const heap = wasmHeap();
  const switches = kernelSwitches();
  if (heap === undefined || !switches.wasmKernels) return undefined;
  const fmaWanted = switches.wasmFma && !plainArithmetic.active;
  const native = nativeWanted ? `threads ${switches.threads}` : '';
  if (cached?.heap === heap && cached.fmaWanted === fmaWanted && cached.native === native) return cached.kernels;
  const memory = heap.memory() as { readonly buffer: ArrayBufferLike } | undefined;
  let kernels: WasmKernels | undefined;
  let fused = false;
  if (memory !== undefined) {
    const build = nativeWanted ? nativeBuild(fmaWanted) : undefined;
    if (typeof build === 'object') {
      fused = build.fused;
      kernels = new WasmKernels(heap, nativeExports(build, memory, switches.threads));
    } else {
      const wasm = webAssembly();
      const chosen = kernelModule(wasm, fmaWanted);
      fused = chosen.fused;
      const instance = new wasm.Instance(chosen.module, { env: { memory } });
      kernels = new WasmKernels(heap, instance.exports as KernelExports);
    }
  }
  cached = { heap, kernels, fused, fmaWanted, native };
  return kernels;
}

/**
 * The float64 kernels of c/linalg_f64.c (built by c/build.cjs into
 * linalg-wasm.generated.ts): one WebAssembly instance per process with a memory of its own, into
 * which matrices are copied, laid out by a bump arena that is reset for every operation. The
 * memory grows to the largest operation so far and is reused after that (a wasm memory never
 * shrinks), so repeated operations of one size allocate nothing.
 *
 * The module is plain SIMD128 (no relaxed SIMD, no fused multiply-add) and single-threaded, so
 * its results are the same bits on every CPU and need no V8 flag.
 */
import { evalError } from '../errors';
import { LINALG_WASM_BASE64 } from './linalg-wasm.generated';

/** gemm's flags (linalg_f64.c). */
export const GEMM = { TRANS_A: 1, TRANS_B: 2, NEGATE: 4, LOWER: 8, A_UPPER: 16, B_LOWER: 32, A_LOWER: 64 } as const;

/** Long synchronous stretches call `onProgress` now and then (a heartbeat's sign of life). */
export interface LinalgOptions {
  readonly onProgress?: () => void;
  /** Called after each phase of the work with its time (ms) and nominal floating-point operations. */
  readonly onPhase?: (phase: LinalgPhase) => void;
}

export interface LinalgPhase {
  readonly name: 'factorisation' | 'products' | 'tridiagonalisation' | 'ql';
  readonly ms: number;
  readonly flops: number;
}

interface KernelExports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  readonly __heap_base: { readonly value: number };
  gemm_work_size(n: number): number;
  gemm(
    flags: number,
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    work: number,
  ): void;
  pstrf(n: number, a: number, lda: number, piv: number, work: number): number;
  mirror_lower(n: number, a: number): void;
  gather_lower_half(n: number, sigma: number, piv: number, s: number): void;
  sandwich(n: number, r: number, l: number, s: number, y: number, m: number, work: number): void;
  sytrd_work_size(n: number): number;
  sytrd(n: number, a: number, lda: number, d: number, e: number, work: number): void;
  tridiagonal_ql(n: number, d: number, e: number, counts: number): number;
}

interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

const PAGE = 65_536;
/** wasm32 addresses 4 GiB; V8 grants at most that. */
const MAX_BYTES = 65_536 * PAGE;

let progressHook: (() => void) | undefined;
let kernels: KernelExports | undefined;
/** Whether an operation holds the memory (a callback that started another would overwrite it). */
let busy = false;

function instance(): KernelExports {
  if (kernels === undefined) {
    const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
    const module = new wasm.Module(Buffer.from(LINALG_WASM_BASE64, 'base64'));
    const created = new wasm.Instance(module, { env: { progress: () => progressHook?.() } });
    kernels = created.exports as KernelExports;
  }
  return kernels;
}

/**
 * Runs one operation on the module's memory through a fresh {@link Arena}. Operations do not
 * nest: one started from a progress or phase callback of another is refused, since both would
 * lay out the same memory.
 */
export function withArena<T>(fn: (arena: Arena) => T): T {
  if (busy)
    throw new Error(
      'the wasm linear algebra is already in use: a progress or phase callback cannot start another computation',
    );
  busy = true;
  try {
    return fn(new Arena());
  } finally {
    busy = false;
  }
}

/**
 * A bump arena over the module's memory for one operation: `doubles(count)` hands out 64-byte
 * aligned regions (byte addresses, as the kernels take them), growing the memory as needed.
 * Views must be taken after the last allocation ({@link view}): growing detaches old buffers.
 */
export class Arena {
  readonly k: KernelExports;
  private next: number;

  /** Use {@link withArena}. */
  constructor() {
    this.k = instance();
    this.next = align(this.k.__heap_base.value);
  }

  doubles(count: number): number {
    const at = this.next;
    const end = at + align(count * 8);
    if (end > MAX_BYTES)
      throw evalError(
        'DDPM_EVAL_SHAPE',
        `the linear algebra needs ${Math.ceil(end / 2 ** 20)} MiB, more than a 4 GiB WebAssembly memory holds`,
      );
    const have = this.k.memory.buffer.byteLength;
    if (end > have) this.k.memory.grow(Math.ceil((end - have) / PAGE));
    this.next = end;
    return at;
  }

  view(): Float64Array {
    return new Float64Array(this.k.memory.buffer);
  }

  /** Runs a kernel with `onProgress` as its progress hook. */
  run<T>(onProgress: (() => void) | undefined, fn: () => T): T {
    progressHook = onProgress;
    try {
      return fn();
    } finally {
      progressHook = undefined;
    }
  }
}

function align(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}

/** The bytes of the module's memory now (it grows to the largest operation and stays). */
export function linalgMemoryBytes(): number {
  return instance().memory.buffer.byteLength;
}

/** Writes an n × n row-major `a` made exactly symmetric from its lower triangle at `at`. */
export function putSymmetric(arena: Arena, at: number, a: Float64Array, n: number): void {
  arena.view().set(a.subarray(0, n * n), at / 8);
  arena.k.mirror_lower(n, at);
}

/**
 * C(m × n) += ±op(A) op(B) for column-major operands (the kernel behind every product here, for
 * tests and benchmarks): `flags` from {@link GEMM}; returns the new C. A row-major matrix is the
 * column-major transpose of the same numbers.
 */
export function gemmF64(
  flags: number,
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  lda: number,
  b: Float64Array,
  ldb: number,
  c: Float64Array,
  ldc: number,
): Float64Array {
  return withArena((arena) => {
    const pa = arena.doubles(a.length);
    const pb = arena.doubles(b.length);
    const pc = arena.doubles(c.length);
    const work = arena.doubles(arena.k.gemm_work_size(n));
    const heap = arena.view();
    heap.set(a, pa / 8);
    heap.set(b, pb / 8);
    heap.set(c, pc / 8);
    arena.k.gemm(flags, m, n, k, pa, lda, pb, ldb, pc, ldc, work);
    return arena.view().slice(pc / 8, pc / 8 + c.length);
  });
}

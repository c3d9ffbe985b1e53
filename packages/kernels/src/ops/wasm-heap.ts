/**
 * Direct use of the wasm backend's heap for the few things its kernels do slowly
 * (docs/kernels.md and backend-caps.ts):
 *
 * - **views**: a product over a slice of a tensor (one batch element, a range of rows) is run
 *   on a temporary tensor id that points into the parent's memory, so nothing is copied. The
 *   backend's own BatchMatMul with a batch of one runs XNNPACK's fast GEMM; with a batch axis it
 *   takes a slow generic loop, so batched products run one fast GEMM per batch element on views.
 * - **Identity shares memory**: tfjs's customGrad clones every saved tensor (the Identity
 *   kernel), which on wasm copies the data; the cpu and native backends share it instead, and
 *   tensors are immutable, so the wasm kernel is replaced by a sharing one.
 *
 * Everything here is feature-detected: if the wasm backend's internals are not what tfjs 4.22
 * has, {@link wasmHeap} returns undefined and callers use the portable composed paths.
 */
import * as tf from '@tensorflow/tfjs-core';

interface TensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

interface WasmModule {
  /** Emscripten's exports; `memory` is the heap's WebAssembly.Memory. */
  asm?: { memory?: unknown };
  cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}

interface WasmBackendInternals {
  wasm: WasmModule;
  dataIdMap: { get(dataId: object): TensorData | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  incRef(dataId: object): void;
}

type BatchMatMulFn = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  outId: number,
) => void;

/** A region of the heap seen as a 2-D float32 matrix: byte offset and shape. */
export interface HeapMatrix {
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

export class WasmHeap {
  private readonly gemm: BatchMatMulFn;

  constructor(private readonly backend: WasmBackendInternals) {
    this.gemm = backend.wasm.cwrap('BatchMatMul', null, [
      'number',
      'array',
      'number',
      'number',
      'array',
      'number',
      'number',
      'number',
      'number',
    ]);
  }

  /** The heap's WebAssembly.Memory, for modules that work on it in place (wasm-kernels.ts). */
  memory(): object | undefined {
    const memory = this.backend.wasm.asm?.memory;
    return memory instanceof webAssembly().Memory ? memory : undefined;
  }

  /**
   * Byte offset of a float32 tensor's data in the heap (the backend's data map moves a tensor
   * that lives on another backend here first).
   */
  offsetOf(t: tf.TensorInfo): number {
    const data = this.backend.dataIdMap.get(t.dataId);
    if (data === undefined || t.dtype !== 'float32') throw new Error('internal error: not a float32 wasm tensor');
    return data.memoryOffset;
  }

  /** A new, uninitialised float32 tensor on the heap, for a kernel to write. */
  allocate(shape: number[]): tf.Tensor {
    const info = this.backend.makeOutput(shape, 'float32');
    return tf.engine().makeTensorFromTensorInfo(info, this.backend as unknown as tf.KernelBackend);
  }

  /** out = a·b for heap matrices (a [m, k], b [k, n], out [m, n]), on XNNPACK's GEMM. */
  gemmInto(a: HeapMatrix, b: HeapMatrix, out: HeapMatrix): void {
    if (a.cols !== b.rows || out.rows !== a.rows || out.cols !== b.cols) {
      throw new Error(
        `internal error: gemm shapes [${a.rows}, ${a.cols}]·[${b.rows}, ${b.cols}] → [${out.rows}, ${out.cols}]`,
      );
    }
    const [aId, bId, outId] = [this.registerView(a), this.registerView(b), this.registerView(out)];
    try {
      this.gemm(aId, shapeBytes(a), 3, bId, shapeBytes(b), 3, false, false, outId);
    } finally {
      for (const id of [aId, bId, outId]) this.backend.wasm.tfjs.disposeData(id);
    }
  }

  private registerView(m: HeapMatrix): number {
    const id = this.backend.dataIdNextNumber++;
    this.backend.wasm.tfjs.registerTensor(id, m.rows * m.cols, m.offset);
    return id;
  }
}

/**
 * Copies float32 tensors, one after the other, into `target` (a host array the caller reuses):
 * on wasm straight out of the heap, where `data()` would first allocate a fresh copy of each
 * (for a model's gradients, megabytes of new memory every step; on VMs with slow page faults,
 * tens of milliseconds); elsewhere through `data()`.
 */
export async function copyTensorsInto(tensors: readonly tf.Tensor[], target: Float32Array): Promise<Float32Array> {
  const heap = wasmHeap();
  const buffer = (heap?.memory() as { buffer?: ArrayBufferLike } | undefined)?.buffer;
  let offset = 0;
  for (const t of tensors) {
    if (offset + t.size > target.length)
      throw new Error(`internal error: ${offset + t.size} values do not fit in ${target.length}`);
    if (heap !== undefined && buffer !== undefined && t.dtype === 'float32') {
      target.set(new Float32Array(buffer, heap.offsetOf(t), t.size), offset);
    } else {
      target.set(await t.data(), offset);
    }
    offset += t.size;
  }
  return target;
}

/** The WebAssembly global (the compile settings here have no DOM or WebAssembly lib types). */
export interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: abstract new (...args: never[]) => object;
}

export function webAssembly(): WebAssemblyApi {
  return (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
}

function shapeBytes(m: HeapMatrix): Uint8Array {
  return new Uint8Array(new Int32Array([1, m.rows, m.cols]).buffer);
}

let cached: { backend: tf.KernelBackend; heap: WasmHeap | undefined } | undefined;

/** The heap of the current backend when it is tfjs 4.22's wasm backend, else undefined. */
export function wasmHeap(): WasmHeap | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend();
  if (cached?.backend === backend) return cached.heap;
  const internals = backend as unknown as Partial<WasmBackendInternals>;
  const usable =
    internals.wasm !== undefined &&
    typeof internals.wasm.cwrap === 'function' &&
    typeof internals.wasm.tfjs?.registerTensor === 'function' &&
    typeof internals.wasm.tfjs.disposeData === 'function' &&
    internals.dataIdMap !== undefined &&
    typeof internals.dataIdNextNumber === 'number' &&
    typeof internals.makeOutput === 'function' &&
    typeof internals.incRef === 'function';
  const heap = usable ? new WasmHeap(internals as WasmBackendInternals) : undefined;
  if (heap !== undefined) shareIdentity();
  cached = { backend, heap };
  return heap;
}

/** Replaces the wasm Identity kernel (a copy) with one that shares the input's memory. */
function shareIdentity(): void {
  const kernel = tf.getKernel('Identity', 'wasm');
  if (kernel === undefined || (kernel as { shared?: boolean }).shared === true) return;
  tf.unregisterKernel('Identity', 'wasm');
  const config: tf.KernelConfig & { shared: boolean } = {
    kernelName: 'Identity',
    backendName: 'wasm',
    shared: true,
    kernelFunc: ({ inputs, backend }) => {
      const x = (inputs as { x: tf.TensorInfo }).x;
      if (x.dtype === 'string') return kernel.kernelFunc({ inputs, backend, attrs: {} });
      (backend as unknown as WasmBackendInternals).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  };
  tf.registerKernel(config);
}

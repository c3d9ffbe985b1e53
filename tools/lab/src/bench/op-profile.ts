/**
 * Where a step's time goes, by op kind: `ddpm bench unet --profile`.
 *
 * tfjs's own profiler (`tf.profile`) runs every kernel through `profileKernel`; we wrap it to time
 * each call exclusively (a kernel that runs others, as a custom gradient's forward does, counts
 * only its own time), and wrap our own SIMD kernels and the XNNPACK GEMMs we call on heap views
 * (both run on the wasm heap outside tfjs's engine) the same way. Each call is filed under its phase (forward, backward, update) and name;
 * what no kernel accounts for (JavaScript between kernels: tape bookkeeping, shape checks,
 * allocation) is the `other` line. Convolutions also get their GFLOP/s, 2·N·Ho·Wo·Co·kh·kw·Ci over
 * their time, so each can be read against the forward convolution's own speed (our Winograd
 * convolutions too: the direct form's FLOPs over their time); so do the products.
 */
import { wasmHeap, wasmKernels } from '@ddpm/kernels';
import * as tf from '@tensorflow/tfjs-core';

import { round } from './timing';

export type Phase = 'forward' | 'backward' | 'update' | 'sample';

interface Entry {
  ms: number;
  calls: number;
  flops: number;
}

export interface OpProfileLine {
  readonly phase: Phase;
  readonly op: string;
  readonly ms: number;
  readonly share: number;
  readonly calls: number;
  /** Convolutions and GEMMs: their FLOPs over their own time. */
  readonly gflops?: number;
}

export interface OpProfile {
  readonly wallMs: number;
  readonly kernelsMs: number;
  /** Wall time no kernel accounts for: JavaScript between kernels. */
  readonly otherMs: number;
  readonly byPhase: Readonly<Record<string, number>>;
  readonly ops: readonly OpProfileLine[];
}

/** FLOPs of a convolution kernel call from its input, filter and output shapes (0 when unknown). */
function convFlops(
  name: string,
  inputShapes: readonly (readonly number[] | null)[],
  outputShape: readonly number[] | undefined,
): number {
  if (name !== 'Conv2D' && name !== 'FusedConv2D') return 0;
  const filter = inputShapes[1];
  if (!filter || filter.length !== 4 || !outputShape || outputShape.length !== 4) return 0;
  const [kh, kw, ci] = filter as [number, number, number, number];
  const [n, ho, wo, co] = outputShape as [number, number, number, number];
  return 2 * n * ho * wo * co * kh * kw * ci;
}

type Shaped = { shape: readonly number[] };

/**
 * FLOPs of our kernels that multiply, from their arguments (0 for the others). The Winograd
 * convolutions count the direct convolution's FLOPs, so their GFLOP/s reads against tfjs's conv2d.
 */
const KERNEL_FLOPS: Readonly<Record<string, (...args: Shaped[]) => number>> = {
  winogradConv: (x, u) => 2 * x.shape[0]! * x.shape[1]! * x.shape[2]! * x.shape[3]! * u.shape[2]! * 9,
  winogradFilterProducts: (x, dy) => 2 * x.shape[0]! * x.shape[1]! * x.shape[2]! * x.shape[3]! * dy.shape[3]! * 9,
  // directConv(x, filter, bias, stride, pad, out): out is [Ho, Wo], the output's size.
  directConv: (x, filter, ...rest) => {
    const [ho, wo] = rest[3] as unknown as readonly number[];
    return 2 * x.shape[0]! * ho! * wo! * filter.shape.reduce((p, d) => p * d, 1);
  },
  matMulTN: (a, b) => 2 * a.shape.reduce((p, d) => p * d, 1) * b.shape[b.shape.length - 1]!,
  batchMatMul: (a, b) => 2 * a.shape.reduce((p, d) => p * d, 1) * b.shape[2]!,
};

interface ProfilerLike {
  profileKernel(name: string, inputs: Record<string, tf.Tensor | null>, f: () => tf.Tensor[]): { outputs: tf.Tensor[] };
}

/** Times kernel calls exclusively, each filed under its name and the phase current when it ends. */
class OpRecorder {
  readonly entries = new Map<string, Entry>();
  // Time spent in children of the call in progress at each depth (subtracted from its own).
  private readonly stack: number[] = [];

  constructor(public phase: Phase) {}

  record<T>(name: string, flopsOf: (result: T) => number, f: () => T): T {
    this.stack.push(0);
    const started = performance.now();
    let flops = 0;
    try {
      const result = f();
      flops = flopsOf(result);
      return result;
    } finally {
      const elapsed = performance.now() - started;
      const children = this.stack.pop()!;
      if (this.stack.length > 0) this.stack[this.stack.length - 1]! += elapsed;
      const key = `${this.phase}\u0000${name}`;
      const entry = this.entries.get(key) ?? { ms: 0, calls: 0, flops: 0 };
      entry.ms += elapsed - children;
      entry.calls += 1;
      entry.flops += flops;
      this.entries.set(key, entry);
    }
  }
}

/** Records every tfjs kernel through its profiler's `profileKernel`; returns what puts it back. */
function wrapTfjsKernels(recorder: OpRecorder): () => void {
  const engine = tf.engine() as unknown as { profiler: ProfilerLike };
  const profiler = engine.profiler;
  const original = profiler.profileKernel.bind(profiler);
  profiler.profileKernel = function (name, inputs, f) {
    const shapes = Object.values(inputs).map((t) => (t ? t.shape : null));
    // Our filter gradient is a convolution whose "filter" is the output gradient (its taps span
    // the feature map): told apart from the 1×1 and 3×3 convolutions of the network by its size.
    const label = name === 'Conv2D' && (shapes[1]?.[0] ?? 0) > 3 ? 'Conv2D (filter gradient)' : name;
    return recorder.record(
      label,
      (r: { outputs: tf.Tensor[] }) => convFlops(name, shapes, r.outputs[0]?.shape),
      () => original(name, inputs, f),
    );
  };
  return () => {
    profiler.profileKernel = original;
  };
}

/** Records our SIMD kernels and the heap's GEMMs (outside tfjs's engine); returns what undoes each wrapper. */
function wrapOurKernels(recorder: OpRecorder): (() => void)[] {
  // Our SIMD kernels: wrap each method of the bound instance for the duration.
  const kernels = wasmKernels() as unknown as Record<string, unknown> | undefined;
  const restore: (() => void)[] = [];
  if (kernels) {
    const proto = Object.getPrototypeOf(kernels) as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const method = proto[name];
      if (name === 'constructor' || typeof method !== 'function') continue;
      const flops = KERNEL_FLOPS[name];
      kernels[name] = (...args: unknown[]) =>
        recorder.record(
          `ddpm:${name}`,
          () => (flops ? flops(...(args as Shaped[])) : 0),
          () => (method as (...a: unknown[]) => unknown).apply(kernels, args),
        );
      restore.push(() => delete kernels[name]);
    }
  }
  const heap = wasmHeap() as unknown as
    { gemmInto(a: { rows: number; cols: number }, b: { cols: number }, out: unknown): void } | undefined;
  if (heap) {
    const gemm = heap.gemmInto.bind(heap);
    heap.gemmInto = (a, b, out) =>
      recorder.record(
        'ddpm:gemm',
        () => 2 * a.rows * a.cols * b.cols,
        () => gemm(a, b, out),
      );
    restore.push(() => delete (heap as { gemmInto?: unknown }).gemmInto);
  }
  return restore;
}

/**
 * Profiles `run` (which calls `setPhase` as it moves from forward to backward to update) and
 * returns the time per (phase, op), largest first.
 */
export async function profileOps(
  run: (setPhase: (p: Phase) => void) => Promise<void>,
  initial: Phase,
): Promise<OpProfile> {
  const recorder = new OpRecorder(initial);
  const restoreTfjs = wrapTfjsKernels(recorder);
  const restore = wrapOurKernels(recorder);
  const started = performance.now();
  try {
    await tf.profile(() => run((p) => (recorder.phase = p)));
  } finally {
    restoreTfjs();
    for (const undo of restore) undo();
  }
  return summarize(recorder.entries, performance.now() - started);
}

/** The profile of `wallMs` from the entries by phase and op: each line's share of the wall time, largest first. */
function summarize(entries: ReadonlyMap<string, Entry>, wallMs: number): OpProfile {
  const kernelsMs = [...entries.values()].reduce((a, e) => a + e.ms, 0);
  const byPhase: Record<string, number> = {};
  const ops: OpProfileLine[] = [...entries.entries()]
    .map(([key, e]) => {
      const [p, op] = key.split('\u0000') as [Phase, string];
      byPhase[p] = (byPhase[p] ?? 0) + e.ms;
      return {
        phase: p,
        op,
        ms: round(e.ms, 1),
        share: round(e.ms / wallMs, 3),
        calls: e.calls,
        ...(e.flops > 0 ? { gflops: round(e.flops / e.ms / 1e6, 2) } : {}),
      };
    })
    .sort((a, b) => b.ms - a.ms);
  return {
    wallMs: round(wallMs, 1),
    kernelsMs: round(kernelsMs, 1),
    otherMs: round(wallMs - kernelsMs, 1),
    byPhase: Object.fromEntries(Object.entries(byPhase).map(([k, v]) => [k, round(v, 1)])),
    ops,
  };
}

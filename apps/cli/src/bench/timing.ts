/** Timing helpers for benchmarks: warm-up, repeats, median. */
export interface Timing {
  readonly medianMs: number;
  readonly minMs: number;
  readonly samplesMs: readonly number[];
}

export async function timeRepeated(repeats: number, fn: () => Promise<void> | void): Promise<Timing> {
  await fn(); // warm-up: kernel compilation, weight packing, allocator growth
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const sorted = [...samples].sort((a, b) => a - b);
  return { medianMs: sorted[Math.floor(sorted.length / 2)]!, minMs: sorted[0]!, samplesMs: samples };
}

export function gflops(flops: number, ms: number): number {
  return flops / ms / 1e6;
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

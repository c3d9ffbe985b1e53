/** Timing helpers for benchmarks: warm-up, interleaved repeats, median. */
export interface Timing {
  readonly medianMs: number;
  readonly minMs: number;
  readonly samplesMs: readonly number[];
}

type Task = () => Promise<void> | void;

async function timeOnce(fn: Task): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/**
 * Times several tasks in `rounds` rounds, each round running every task in turn (`perRound[name]`
 * times, default once), after one warm-up call of each (kernel compilation, weight packing,
 * allocator growth). Interleaving puts every task under the same machine load, which matters
 * for ratios on shared machines. A task repeated within a round counts its fastest run there
 * (its first run after another task's can be slowed by a cold cache and fresh heap pages); each
 * task's figure is the median over rounds.
 */
export async function timeInterleaved<K extends string>(
  rounds: number,
  tasks: Record<K, Task>,
  perRound: Partial<Record<K, number>> = {},
): Promise<Record<K, Timing>> {
  const names = Object.keys(tasks) as K[];
  for (const name of names) await tasks[name]();
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    for (const name of names) {
      const times: number[] = [];
      for (let i = 0; i < (perRound[name] ?? 1); i++) times.push(await timeOnce(tasks[name]));
      samples[name].push(Math.min(...times));
    }
  }
  const result = {} as Record<K, Timing>;
  for (const n of names)
    result[n] = { medianMs: median(samples[n]), minMs: Math.min(...samples[n]), samplesMs: samples[n] };
  return result;
}

export function gflops(flops: number, ms: number): number {
  return flops / ms / 1e6;
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

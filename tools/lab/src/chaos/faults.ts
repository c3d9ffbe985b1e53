/**
 * The faults of a chaos run, and the seeded schedule that draws them. Each kind says what it
 * needs (a live worker, a job process, a host whose link is not already faulted) and how long it
 * lasts; the schedule draws the times, the kinds, the durations and which of the candidates each
 * fault lands on from one seeded generator, so the same seed gives the same sequence of draws
 * (what a draw lands on depends on what is running at that moment).
 */
import { Rng } from '@ddpm/core';

export const FAULT_KINDS = [
  /** A worker process SIGKILLed; its supervisor starts another 2 s later (as a pod restarts). */
  'worker-sigkill',
  /** A worker process SIGSTOPped for 2–15 s (its job process runs on). */
  'worker-sigstop',
  /** A job process (a single job's or a rank's) SIGKILLed. */
  'child-sigkill',
  /** A job process SIGSTOPped for 2–12 s. */
  'child-sigstop',
  /** The queue Redis SIGKILLed and started again (AOF, fsync always) 1–6 s later. */
  'queue-redis-restart',
  /** A host's data Redis SIGKILLed and started again (empty) 1–5 s later. */
  'data-redis-restart',
  /** A host's link down for 2–12 s. */
  'link-down',
  /** A host's link shaped to 2 Mbit/s for 10–30 s. */
  'slow-link',
  /** The object store read-only for a host's workers and their job processes for 3–20 s. */
  'store-readonly',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** How long each kind lasts, seconds: [least, most]. Zero: at once (a SIGKILL). */
export const FAULT_SECONDS: Record<FaultKind, readonly [number, number]> = {
  'worker-sigkill': [0, 0],
  'worker-sigstop': [2, 15],
  'child-sigkill': [0, 0],
  'child-sigstop': [2, 12],
  'queue-redis-restart': [1, 6],
  'data-redis-restart': [1, 5],
  'link-down': [2, 12],
  'slow-link': [10, 30],
  'store-readonly': [3, 20],
};

/** One fault as drawn: when (seconds into the run), what, for how long, and a draw to pick its target with. */
export interface FaultDraw {
  readonly at: number;
  readonly kind: FaultKind;
  readonly seconds: number;
  /** In [0, 1): which of the candidates (sorted) the fault lands on. */
  readonly pick: number;
}

/**
 * The faults of a run of `seconds`, one every `meanSeconds` on average (exponential gaps, at least
 * 2 s), the kinds in turn from a seeded shuffle of all of them (so every kind comes up once in each
 * round of nine), their durations uniform in the kind's range.
 */
export function drawFaults(seed: number, seconds: number, meanSeconds: number): FaultDraw[] {
  const rng = Rng.fromSeed(seed);
  const out: FaultDraw[] = [];
  let round: FaultKind[] = [];
  for (let at = 0; ;) {
    at += Math.max(2, -Math.log(1 - rng.uniform()) * meanSeconds);
    if (at >= seconds) return out;
    if (round.length === 0) round = Array.from(rng.permutation(FAULT_KINDS.length), (i) => FAULT_KINDS[i]!);
    const kind = round.pop()!;
    const [least, most] = FAULT_SECONDS[kind];
    out.push({ at, kind, seconds: least + (most - least) * rng.uniform(), pick: rng.uniform() });
  }
}

/** The candidate a draw lands on (candidates in a stable order), or undefined when there is none. */
export function pickOf<T>(candidates: readonly T[], pick: number): T | undefined {
  return candidates.length === 0 ? undefined : candidates[Math.floor(pick * candidates.length)];
}

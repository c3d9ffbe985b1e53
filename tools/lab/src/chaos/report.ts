/**
 * The chaos run's report: what was injected, what the jobs did, what the faults cost (steps and
 * seconds redone, group restarts) and anything lost; `ok` when nothing was.
 */
import { FAULT_KINDS } from './faults';
import { type Injected } from './injectors';
import { type JobResultView, type Tracked, isFinished } from './job-stream';
import { type Leftovers } from './leftovers';
import { type MemorySummary } from './memory';

export interface ChaosReport {
  readonly seed: number;
  readonly minutes: number;
  readonly hosts: number;
  readonly linkMbit: number;
  readonly faults: {
    readonly total: number;
    readonly kinds: number;
    readonly byKind: Record<string, number>;
    /** Draws that found no target (no job process running at that moment, say). */
    readonly noTarget: number;
  };
  readonly jobs: {
    readonly total: number;
    readonly byKind: Record<string, number>;
    readonly byOutcome: Record<string, number>;
    readonly cancelsAccepted: number;
  };
  readonly cost: {
    readonly redoneSteps: number;
    readonly redoneSeconds: number;
    readonly groupRestarts: number;
    readonly retriedAttempts: number;
  };
  readonly lost: readonly { id: string; why: string }[];
  readonly checkpoints: { readonly compared: number; readonly differing: readonly string[] };
  readonly leftovers: Leftovers;
  /** Leftovers planted on purpose that the checks did not report (empty: the checks work). */
  readonly leftoverChecksMissed: readonly string[];
  readonly memory: MemorySummary;
  readonly wallSeconds: number;
  readonly ok: boolean;
  readonly injected: readonly Injected[];
}

/** Everything the report is made of. */
export interface ReportInputs {
  readonly seed: number;
  readonly minutes: number;
  readonly hosts: number;
  readonly linkMbit: number;
  /** When the run began (ms since the epoch). */
  readonly started: number;
  /** Every job: the stream's and the fault-free references. */
  readonly jobs: readonly Tracked[];
  readonly injected: readonly Injected[];
  readonly noTarget: number;
  readonly differing: string[];
  readonly compared: number;
  readonly leftovers: Leftovers;
  readonly selfCheck: string[];
  readonly memory: MemorySummary;
}

function count<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}

/** The jobs that did not end as asked (completed, or cancelled when a cancel was accepted), and why. */
function lostJobs(jobs: readonly Tracked[]): { id: string; why: string }[] {
  const lost: { id: string; why: string }[] = [];
  for (const j of jobs.filter((r) => !r.reference)) {
    const status = j.result?.status;
    if (!isFinished(j)) lost.push({ id: j.id, why: `still ${j.state ?? 'unknown'} at the end` });
    else if (j.state === 'failed') lost.push({ id: j.id, why: `failed: ${j.error ?? '?'}` });
    else if (status === 'cancelled' && !j.cancelAccepted)
      lost.push({ id: j.id, why: 'cancelled, though no cancel was asked for' });
    else if (status !== 'cancelled' && status !== 'completed') lost.push({ id: j.id, why: `ended as ${status}` });
  }
  for (const j of jobs.filter((r) => r.reference && r.state !== 'completed'))
    lost.push({ id: j.id, why: `the fault-free reference ended ${j.state ?? 'unknown'}: ${j.error ?? ''}` });
  return lost;
}

export function buildReport(r: ReportInputs): ChaosReport {
  const { differing, compared, leftovers, selfCheck, memory } = r;
  const stream = r.jobs.filter((j) => !j.reference);
  const lost = lostJobs(r.jobs);
  const results = stream.map((j) => j.result).filter((x): x is JobResultView => x !== undefined);
  const byKind = count(r.injected, (f) => f.kind);
  const leftoverCount = Object.values(leftovers).reduce((n, l) => n + l.length, 0);
  const report: ChaosReport = {
    seed: r.seed,
    minutes: r.minutes,
    hosts: r.hosts,
    linkMbit: r.linkMbit,
    faults: {
      total: r.injected.length,
      kinds: FAULT_KINDS.filter((k) => (byKind[k] ?? 0) > 0).length,
      byKind,
      noTarget: r.noTarget,
    },
    jobs: {
      total: stream.length,
      byKind: count(stream, (j) => (j.config !== undefined ? `train ${j.config}` : j.kind)),
      byOutcome: count(stream, (j) => (j.state === 'failed' ? 'failed' : (j.result?.status ?? j.state ?? 'unknown'))),
      cancelsAccepted: stream.filter((j) => j.cancelAccepted).length,
    },
    cost: {
      redoneSteps: results.reduce((n, x) => n + (x.resumedFrom?.redone?.steps ?? 0), 0),
      redoneSeconds: Math.round(results.reduce((n, x) => n + (x.resumedFrom?.redone?.seconds ?? 0), 0) * 10) / 10,
      groupRestarts: results.reduce((n, x) => n + (x.group?.restarts ?? 0), 0),
      retriedAttempts: stream.reduce((n, j) => n + Math.max(0, (j.attempts ?? 1) - 1), 0),
    },
    lost,
    checkpoints: { compared, differing },
    leftovers,
    leftoverChecksMissed: selfCheck,
    memory,
    wallSeconds: Math.round((Date.now() - r.started) / 1000),
    ok:
      selfCheck.length === 0 &&
      lost.length === 0 &&
      differing.length === 0 &&
      leftoverCount === 0 &&
      Object.values(memory).every((m) => m.flat),
    injected: r.injected,
  };
  return report;
}

/**
 * `ddpm bench cluster`: the all-reduce across simulated hosts (sim/hosts.ts: network namespaces
 * joined by shaped links, a data Redis on every host and the hub in a namespace of its own), on
 * the hub or on the ranks' own data servers, measured against what the links allow:
 *
 * - `linkMBps`: what one link actually carries, measured in the same run by a raw SET and GET of
 *   the same size between two hosts (tbf's nominal rate is not what Redis over TCP gets);
 * - `ringBoundMs`: 2(N − 1)/N · S at that rate, what a bandwidth-optimal all-reduce (NCCL's ring)
 *   needs per rank; `overBound` = the all-reduce's median over it;
 * - the bytes each host sent and received per all-reduce, from the kernel's counters of its link
 *   (not from our own accounting), and the hub's.
 *
 * `--sweep` runs 2, 4 and 8 hosts on both planes at two sizes and fits a latency–bandwidth model
 * per plane (t = 2(N − 1) · α + β · bytes on the busiest link), then projects the paper's CIFAR-10
 * model onto larger clusters from it: a projection, labelled as such.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import { openGeneration } from '@ddpm/allreduce';
import { Redis } from 'ioredis';

import { SimulatedHosts } from '../sim/hosts';
import { ranks } from './group-bench';
import { median, round } from './timing';

export type ClusterPlane = 'hub' | 'ranks';

export interface ClusterBenchOptions {
  readonly hosts: number;
  readonly ranksPerHost: number;
  readonly linkMbit: number;
  /** Values of one all-reduce, MB (10⁶ bytes, fp32). */
  readonly mb: number;
  readonly plane: ClusterPlane;
  readonly rounds: number;
  /** tbf's queue, ms (default 50) and burst, kB (default: 4 ms of the rate, at least 64). */
  readonly queueMs?: number;
  readonly burstKb?: number;
}

export interface ClusterResult {
  readonly hosts: number;
  readonly ranksPerHost: number;
  readonly worldSize: number;
  readonly linkMbit: number;
  readonly mb: number;
  /** The plane the ranks agreed on (the one asked for, unless the ranks could not use it). */
  readonly plane: string;
  readonly allreduceMs: number;
  readonly samplesMs: readonly number[];
  readonly linkMBps: number;
  readonly ringBoundMs: number;
  readonly overBound: number;
  /** What one link carries each way while it carries as much the other way, MB/s (NaN with one host). */
  readonly duplexMBps: number;
  /** The ring bound at `duplexMBps`, and the all-reduce over it. */
  readonly duplexBoundMs: number;
  readonly overDuplexBound: number;
  /** Per all-reduce, medians over the rounds, MB: each host's link and the hub's. */
  readonly perHost: readonly { readonly host: number; readonly sentMB: number; readonly receivedMB: number }[];
  readonly hub: { readonly sentMB: number; readonly receivedMB: number };
  /** 2(N − 1)/N · S · ranksPerHost: what each host's link carries each way in a bandwidth-optimal all-reduce. */
  readonly optimalPerHostMB: number;
  /** The most bytes one link carried in one direction, per all-reduce, MB (the model's abscissa). */
  readonly busiestLinkMB: number;
}

const MB = 1e6;

/** One configuration on fresh simulated hosts (created and removed here). */
export async function benchCluster(options: ClusterBenchOptions): Promise<ClusterResult> {
  const { hosts, ranksPerHost: k, plane, rounds } = options;
  const n = hosts * k;
  if (n < 2) throw new Error('the all-reduce needs at least 2 ranks (--hosts × --ranks-per-host)');
  const sim = await SimulatedHosts.create({
    hosts,
    linkMbit: options.linkMbit,
    ...(options.queueMs !== undefined ? { queueMs: options.queueMs } : {}),
    ...(options.burstKb !== undefined ? { burstKb: options.burstKb } : {}),
  });
  const hub = new Redis(sim.control.redisUrl, { maxRetriesPerRequest: 2 });
  const namespace = `bench-cluster-${randomBytes(4).toString('hex')}`;
  let group: RankGroup | undefined;
  try {
    await openGeneration(hub, namespace, 3_600_000);
    const hostOf = (rank: number): number => Math.floor(rank / k);
    group = await ranks(n, sim.control.redisUrl, namespace, {
      transport: 'fp32',
      // Each host has a shared-memory folder of its own: ranks on different hosts must not agree on one.
      sharedMemoryDir: '/dev/shm',
      ...(plane === 'ranks' ? { ownDataUrl: (rank: number) => sim.hosts[hostOf(rank)]!.dataRedisUrl } : {}),
      launch: (rank, script): ChildProcess =>
        sim.spawn(hostOf(rank), [process.execPath, script], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          serialization: 'advanced',
        }),
    });
    const bytes = Math.round((options.mb * MB) / 4) * 4;
    const links = await measureLink(group, sim, options, bytes);
    const measured = await timeAllReduces(group, sim, n, bytes, rounds);
    return clusterResult(options, group.plane, bytes, links, measured);
  } finally {
    await group?.close().catch(() => undefined);
    hub.disconnect();
    await sim.destroy();
  }
}

type RankGroup = Awaited<ReturnType<typeof ranks>>;

/** Bytes a host's link (or the hub's) sent and received. */
interface Traffic {
  sent: number;
  received: number;
}

/** What one link carries, MB/s: alone (`linkMBps`) and each way with both directions loaded (`duplexMBps`, NaN with one host). */
async function measureLink(
  g: RankGroup,
  sim: SimulatedHosts,
  options: ClusterBenchOptions,
  bytes: number,
): Promise<{ linkMBps: number; duplexMBps: number }> {
  const { hosts, ranksPerHost: k, rounds } = options;
  // One link's rate: rank 0 (host 0) to host 1's data server (or the hub with one host).
  const target = hosts > 1 ? sim.hosts[1]!.dataRedisUrl : sim.control.redisUrl;
  const rates: number[] = [];
  for (let r = 0; r < Math.max(2, rounds); r++) {
    const raw = await g.one(0, { cmd: 'raw', url: target, bytes });
    if (raw.cmd === 'raw') rates.push((2 * bytes) / MB / ((raw.setMs + raw.getMs) / 1000));
  }
  const linkMBps = median(rates);
  // Both directions at once (host 0 to host 1 and host 1 to host 0, as in an all-reduce, where
  // every link carries data each way and each direction's acknowledgements queue behind the
  // other's data): what a link carries each way under that load.
  const duplex: number[] = [];
  if (hosts > 1) {
    for (let r = 0; r < Math.max(2, rounds); r++) {
      const both = await Promise.all([
        g.one(0, { cmd: 'raw', url: sim.hosts[1]!.dataRedisUrl, bytes }),
        g.one(k, { cmd: 'raw', url: sim.hosts[0]!.dataRedisUrl, bytes }),
      ]);
      for (const raw of both) if (raw.cmd === 'raw') duplex.push((2 * bytes) / MB / ((raw.setMs + raw.getMs) / 1000));
    }
  }
  const duplexMBps = duplex.length > 0 ? median(duplex) : Number.NaN;
  return { linkMBps, duplexMBps };
}

/** The hosts, and each measured all-reduce's time (its slowest rank's, ms) and the bytes each link carried during it, by the kernel's counters. */
async function timeAllReduces(
  g: RankGroup,
  sim: SimulatedHosts,
  n: number,
  bytes: number,
  rounds: number,
): Promise<{ hosts: number[]; samples: number[]; traffic: { hosts: Traffic[]; hub: Traffic }[] }> {
  const samples: number[] = [];
  const traffic: { hosts: Traffic[]; hub: Traffic }[] = [];
  // One warm-up round (connections, buffers), then the measured ones.
  for (let r = 0; r <= rounds; r++) {
    const before = { hosts: sim.hosts.map((h) => sim.counters(h.index)), hub: sim.counters('control') };
    const replies = await g.all(() => ({ cmd: 'allreduce', step: r, values: bytes / 4, fill: 1, expect: n }));
    const after = { hosts: sim.hosts.map((h) => sim.counters(h.index)), hub: sim.counters('control') };
    if (r === 0) continue;
    samples.push(Math.max(...replies.map((m) => (m.cmd === 'done' ? m.ms : Number.NaN))));
    traffic.push({
      hosts: after.hosts.map((a, i) => ({
        sent: a.sent - before.hosts[i]!.sent,
        received: a.received - before.hosts[i]!.received,
      })),
      hub: { sent: after.hub.sent - before.hub.sent, received: after.hub.received - before.hub.received },
    });
  }
  return { hosts: sim.hosts.map((h) => h.index), samples, traffic };
}

/** The configuration's result: the median all-reduce against the bounds the measured link rates set, and each link's median bytes. */
function clusterResult(
  options: ClusterBenchOptions,
  plane: string,
  bytes: number,
  links: { linkMBps: number; duplexMBps: number },
  measured: {
    hosts: readonly number[];
    samples: readonly number[];
    traffic: readonly { hosts: readonly Traffic[]; hub: Traffic }[];
  },
): ClusterResult {
  const { hosts, ranksPerHost: k, linkMbit, mb } = options;
  const n = hosts * k;
  const { linkMBps, duplexMBps } = links;
  const { samples, traffic } = measured;
  const allreduceMs = median(samples);
  const ringBoundMs = ((2 * (n - 1)) / n) * (bytes / MB / linkMBps) * 1000;
  const duplexBoundMs = ((2 * (n - 1)) / n) * (bytes / MB / duplexMBps) * 1000;
  const perHost = measured.hosts.map((h) => ({
    host: h,
    sentMB: round(median(traffic.map((t) => t.hosts[h]!.sent)) / MB, 3),
    receivedMB: round(median(traffic.map((t) => t.hosts[h]!.received)) / MB, 3),
  }));
  const hubTraffic = {
    sentMB: round(median(traffic.map((t) => t.hub.sent)) / MB, 3),
    receivedMB: round(median(traffic.map((t) => t.hub.received)) / MB, 3),
  };
  const busiestLinkMB = Math.max(
    hubTraffic.sentMB,
    hubTraffic.receivedMB,
    ...perHost.map((p) => Math.max(p.sentMB, p.receivedMB)),
  );
  return {
    hosts,
    ranksPerHost: k,
    worldSize: n,
    linkMbit,
    mb,
    plane,
    allreduceMs: round(allreduceMs, 1),
    samplesMs: samples.map((s) => round(s, 1)),
    linkMBps: round(linkMBps, 2),
    ringBoundMs: round(ringBoundMs, 1),
    overBound: round(allreduceMs / ringBoundMs, 3),
    duplexMBps: round(duplexMBps, 2),
    duplexBoundMs: round(duplexBoundMs, 1),
    overDuplexBound: round(allreduceMs / duplexBoundMs, 3),
    perHost,
    hub: hubTraffic,
    optimalPerHostMB: round((((2 * (n - 1)) / n) * bytes * k) / MB, 3),
    busiestLinkMB: round(busiestLinkMB, 3),
  };
}

/**
 * The cost model of an all-reduce of N ranks, t = 2(N − 1) · α + β · B, fitted by least squares to
 * (N, B, t) points: each rank exchanges with N − 1 peers in each of two phases (α: the latency of
 * one such exchange), and B is the most bytes one link carried one way (β: time per byte on it).
 * The form of the usual model of a reduce-scatter and all-gather (Thakur, Rabenseifner & Gropp
 * 2005), with B measured rather than derived. Also each point's residual, the fit's own check.
 */
export function fitCostModel(points: readonly { n: number; mb: number; ms: number }[]): {
  alphaMs: number;
  betaMsPerMB: number;
  rateMBps: number;
  residuals: { n: number; mb: number; ms: number; modelMs: number; residual: number }[];
} {
  let s11 = 0;
  let s12 = 0;
  let s22 = 0;
  let s1t = 0;
  let s2t = 0;
  for (const p of points) {
    const x1 = 2 * (p.n - 1);
    s11 += x1 * x1;
    s12 += x1 * p.mb;
    s22 += p.mb * p.mb;
    s1t += x1 * p.ms;
    s2t += p.mb * p.ms;
  }
  const det = s11 * s22 - s12 * s12;
  const alpha = det !== 0 ? (s22 * s1t - s12 * s2t) / det : 0;
  const beta = det !== 0 ? (s11 * s2t - s12 * s1t) / det : s2t / s22;
  return {
    alphaMs: round(alpha, 2),
    betaMsPerMB: round(beta, 3),
    rateMBps: round(1000 / beta, 2),
    residuals: points.map((p) => {
      const model = 2 * (p.n - 1) * alpha + beta * p.mb;
      return { n: p.n, mb: p.mb, ms: p.ms, modelMs: round(model, 1), residual: round(p.ms / model - 1, 3) };
    }),
  };
}

/** The paper's CIFAR-10 U-Net: 35,746,307 parameters, fp32 gradients. */
const CIFAR10_BYTES = 35_746_307 * 4;

/**
 * A projection, not a measurement: the CIFAR-10 model's all-reduce on G GPUs (one a host) with
 * links of L Gbit/s, from each plane's fitted model: 2(G − 1) · α, plus the busiest link's bytes
 * (2(G − 1) · S out of the hub; 2(G − 1)/G · S each way on every host's link with the ranks' own
 * servers) at the link rate times the efficiency fitted here (the fitted rate over the measured
 * link rate), or each Redis server's bytes at the rate one Redis moved on this machine
 * (`serverMBps`), whichever is slower: at 25 Gbit/s and more, a single-threaded Redis is the limit.
 * The α fitted on simulated links includes their queues (tens of milliseconds under load, where a
 * data-centre switch queues microseconds), so each plane is given twice: with α as fitted (an
 * upper bound) and with the bandwidth and server terms alone (a lower bound).
 */
export function projectCifar10(
  fits: Record<ClusterPlane, { alphaMs: number; rateMBps: number }>,
  linkMBps: number,
  serverMBps: number,
): {
  gpus: number;
  linkGbit: number;
  hubMs: number;
  hubBandwidthMs: number;
  ranksMs: number;
  ranksBandwidthMs: number;
  ringBoundMs: number;
}[] {
  const rows = [];
  const S = CIFAR10_BYTES / MB;
  for (const linkGbit of [25, 100]) {
    for (const gpus of [8, 32, 128]) {
      const link = (linkGbit * 1000) / 8;
      const bandwidth = (plane: ClusterPlane, linkBytes: number, serverBytes: number): number => {
        const efficiency = Math.min(1, fits[plane].rateMBps / linkMBps);
        return Math.max((linkBytes / (efficiency * link)) * 1000, (serverBytes / serverMBps) * 1000);
      };
      // The hub: N·S in and 2(N − 1)·S out through one server.
      const hub = bandwidth('hub', 2 * (gpus - 1) * S, gpus * S + 2 * (gpus - 1) * S);
      // Every server: its chunk's contributions and sum in (about S), 2(N − 1)/N·S out.
      const ranks = bandwidth('ranks', ((2 * (gpus - 1)) / gpus) * S, S + ((2 * (gpus - 1)) / gpus) * S);
      rows.push({
        gpus,
        linkGbit,
        hubMs: round(2 * (gpus - 1) * fits.hub.alphaMs + hub, 0),
        hubBandwidthMs: round(hub, 0),
        ranksMs: round(2 * (gpus - 1) * fits.ranks.alphaMs + ranks, 0),
        ranksBandwidthMs: round(ranks, 0),
        ringBoundMs: round(((((2 * (gpus - 1)) / gpus) * S) / link) * 1000, 0),
      });
    }
  }
  return rows;
}

export interface ClusterCommandOptions extends ClusterBenchOptions {
  readonly sweep: boolean;
  /** Progress lines (each configuration as it finishes). */
  readonly onLine?: (line: string) => void;
}

/** `ddpm bench cluster`: one configuration, or `--sweep` (2, 4, 8 hosts; both planes; S and S/4) with the fit and the projection. */
export async function runClusterBench(o: ClusterCommandOptions): Promise<Record<string, unknown>> {
  if (!o.sweep) return { benchmark: 'cluster', ...(await benchCluster(o)) };
  const rows: ClusterResult[] = [];
  for (const plane of ['ranks', 'hub'] as const) {
    for (const mb of [o.mb / 4, o.mb]) {
      for (const hosts of [2, 4, 8]) {
        const r = await benchCluster({ ...o, hosts, ranksPerHost: 1, mb, plane });
        rows.push(r);
        o.onLine?.(
          `${plane} ${hosts} hosts ${mb} MB: ${r.allreduceMs} ms, ${r.overBound}x the ring bound, busiest link ${r.busiestLinkMB} MB`,
        );
      }
    }
  }
  const fitOf = (plane: ClusterPlane): ReturnType<typeof fitCostModel> =>
    fitCostModel(
      rows.filter((r) => r.plane === plane).map((r) => ({ n: r.worldSize, mb: r.busiestLinkMB, ms: r.allreduceMs })),
    );
  const fits = { ranks: fitOf('ranks'), hub: fitOf('hub') };
  const linkMBps = median(rows.map((r) => r.linkMBps));
  const serverMBps = await loopbackServerRate();
  return {
    benchmark: 'cluster',
    sweep: true,
    linkMbit: o.linkMbit,
    linkMBps: round(linkMBps, 2),
    rows,
    fits,
    projection: {
      note: "a projection from the fitted model, not a measurement: the paper's CIFAR-10 model (143 MB of fp32 gradients), one GPU a host; the busiest link's bytes at 25 and 100 Gbit/s times the efficiency fitted here, or every Redis server's bytes at the rate one Redis moved on this machine, whichever is slower (*BandwidthMs, a lower bound), plus 2(G - 1) exchanges at the fitted latency, which includes the simulated links' queues (hubMs, ranksMs: an upper bound)",
      serverMBps: round(serverMBps, 1),
      rows: projectCifar10(fits, linkMBps, serverMBps),
    },
  };
}

/** One Redis server's raw SET + GET rate on this machine's loopback (the machine's Redis), MB/s. */
async function loopbackServerRate(url = 'redis://127.0.0.1:6379'): Promise<number> {
  const { BulkConnection, bulkTarget } = await import('@ddpm/allreduce');
  const target = bulkTarget(url);
  if (target === undefined) return Number.NaN;
  const lean = new BulkConnection(target);
  try {
    const bytes = 64 * MB;
    const value = Buffer.alloc(bytes, 3);
    const landing = Buffer.allocUnsafeSlow(bytes);
    const rates: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = process.hrtime.bigint();
      await lean.command(['SET', `bench-cluster-raw-${process.pid}`, value]);
      await lean.command(['GETDEL', `bench-cluster-raw-${process.pid}`], () => landing);
      rates.push((2 * bytes) / MB / (Number(process.hrtime.bigint() - started) / 1e9));
    }
    return median(rates);
  } finally {
    lean.close();
  }
}

/**
 * The cluster benchmark's arithmetic: the cost model's fit recovers α and β from points that obey
 * it (and reports residuals that say when points do not), and the projection grows like N through
 * a hub and stays flat between the ranks' own servers. Then one small run on simulated hosts
 * (root only): the ranks agree on their own servers and each host's link carries 2(N − 1)/N · S
 * each way by the kernel's counters.
 */
import { simulationUnavailable } from '../sim/hosts';
import { benchCluster, fitCostModel, projectCifar10 } from './cluster-bench';

jest.setTimeout(120_000);

describe('fitCostModel', () => {
  it('recovers the latency and the time per byte of points that follow t = 2(N − 1)·α + β·B', () => {
    const alpha = 7;
    const beta = 42;
    const points = [2, 4, 8].flatMap((n) => [8, 32].map((s) => ({ n, mb: s * ((n - 1) / n) * 2 })));
    const fit = fitCostModel(points.map((p) => ({ ...p, ms: 2 * (p.n - 1) * alpha + beta * p.mb })));
    expect(fit.alphaMs).toBeCloseTo(alpha, 6);
    expect(fit.betaMsPerMB).toBeCloseTo(beta, 6);
    expect(fit.rateMBps).toBeCloseTo(1000 / beta, 2);
    for (const r of fit.residuals) expect(Math.abs(r.residual)).toBeLessThan(1e-9);
  });

  it('says, point by point, where the model misses', () => {
    const points = [
      { n: 2, mb: 10, ms: 500 },
      { n: 4, mb: 15, ms: 600 },
      { n: 8, mb: 17.5, ms: 2000 },
    ];
    const fit = fitCostModel(points);
    expect(fit.residuals.map((r) => r.n)).toEqual([2, 4, 8]);
    expect(Math.max(...fit.residuals.map((r) => Math.abs(r.residual)))).toBeGreaterThan(0.05);
  });
});

describe('projectCifar10', () => {
  it('grows like the group through a hub, stays flat between the ranks’ own servers, never beats the ring bound', () => {
    const fit = { alphaMs: 1, rateMBps: 20 };
    const rows = projectCifar10({ hub: fit, ranks: fit }, 25, 1000);
    expect(rows.map((r) => [r.gpus, r.linkGbit])).toEqual([
      [8, 25],
      [32, 25],
      [128, 25],
      [8, 100],
      [32, 100],
      [128, 100],
    ]);
    const at25 = rows.filter((r) => r.linkGbit === 25);
    // 16× the GPUs: the hub's time grows about 16×; the ranks' by their latency term only.
    expect(at25[2]!.hubMs / at25[0]!.hubMs).toBeGreaterThan(12);
    expect(at25[2]!.ranksMs - at25[0]!.ranksMs).toBeLessThan(2 * 120 * fit.alphaMs + 50);
    for (const r of rows) {
      expect(r.ranksBandwidthMs).toBeGreaterThanOrEqual(r.ringBoundMs);
      expect(r.ranksMs).toBeGreaterThan(r.ranksBandwidthMs);
      expect(r.hubMs).toBeGreaterThan(r.ranksMs);
      expect(r.hubBandwidthMs).toBeGreaterThan(r.ranksBandwidthMs);
    }
  });
});

const unavailable = simulationUnavailable();
if (unavailable !== undefined) console.warn(`SKIPPED: ddpm bench cluster on simulated hosts: ${unavailable}`);
(unavailable === undefined ? it : it.skip)(
  'benchCluster: 3 hosts agree on their own servers; each link carries 2(N − 1)/N · S each way',
  async () => {
    const r = await benchCluster({ hosts: 3, ranksPerHost: 1, linkMbit: 400, mb: 2, plane: 'ranks', rounds: 2 });
    expect(r).toMatchObject({ hosts: 3, worldSize: 3, plane: 'ranks', optimalPerHostMB: 2.667 });
    expect(r.samplesMs).toHaveLength(2);
    expect(r.linkMBps).toBeGreaterThan(10);
    expect(r.overBound).toBeCloseTo(r.allreduceMs / r.ringBoundMs, 2);
    for (const h of r.perHost) {
      expect(h.sentMB / r.optimalPerHostMB).toBeGreaterThan(0.99);
      expect(h.sentMB / r.optimalPerHostMB).toBeLessThan(1.1);
      expect(h.receivedMB / r.optimalPerHostMB).toBeGreaterThan(0.99);
      expect(h.receivedMB / r.optimalPerHostMB).toBeLessThan(1.1);
    }
    // The hub carried signals only.
    expect(r.hub.sentMB).toBeLessThan(0.1);
  },
);

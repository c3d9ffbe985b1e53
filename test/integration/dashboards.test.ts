/**
 * The Grafana dashboard against a running service: a real Prometheus (the Debian package) scrapes
 * the API and two workers through the local stack's own scrape configuration
 * (infra/docker/prometheus/prometheus.yml, with this machine's addresses in place of the stack's
 * service names), a short data-parallel training job with an evaluation runs, and then every
 * query of the generated dashboard is evaluated: each must parse, name only metrics the API and
 * workers declare, and return data wherever the service has emitted its metrics by then. Skipped,
 * saying so, without the binary.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { findOnPath, freePort } from '@ddpm/lab';
import { ROWS, dashboardJson } from '@ddpm/dashboards';
import { parse, stringify } from 'yaml';

import { ROOT, type Stack, startStack, tinyTrain, until } from './service-support';

jest.setTimeout(300_000);

interface ScrapeConfig {
  job_name: string;
  static_configs?: { targets: string[] }[];
  dns_sd_configs?: unknown[];
  [key: string]: unknown;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** Metric families a /metrics page declares (TYPE lines), and those with at least one sample. */
function families(text: string): { declared: Map<string, string>; emitted: Set<string> } {
  const declared = new Map<string, string>();
  const emitted = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) declared.set(type[1]!, type[2]!);
    else if (line && !line.startsWith('#')) emitted.add(/^[^{ ]+/.exec(line)![0]);
  }
  return { declared, emitted };
}

/** The metric names a PromQL expression reads (ours, BullMQ's, process and DCGM series). */
function metricNames(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:ddpm|bullmq|process|nodejs|DCGM)_[A-Za-z0-9_]+\b/g) ?? [])];
}

let stack: Stack | undefined;
let prometheus: ChildProcess | undefined;
afterAll(async () => {
  prometheus?.kill('SIGKILL');
  await stack?.close();
});

test('every dashboard query names real metrics and returns data once the service emits them', async () => {
  const binary = findOnPath('prometheus');
  if (!binary) {
    console.warn('SKIPPED: no prometheus binary (apt-get install prometheus)');
    return;
  }
  stack = await startStack({ workers: 2 });
  const api = new URL(await stack.app.listen({ port: 0, host: '127.0.0.1' })).host;
  const workers = stack.workers.map((w) => `127.0.0.1:${w.metricsPort!}`);

  // The stack's scrape configuration, its targets pointed here (and scraping every second).
  const stackConfig = parse(
    await fs.readFile(path.join(ROOT, 'infra', 'docker', 'prometheus', 'prometheus.yml'), 'utf8'),
  ) as {
    global: Record<string, string>;
    scrape_configs: ScrapeConfig[];
  };
  const here: Record<string, string[]> = { 'ddpm-api': [api], 'ddpm-worker': workers };
  expect(Object.keys(here).every((job) => stackConfig.scrape_configs.some((c) => c.job_name === job))).toBe(true);
  const scrapeConfigs = stackConfig.scrape_configs.map((c) => {
    if (!(c.job_name in here)) return c;
    const { dns_sd_configs: _dns, static_configs: _static, ...rest } = c;
    return { ...rest, static_configs: [{ targets: here[c.job_name] }] };
  });
  const dir = path.join(stack.storeDir, 'prometheus');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(
    path.join(dir, 'prometheus.yml'),
    stringify({ global: { ...stackConfig.global, scrape_interval: '1s' }, scrape_configs: scrapeConfigs }),
  );
  const port = await freePort();
  prometheus = spawn(
    binary,
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    {
      stdio: 'ignore',
    },
  );
  const base = `http://127.0.0.1:${port}`;
  await until('prometheus to be ready', async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
  const query = async (q: string): Promise<{ status: string; error?: string; data?: { result: Sample[] } }> =>
    (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`)).json() as Promise<{
      status: string;
      error?: string;
      data?: { result: Sample[] };
    }>;
  await until('every target up', async () => {
    const up = (await query('up{job=~"ddpm-.*"}')).data?.result ?? [];
    return up.length === 3 && up.every((x) => x.value[1] === '1') ? true : undefined;
  });

  // A two-rank group with an evaluation (bits/dim) at its end: training, group and eval metrics.
  const res = await stack.app.inject({
    method: 'POST',
    url: '/jobs/train',
    payload: tinyTrain({
      steps: 6,
      batchSize: 4,
      checkpointEvery: 3,
      workers: 2,
      timesteps: 50,
      evalEvery: 6,
      evalMetrics: ['nll'],
      evalNllImages: 2,
    }),
  });
  expect(res.statusCode).toBe(202);
  const job = await stack.waitFinished(res.json().id as string, 240_000);
  expect(await job.getState()).toBe('completed');
  // A sample job drawn by a sampling group of 2 (two batches, one each) feeds the relay panel.
  const sample = await stack.app.inject({
    method: 'POST',
    url: '/jobs/sample',
    payload: { trainJobId: res.json().id, count: 32, steps: 2, workers: 2 },
  });
  expect(sample.statusCode).toBe(202);
  expect(await (await stack.waitFinished(sample.json().id as string, 240_000)).getState()).toBe('completed');
  await stack.app.inject({ url: '/jobs/no-such-job' });

  // What the service declares and has emitted by now, from its own /metrics pages.
  const pages = await Promise.all(
    [`http://${api}/metrics`, ...workers.map((w) => `http://${w}/metrics`)].map(async (u) => (await fetch(u)).text()),
  );
  const declared = new Map<string, string>();
  const emitted = new Set<string>();
  for (const page of pages) {
    const f = families(page);
    for (const [k, v] of f.declared) declared.set(k, v);
    for (const name of f.emitted) emitted.add(name);
  }
  const familyOf = (name: string): string | undefined => {
    if (declared.has(name)) return name;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return declared.get(base) === 'histogram' || declared.get(base) === 'summary' ? base : undefined;
  };
  // Prometheus has scraped what the workers hold now (two scrapes after the job's end).
  const steps = await until('the final step count scraped', async () => {
    const r = (await query('ddpm_train_steps_total')).data?.result ?? [];
    return r.some((s) => s.value[1] === '6') ? r : undefined;
  });
  expect(steps.find((s) => s.value[1] === '6')!.metric).toMatchObject({
    job: 'ddpm-worker',
    queue: 'train',
    rank: '0',
    backend: 'wasm',
  });
  await new Promise((resolve) => setTimeout(resolve, 2500));

  const dashboard = JSON.parse(dashboardJson()) as {
    panels: { type: string; title: string; targets?: { expr: string }[] }[];
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  expect(panels.map((p) => p.title)).toEqual(ROWS.flatMap((r) => r.panels.map((p) => p.title)));
  const sourceOf = new Map(ROWS.flatMap((r) => r.panels.map((p) => [p.title, p.source] as const)));
  const verified: string[] = [];
  const notYet: string[] = [];
  for (const panel of panels) {
    const exprs = (panel.targets ?? []).map((t) => t.expr);
    expect({ panel: panel.title, queries: exprs.length > 0 }).toEqual({ panel: panel.title, queries: true });
    let hasData = true;
    for (const expr of exprs) {
      const promql = expr.replace(/\$__rate_interval/g, '1m');
      const answer = await query(promql);
      // Every query parses and evaluates, emitted or not.
      expect({ panel: panel.title, expr, status: answer.status, error: answer.error }).toEqual({
        panel: panel.title,
        expr,
        status: 'success',
        error: undefined,
      });
      const names = metricNames(expr);
      expect({ panel: panel.title, expr, names: names.length > 0 }).toEqual({ panel: panel.title, expr, names: true });
      if (sourceOf.get(panel.title) === 'dcgm') {
        expect(names.every((n) => n.startsWith('DCGM_'))).toBe(true);
        hasData = false;
        continue;
      }
      // Only metrics the API and workers really expose.
      for (const name of names)
        expect({ panel: panel.title, name, family: familyOf(name) }).toEqual({
          panel: panel.title,
          name,
          family: expect.any(String),
        });
      if (names.every((n) => emitted.has(n))) {
        expect({ panel: panel.title, expr, results: (answer.data?.result.length ?? 0) > 0 }).toEqual({
          panel: panel.title,
          expr,
          results: true,
        });
      } else {
        hasData = false;
      }
    }
    (hasData ? verified : notYet).push(panel.title);
  }
  // What this job cannot emit: Fréchet distance, KID, IS and pixel statistics need an extractor's evaluation, a
  // restart needs a lost rank, the GPU panels need DCGM. Everything else showed data.
  expect(notYet.sort()).toEqual([
    'Fréchet distance',
    'GPU memory used',
    'GPU utilisation',
    'Group restarts',
    'KID and Inception Score',
    'Sample pixel statistics',
  ]);
  expect(verified.length).toBe(panels.length - 6);
});

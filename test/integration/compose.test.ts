/**
 * infra/docker/compose.yaml: `docker-compose config` (Debian's docker-compose) accepts it, and the
 * resolved file keeps what the stack depends on: a durable, non-evicting queue Redis apart from the
 * data plane's, pinned images, the project's own Dockerfiles, read-only non-root services, a stop
 * grace longer than a job's, a data Redis of each worker's own that only workers reach,
 * Prometheus with the scrape configuration the dashboard test uses (every worker in it) and
 * Grafana provisioned with the generated dashboard.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

import { dashboardJson } from '@ddpm/dashboards';
import { parse } from 'yaml';

import { ROOT } from './service-support';

const COMPOSE = path.join(ROOT, 'infra', 'docker', 'compose.yaml');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  read_only?: boolean;
  user?: string;
  stop_grace_period?: string;
  volumes?: (string | { source?: string; target: string; type?: string })[];
  depends_on?: Record<string, { condition: string }>;
  deploy?: { replicas?: number; resources?: { limits?: { memory?: string } } };
  networks?: Record<string, unknown>;
  ports?: unknown[];
  healthcheck?: { test: string[] };
}

const WORKERS = ['worker-1', 'worker-2'];

describe('compose stack', () => {
  let services: Record<string, Service>;
  let networks: Record<string, { internal?: boolean } | null>;

  beforeAll(() => {
    const text = execFileSync('docker-compose', ['-f', COMPOSE, 'config'], { encoding: 'utf8', cwd: ROOT });
    ({ services, networks } = parse(text) as {
      services: Record<string, Service>;
      networks: Record<string, { internal?: boolean } | null>;
    });
  });

  it('is accepted by docker-compose config and names every part of the stack', () => {
    expect(Object.keys(services).sort()).toEqual([
      'api',
      'grafana',
      'minio',
      'minio-bucket',
      'prometheus',
      'redis-data',
      'redis-queue',
      'worker-1',
      'worker-1-data',
      'worker-2',
      'worker-2-data',
    ]);
    for (const [name, s] of Object.entries(services)) {
      expect({ name, image: s.image }).toEqual({ name, image: expect.stringMatching(/:[^:]+$/) });
      expect(s.image).not.toMatch(/:latest$/);
    }
  });

  it('keeps queues durable and apart from the gradient data plane', () => {
    const queue = services['redis-queue']!.command!.join(' ');
    expect(queue).toMatch(/--appendonly yes/);
    expect(queue).toMatch(/--maxmemory-policy noeviction/);
    expect(services['redis-data']!.command!.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    for (const name of ['api', ...WORKERS]) {
      const env = services[name]!.environment!;
      expect(env['REDIS_URL']).toBe('redis://redis-queue:6379');
      expect(env['DDPM_DATA_REDIS_URL']).toBe('redis://redis-data:6379');
      expect(env['DDPM_API_TOKEN']!.length).toBeGreaterThanOrEqual(16);
    }
  });

  it('builds the API and worker from the project Dockerfiles and runs them read-only, non-root, with a long enough stop grace', () => {
    expect(services['api']!.build!.dockerfile).toBe('infra/docker/api.Dockerfile');
    for (const name of WORKERS) expect(services[name]!.build!.dockerfile).toBe('infra/docker/worker-cpu.Dockerfile');
    for (const name of ['api', ...WORKERS]) {
      const s = services[name]!;
      expect(path.resolve(s.build!.context)).toBe(ROOT);
      expect(existsSync(path.join(ROOT, s.build!.dockerfile))).toBe(true);
      expect(s.read_only).toBe(true);
      expect(s.user).toBe('10001:10001');
    }
    const worker = services['worker-1']!;
    const grace = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(worker.stop_grace_period!)!;
    const seconds = Number(grace[1] ?? 0) * 60 + Number(grace[2] ?? 0);
    expect(seconds).toBeGreaterThan(Number(worker.environment!['DDPM_STOP_GRACE_SECONDS']));
  });

  it('gives each worker a data Redis of its own: advertised, with a password, bounded, keeping nothing, reached by workers only', () => {
    for (const name of WORKERS) {
      const url = new URL(services[name]!.environment!['DDPM_RANK_DATA_URL']!);
      // Its own server, by the name the other workers reach it by.
      expect(url.hostname).toBe(`${name}-data`);
      expect(url.port).toBe('6380');
      const data = services[`${name}-data`]!;
      const command = data.command!.join(' ');
      expect(command).toMatch(/--port 6380/);
      expect(command).toMatch(/--save {2}--appendonly no/);
      expect(command).toMatch(/--maxmemory-policy noeviction/);
      expect(data.command![data.command!.indexOf('--requirepass') + 1]).toBe(decodeURIComponent(url.password));
      // Room for two steps of the paper's CIFAR-10 gradients (2 · 143 MB), under the container's limit.
      const maxmemory = Number(/--maxmemory (\d+)mb/.exec(command)![1]) * 2 ** 20;
      expect(maxmemory).toBeGreaterThan(2 * 143e6);
      expect(Number(/^(\d+)m$/.exec(data.deploy!.resources!.limits!.memory!)![1]) * 2 ** 20).toBeGreaterThan(maxmemory);
      expect(data.healthcheck!.test.join(' ')).toMatch(/-p 6380 .*ping/);
      expect(data.ports ?? []).toEqual([]);
      expect(data.read_only).toBe(true);
    }
    // The data servers sit on an internal network that only the workers and their servers join.
    expect(networks['rank-data']).toMatchObject({ internal: true });
    const onRankData = Object.entries(services)
      .filter(([, s]) => Object.keys(s.networks ?? {}).includes('rank-data'))
      .map(([name]) => name)
      .sort();
    expect(onRankData).toEqual(['worker-1', 'worker-1-data', 'worker-2', 'worker-2-data']);
    for (const name of WORKERS) expect(Object.keys(services[`${name}-data`]!.networks!)).toEqual(['rank-data']);
  });

  it('scrapes the API and workers and provisions the generated dashboard', () => {
    const mounts = (s: Service): Map<string, string> =>
      new Map(
        (s.volumes ?? []).map((v) =>
          typeof v === 'string' ? [v.split(':')[1]!, v.split(':')[0]!] : [v.target, v.source ?? ''],
        ),
      );
    const prometheus = mounts(services['prometheus']!);
    expect(prometheus.get('/etc/prometheus/prometheus.yml')).toBe(
      path.join(ROOT, 'infra', 'docker', 'prometheus', 'prometheus.yml'),
    );
    const scrape = parse(readFileSync(path.join(ROOT, 'infra', 'docker', 'prometheus', 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string; dns_sd_configs?: { names: string[] }[] }[];
    };
    expect(scrape.scrape_configs.map((c) => c.job_name)).toEqual(expect.arrayContaining(['ddpm-api', 'ddpm-worker']));
    // Every worker service is scraped.
    const workerNames = scrape.scrape_configs.find((c) => c.job_name === 'ddpm-worker')!.dns_sd_configs![0]!.names;
    expect(workerNames.sort()).toEqual(WORKERS);
    const grafana = mounts(services['grafana']!);
    const dashboards = grafana.get('/var/lib/grafana/dashboards')!;
    expect(readFileSync(path.join(dashboards, 'ddpm-training.json'), 'utf8')).toBe(dashboardJson());
    const provisioning = grafana.get('/etc/grafana/provisioning')!;
    const provider = parse(readFileSync(path.join(provisioning, 'dashboards', 'ddpm.yaml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    expect(provider.providers[0]!.options.path).toBe('/var/lib/grafana/dashboards');
    const datasource = parse(readFileSync(path.join(provisioning, 'datasources', 'prometheus.yaml'), 'utf8')) as {
      datasources: { type: string; url: string }[];
    };
    expect(datasource.datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
  });
});

/**
 * infra/k8s: every overlay rendered by `kubectl kustomize`, every object validated offline against
 * the Kubernetes schemas (kubernetes-models; the Prometheus Operator's and KEDA's for their
 * resources), and the invariants a deployment depends on: pinned images, requests and limits,
 * probes, non-root pods, GPUs for GPU workers, a grace period longer than a job's stop grace, the
 * NetworkPolicy guarding exactly the Redis pods, a configuration the service itself accepts.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

import { dashboardJson } from '@ddpm/dashboards';
import { checkListenerSafety, loadServiceConfig } from '@ddpm/jobs';
import { parseAllDocuments } from 'yaml';

import { ROOT } from './service-support';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: unknown;
  readinessProbe?: unknown;
}

interface PodSpec {
  containers: Container[];
  securityContext?: { runAsNonRoot?: boolean };
  terminationGracePeriodSeconds?: number;
  nodeSelector?: Record<string, string>;
  tolerations?: { key?: string }[];
}

const OVERLAYS = ['base', 'overlays/dev', 'overlays/gpu'] as const;

function render(overlay: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', path.join(ROOT, 'infra', 'k8s', overlay)], { encoding: 'utf8' });
  return parseAllDocuments(text).map((d) => d.toJSON() as K8sObject);
}

/** The schema class of an object's kind, from the package that knows its group. */
function modelOf(o: K8sObject): new (data: unknown) => { validate(): void } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const pkg =
    group === 'monitoring.coreos.com'
      ? '@kubernetes-models/prometheus-operator'
      : group === 'keda.sh'
        ? '@kubernetes-models/keda'
        : 'kubernetes-models';
  const modulePath = group === '' ? `${pkg}/${version}/${o.kind}` : `${pkg}/${group}/${version}/${o.kind}`;
  const module = require(modulePath) as Record<string, new (data: unknown) => { validate(): void }>;
  return module[o.kind]!;
}

function podSpecOf(o: K8sObject): PodSpec | undefined {
  const template = (o.spec?.['template'] as { spec?: PodSpec } | undefined)?.spec;
  return o.kind === 'Deployment' || o.kind === 'StatefulSet' || o.kind === 'Job' ? template : undefined;
}

function podLabelsOf(o: K8sObject): Record<string, string> {
  return (
    (o.spec?.['template'] as { metadata?: { labels?: Record<string, string> } } | undefined)?.metadata?.labels ?? {}
  );
}

function matches(
  selector: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values: string[] }[];
  },
  labels: Record<string, string>,
): boolean {
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpression = (selector.matchExpressions ?? []).every((e) =>
    e.operator === 'In'
      ? e.values.includes(labels[e.key] ?? '')
      : e.operator === 'NotIn'
        ? !e.values.includes(labels[e.key] ?? '')
        : false,
  );
  return byLabel && byExpression;
}

describe.each(OVERLAYS)('infra/k8s/%s', (overlay) => {
  const objects = render(overlay);

  it('validates against the Kubernetes schemas', () => {
    expect(objects.length).toBeGreaterThan(8);
    for (const o of objects) {
      const Model = modelOf(o);
      expect({ object: `${o.kind}/${o.metadata.name}`, model: typeof Model }).toEqual({
        object: `${o.kind}/${o.metadata.name}`,
        model: 'function',
      });
      expect(() => new Model(o).validate()).not.toThrow();
    }
    // Everything but the namespace itself lives in it.
    for (const o of objects.filter((x) => x.kind !== 'Namespace'))
      expect(`${o.kind}/${o.metadata.name} in ${o.metadata.namespace}`).toBe(`${o.kind}/${o.metadata.name} in ddpm`);
  });

  it('pins every image, sets requests and limits, probes every server, runs pods as non-root', () => {
    for (const o of objects) {
      const pod = podSpecOf(o);
      if (!pod) continue;
      expect(`${o.kind}/${o.metadata.name}: ${pod.securityContext?.runAsNonRoot}`).toBe(
        `${o.kind}/${o.metadata.name}: true`,
      );
      for (const c of pod.containers) {
        const where = `${o.kind}/${o.metadata.name}/${c.name}`;
        expect(`${where} ${c.image}`).toMatch(/^\S+ [^:@\s]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$/);
        expect(`${where} ${c.image}`).not.toMatch(/:latest$/);
        for (const kind of ['requests', 'limits'] as const) {
          expect(
            `${where} ${kind}: ${Object.keys(c.resources?.[kind] ?? {})
              .sort()
              .join(',')}`,
          ).toMatch(new RegExp(`^${where} ${kind}: cpu,memory(,nvidia.com/gpu)?$`));
        }
        if (o.kind !== 'Job')
          expect(`${where} probes: ${c.livenessProbe !== undefined} ${c.readinessProbe !== undefined}`).toBe(
            `${where} probes: true true`,
          );
      }
    }
  });

  it('gives workers a grace period longer than a job’s stop grace, and the queue Redis AOF and noeviction', () => {
    const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ddpm-config')!;
    const stopGrace = Number(config.data!['DDPM_STOP_GRACE_SECONDS']);
    expect(stopGrace).toBeGreaterThan(0);
    const worker = podSpecOf(objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'worker')!)!;
    // The job's stop grace, then handing the job back and closing connections.
    expect(worker.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(stopGrace + 30);
    // A wasm worker's job uses every core the container may: as many wasm threads as its CPU limit.
    const env = (name: string) => worker.containers[0]!.env?.find((e) => e.name === name)?.value;
    if (env('DDPM_BACKEND') === 'wasm')
      expect(env('DDPM_WASM_THREADS')).toBe(String(worker.containers[0]!.resources?.limits?.['cpu']));
    const redis = podSpecOf(objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'redis-queue')!)!
      .containers[0]!;
    expect(redis.args?.join(' ')).toMatch(/--appendonly yes .*--maxmemory-policy noeviction/);
  });

  it('lets exactly the API and the workers reach Redis', () => {
    const policy = objects.find((o) => o.kind === 'NetworkPolicy')!;
    const spec = policy.spec as {
      podSelector: Parameters<typeof matches>[0];
      ingress: { from: { podSelector: Parameters<typeof matches>[0] }[]; ports: { port: number }[] }[];
    };
    const pods = objects
      .filter((o) => podSpecOf(o) !== undefined)
      .map((o) => ({ name: `${o.kind}/${o.metadata.name}`, labels: podLabelsOf(o) }));
    expect(
      pods
        .filter((p) => matches(spec.podSelector, p.labels))
        .map((p) => p.name)
        .sort(),
    ).toEqual(['StatefulSet/redis-data', 'StatefulSet/redis-queue']);
    const clients = pods
      .filter((p) => spec.ingress.some((rule) => rule.from.some((f) => matches(f.podSelector, p.labels))))
      .map((p) => p.name);
    expect(clients.sort()).toEqual(['Deployment/api', 'Deployment/worker']);
    expect(spec.ingress.flatMap((r) => r.ports.map((p) => p.port))).toEqual([6379]);
  });

  it('configures the service as it accepts it: listening beyond loopback with a token', () => {
    const data = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ddpm-config')!.data!;
    const config = loadServiceConfig({ ...data, DDPM_API_TOKEN: 'a-token-from-the-secret-0123' });
    expect(config.host).toBe('0.0.0.0');
    expect(checkListenerSafety(config)).toBeUndefined();
    expect(() => checkListenerSafety({ ...config, apiToken: undefined })).toThrow(/DDPM_API_TOKEN is not set/);
    // Workers and the API read the Secret: a dev overlay carries one, production creates it.
    const secret = objects.find((o) => o.kind === 'Secret');
    if (overlay === 'overlays/dev') expect(secret?.metadata.name).toBe('ddpm-secrets');
    else expect(secret).toBeUndefined();
  });
});

describe('infra/k8s/overlays/gpu', () => {
  const objects = render('overlays/gpu');

  it('runs workers on GPU nodes, one GPU each, with the GPU image and backend; monitoring and autoscaling on', () => {
    const workerObject = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'worker')!;
    const worker = podSpecOf(workerObject)!;
    const c = worker.containers[0]!;
    expect(c.resources?.limits?.['nvidia.com/gpu']).toBe('1');
    expect(c.image).toMatch(/worker-gpu:/);
    expect(c.env?.find((e) => e.name === 'DDPM_BACKEND')?.value).toBe('tensorflow-gpu');
    expect(worker.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(worker.tolerations?.map((t) => t.key)).toContain('nvidia.com/gpu');
    // The job memory watchdog sits below the container's memory limit.
    expect(Number(c.env?.find((e) => e.name === 'DDPM_JOB_MEMORY_MB')?.value) * 2 ** 20).toBeLessThan(32 * 2 ** 30);
    const scaled = objects.find((o) => o.kind === 'ScaledObject')!;
    expect(JSON.stringify(scaled.spec)).toMatch(/bullmq_job_count/);
    expect((scaled.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name).toBe('worker');
    expect(objects.some((o) => o.kind === 'ServiceMonitor')).toBe(true);
    // The Grafana dashboard ships as a ConfigMap for Grafana's sidecar: the generated JSON, as committed.
    const dashboards = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ddpm-grafana-dashboards')!;
    expect(dashboards.metadata.labels?.['grafana_dashboard']).toBe('1');
    expect(dashboards.data?.['ddpm-training.json']).toBe(dashboardJson());
  });
});

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
import { checkListenerSafety, loadServiceConfig } from '@ddpm/service';
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
  command?: string[];
  args?: string[];
  restartPolicy?: string;
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
  }[];
  ports?: { containerPort: number }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  livenessProbe?: unknown;
  readinessProbe?: unknown;
}

interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
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
      // Native sidecars (init containers that keep running) are servers like the others.
      for (const c of [...pod.containers, ...(pod.initContainers ?? []).filter((i) => i.restartPolicy === 'Always')]) {
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
    // A wasm worker's job computes on one core (one thread): it asks for one, and sets no thread count
    // (the backend refuses DDPM_WASM_THREADS above 1).
    const env = (name: string) => worker.containers[0]!.env?.find((e) => e.name === name)?.value;
    if (env('DDPM_BACKEND') === 'wasm') {
      expect(worker.containers[0]!.resources?.requests?.['cpu']).toBe('1');
      expect(env('DDPM_WASM_THREADS')).toBeUndefined();
    }
    const redis = podSpecOf(objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'redis-queue')!)!
      .containers[0]!;
    expect(redis.args?.join(' ')).toMatch(/--appendonly yes .*--maxmemory-policy noeviction/);
  });

  it('lets exactly the API and the workers reach Redis', () => {
    const policy = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'redis-clients')!;
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

describe.each(['overlays/dev', 'overlays/gpu'])('infra/k8s/%s: the workers’ own data servers', (overlay) => {
  const objects = render(overlay);
  const workerObject = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'worker')!;
  const pod = podSpecOf(workerObject)!;

  it('gives every worker pod a data Redis beside it: a native sidecar, password from the Secret, nothing kept, memory bounded', () => {
    const sidecar = pod.initContainers?.find((c) => c.name === 'rank-data');
    expect(sidecar?.restartPolicy).toBe('Always');
    const line = [...(sidecar!.command ?? []), ...(sidecar!.args ?? [])].join(' ');
    expect(line).toMatch(/redis-server --port 6380 /);
    expect(line).toMatch(/--save "" --appendonly no /);
    expect(line).toMatch(/--maxmemory-policy noeviction/);
    expect(line).toMatch(/--requirepass "\$REDISCLI_AUTH"/);
    expect(sidecar!.env).toContainEqual({
      name: 'REDISCLI_AUTH',
      valueFrom: { secretKeyRef: { name: 'ddpm-secrets', key: 'DDPM_RANK_DATA_PASSWORD' } },
    });
    // Two steps of the paper's CIFAR-10 model's values (about 2 × 143 MB) fit, within the container's limit.
    const maxMemory = Number(/--maxmemory (\d+)mb/.exec(line)![1]) * 2 ** 20;
    expect(maxMemory).toBeGreaterThanOrEqual(2 * 143e6);
    expect(maxMemory).toBeLessThan(parseQuantity(sidecar!.resources!.limits!['memory']!));
  });

  it('advertises it at the pod’s IP (the downward API), as a URL the service accepts', () => {
    const env = pod.containers.find((c) => c.name === 'worker')!.env!;
    expect(env).toContainEqual({ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } });
    const names = env.map((e) => e.name);
    // $(VAR) expands only variables defined before it.
    expect(names.indexOf('POD_IP')).toBeLessThan(names.indexOf('DDPM_RANK_DATA_URL'));
    expect(names.indexOf('DDPM_RANK_DATA_PASSWORD')).toBeLessThan(names.indexOf('DDPM_RANK_DATA_URL'));
    const url = env.find((e) => e.name === 'DDPM_RANK_DATA_URL')!.value!;
    expect(url).toBe('redis://:$(DDPM_RANK_DATA_PASSWORD)@$(POD_IP):6380');
    const expanded = url.replace('$(DDPM_RANK_DATA_PASSWORD)', '0123abcd').replace('$(POD_IP)', '10.42.1.7');
    expect(loadServiceConfig({ DDPM_RANK_DATA_URL: expanded }).rankDataUrl).toBe('redis://:0123abcd@10.42.1.7:6380');
    const sidecar = pod.initContainers!.find((c) => c.name === 'rank-data')!;
    expect(sidecar.ports?.map((p) => p.containerPort)).toEqual([6380]);
    if (overlay === 'overlays/dev') {
      const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'ddpm-secrets')!;
      // It goes into a URL: letters and digits only.
      expect(Buffer.from(secret.data!['DDPM_RANK_DATA_PASSWORD']!, 'base64').toString()).toMatch(/^[A-Za-z0-9]{16,}$/);
    }
  });

  it('lets worker pods, and nothing else, reach the data port', () => {
    const policy = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'worker-rank-data')!;
    const spec = policy.spec as {
      podSelector: Parameters<typeof matches>[0];
      ingress: { from?: { podSelector: Parameters<typeof matches>[0] }[]; ports: { port: number }[] }[];
    };
    const pods = objects
      .filter((o) => podSpecOf(o) !== undefined)
      .map((o) => ({ name: `${o.kind}/${o.metadata.name}`, labels: podLabelsOf(o) }));
    expect(pods.filter((p) => matches(spec.podSelector, p.labels)).map((p) => p.name)).toEqual(['Deployment/worker']);
    const dataRules = spec.ingress.filter((r) => r.ports.some((p) => p.port === 6380));
    expect(dataRules).toHaveLength(1);
    expect(dataRules[0]!.ports.map((p) => p.port)).toEqual([6380]);
    const clients = pods
      .filter((p) => dataRules[0]!.from!.some((f) => matches(f.podSelector, p.labels)))
      .map((p) => p.name);
    expect(clients).toEqual(['Deployment/worker']);
    // The metrics and health port stays open (Prometheus, probes); nothing else is let in.
    expect(spec.ingress.filter((r) => r !== dataRules[0]).flatMap((r) => r.ports.map((p) => p.port))).toEqual([9464]);
  });
});

/** A Kubernetes memory quantity (768Mi, 8Gi, 512M) in bytes. */
function parseQuantity(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit =
    { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] as 'Ki'] ?? 1;
  return Number(m[1]) * unit;
}

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

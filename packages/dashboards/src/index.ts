/**
 * The service's Grafana dashboard, as code: typed by Grafana's own schema builders
 * (`@grafana/grafana-foundation-sdk`) and generated to JSON (`npm run dashboards`) for compose's
 * provisioning and the Kubernetes ConfigMap (infra/k8s/components/monitoring).
 *
 * Every query names only metrics the API and workers expose (packages/telemetry, apps/api);
 * test/integration/dashboards.test.ts has a real Prometheus scrape a running service through the
 * stack's own scrape configuration and evaluates each query. Job ids are not labels (bounded
 * cardinality, docs/metrics.md): a worker runs one job at a time, so "per job" is per worker
 * instance, and a group's progress is counted once, by its rank 0.
 */
import {
  DashboardBuilder,
  DatasourceVariableBuilder,
  RowBuilder,
  type Dashboard,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder } from '@grafana/grafana-foundation-sdk/timeseries';

/** Where a panel's metrics come from: the service itself, or NVIDIA's DCGM exporter when deployed. */
export type MetricSource = 'service' | 'dcgm';

export interface QuerySpec {
  readonly expr: string;
  readonly legend: string;
}

export interface PanelSpec {
  readonly title: string;
  readonly description: string;
  readonly unit: string;
  readonly source: MetricSource;
  readonly queries: readonly QuerySpec[];
  /** Grid width (of 24); the height is 8. */
  readonly width: number;
}

export interface RowSpec {
  readonly title: string;
  readonly panels: readonly PanelSpec[];
}

const RATE = '$__rate_interval';
const quantile = (q: number, metric: string, by: string): string =>
  `histogram_quantile(${q}, sum by (le, ${by}) (rate(${metric}_bucket[${RATE}])))`;
const ts = (
  title: string,
  unit: string,
  description: string,
  queries: QuerySpec[],
  width = 12,
  source: MetricSource = 'service',
): PanelSpec => ({
  title,
  description,
  unit,
  source,
  queries,
  width,
});

/** The dashboard's rows and panels: what the JSON is built from, and what the tests read. */
export const ROWS: readonly RowSpec[] = [
  {
    title: 'Training',
    panels: [
      ts(
        'Steps per second',
        'ops',
        'Optimizer steps per second of each running train job (counted by the rank 0 of a group).',
        [{ expr: `sum by (instance) (rate(ddpm_train_steps_total[${RATE}]))`, legend: '{{instance}}' }],
        8,
      ),
      ts(
        'Images per second',
        'none',
        "Training images per second of each running train job: the whole group's, counted by its rank 0.",
        [{ expr: `sum by (instance) (rate(ddpm_train_images_total[${RATE}]))`, legend: '{{instance}}' }],
        8,
      ),
      ts(
        'Loss',
        'none',
        "Training loss of the latest step (a group's mean, from its rank 0).",
        [{ expr: 'ddpm_train_loss', legend: '{{instance}} {{backend}}' }],
        8,
      ),
      ts('Step time', 's', 'Wall time of one optimizer step, every rank: median and 95th percentile.', [
        { expr: quantile(0.5, 'ddpm_train_step_duration_seconds', 'instance'), legend: 'p50 {{instance}}' },
        { expr: quantile(0.95, 'ddpm_train_step_duration_seconds', 'instance'), legend: 'p95 {{instance}}' },
      ]),
      ts(
        'Checkpoint write time',
        's',
        'Wall time of writing one checkpoint, 95th percentile by reason (periodic, final, cancel, shutdown...).',
        [{ expr: quantile(0.95, 'ddpm_checkpoint_duration_seconds', 'reason'), legend: 'p95 {{reason}}' }],
      ),
    ],
  },
  {
    title: 'Quality over training',
    panels: [
      ts(
        'Fréchet distance',
        'none',
        "Latest evaluation's Fréchet distance. It is FID only where distance=\"fid\" (the FID Inception's weights); fd_fmnist_cnn is the offline extractor's, not comparable with published FIDs.",
        [{ expr: 'ddpm_eval_fid', legend: '{{distance}} ({{extractor}}) {{instance}}' }],
        8,
      ),
      ts(
        'Bits per dimension',
        'none',
        "Latest evaluation's test-set NLL bound, bits per data dimension.",
        [{ expr: 'ddpm_eval_bits_per_dim', legend: '{{instance}}' }],
        8,
      ),
      ts(
        'KID and Inception Score',
        'none',
        "Latest evaluation's KID (unbiased MMD², cubic kernel) and Inception Score, by extractor.",
        [
          { expr: 'ddpm_eval_kid', legend: 'KID {{extractor}} {{instance}}' },
          { expr: 'ddpm_eval_inception_score', legend: 'IS {{extractor}} {{instance}}' },
        ],
        8,
      ),
      ts(
        'Sample pixel statistics',
        'percentunit',
        "Latest evaluation's samples on [0, 1]: mean pixel, fraction of background (< 0.1) and saturated (> 0.9). Compare with the reference's in the evaluation report (Fashion-MNIST at 32 × 32: mean 0.22, background 0.65).",
        [{ expr: 'ddpm_eval_pixel_statistic', legend: '{{statistic}} {{instance}}' }],
        8,
      ),
    ],
  },
  {
    title: 'Data-parallel groups',
    panels: [
      ts(
        'All-reduce time',
        's',
        'Wall time of one group exchange per rank, waiting for peers included: 95th percentile.',
        [{ expr: quantile(0.95, 'ddpm_allreduce_duration_seconds', 'rank'), legend: 'p95 rank {{rank}}' }],
        8,
      ),
      ts(
        'All-reduce traffic',
        'Bps',
        "Gradient bytes per second the ranks sent and received over their generation's data plane.",
        [{ expr: `sum by (direction) (rate(ddpm_allreduce_bytes_total[${RATE}]))`, legend: '{{direction}}' }],
        8,
      ),
      ts(
        'Data plane',
        'none',
        "Where each rank's values travel in its current generation: shared-memory (every rank on one host), ranks (the ranks' own data servers) or hub (the one data Redis).",
        [{ expr: 'ddpm_allreduce_plane == 1', legend: 'rank {{rank}}: {{plane}} {{instance}}' }],
        8,
      ),
      ts(
        'Stragglers: compute per step by rank',
        's',
        "Each rank's own share of a step (its micro-batches, no waiting), mean over the interval: the highest line is the group's straggler.",
        [
          {
            expr: `sum by (rank, instance) (rate(ddpm_train_rank_compute_seconds_sum[${RATE}])) / sum by (rank, instance) (rate(ddpm_train_rank_compute_seconds_count[${RATE}]))`,
            legend: 'rank {{rank}} {{instance}}',
          },
        ],
        8,
      ),
      ts(
        'Sampling group traffic',
        'Bps',
        "Drawn samples relayed to rank 0 by the ranks of sampling groups (sample and eval jobs with workers > 1): each rank's share.",
        [
          {
            expr: `sum by (direction, rank) (rate(ddpm_sampling_relay_bytes_total[${RATE}]))`,
            legend: '{{direction}} rank {{rank}}',
          },
        ],
        8,
      ),
      ts('World size', 'none', 'Ranks in the current generation of each running group.', [
        { expr: 'max by (instance) (ddpm_world_size)', legend: '{{instance}}' },
      ]),
      ts(
        'Group restarts',
        'none',
        'Generations ended by a lost, hung or failed rank (or a data-plane restart) and formed again.',
        [{ expr: `sum by (queue) (increase(ddpm_group_restarts_total[${RATE}]))`, legend: '{{queue}}' }],
      ),
    ],
  },
  {
    title: 'Queues and jobs',
    panels: [
      ts(
        'Queue depth by state',
        'none',
        'Jobs in each BullMQ queue by state, read from Redis at scrape time by the API.',
        [
          {
            expr: 'max by (queue, state) (bullmq_job_count{state=~"waiting|active|delayed|prioritized|paused"})',
            legend: '{{queue}} {{state}}',
          },
        ],
      ),
      ts('Jobs finished', 'none', 'Jobs finished by the workers, by queue and outcome.', [
        { expr: `sum by (queue, outcome) (increase(ddpm_jobs_total[${RATE}]))`, legend: '{{queue}} {{outcome}}' },
      ]),
    ],
  },
  {
    title: 'API',
    panels: [
      ts('Request latency', 's', 'API request duration by route template: 50th and 99th percentiles.', [
        { expr: quantile(0.5, 'ddpm_api_request_duration_seconds', 'route'), legend: 'p50 {{route}}' },
        { expr: quantile(0.99, 'ddpm_api_request_duration_seconds', 'route'), legend: 'p99 {{route}}' },
      ]),
      ts(
        'Requests and errors',
        'reqps',
        "API requests per second by status class; 5xx are the server's errors, 4xx the clients'.",
        [{ expr: `sum by (status) (rate(ddpm_api_requests_total[${RATE}]))`, legend: '{{status}}' }],
      ),
    ],
  },
  {
    title: 'GPUs (NVIDIA DCGM exporter, when deployed)',
    panels: [
      ts(
        'GPU utilisation',
        'percent',
        'From the DCGM exporter (dcgm-exporter on the GPU nodes); empty where it is not deployed.',
        [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)', legend: '{{Hostname}} GPU {{gpu}}' }],
        12,
        'dcgm',
      ),
      ts(
        'GPU memory used',
        'decmbytes',
        'Frame-buffer memory in use (DCGM exporter).',
        [{ expr: 'avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)', legend: '{{Hostname}} GPU {{gpu}}' }],
        12,
        'dcgm',
      ),
    ],
  },
];

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
export const DASHBOARD_UID = 'ddpm-training';

/** The dashboard, built with Grafana's typed builders. */
export function trainingDashboard(): Dashboard {
  const builder = new DashboardBuilder('DDPM training service')
    .uid(DASHBOARD_UID)
    .tags(['ddpm', 'generated'])
    .description(
      'Training throughput, loss, sample quality over training, data-parallel groups, queues, API and GPUs. Generated by packages/dashboards: edit the code, not the JSON.',
    )
    .refresh('30s')
    .time({ from: 'now-6h', to: 'now' })
    .timezone('browser')
    .editable()
    .withVariable(new DatasourceVariableBuilder('datasource').label('Data source').type('prometheus'));
  let y = 0;
  for (const row of ROWS) {
    builder.withRow(new RowBuilder(row.title).gridPos({ x: 0, y, w: 24, h: 1 }));
    y += 1;
    let x = 0;
    for (const panel of row.panels) {
      if (x + panel.width > 24) {
        x = 0;
        y += 8;
      }
      const targets = panel.queries.map((q, i) =>
        new DataqueryBuilder()
          .expr(q.expr)
          .legendFormat(q.legend)
          .refId(String.fromCharCode(65 + i))
          .datasource(DATASOURCE),
      );
      const built = new PanelBuilder()
        .title(panel.title)
        .description(panel.description)
        .unit(panel.unit)
        .datasource(DATASOURCE)
        .gridPos({ x, y, w: panel.width, h: 8 })
        .lineWidth(1)
        .fillOpacity(10);
      for (const target of targets) built.withTarget(target);
      builder.withPanel(built);
      x += panel.width;
    }
    y += 8;
  }
  return builder.build();
}

/** The dashboard as the JSON Grafana provisions (stable key order, trailing newline). */
export function dashboardJson(): string {
  return `${JSON.stringify(trainingDashboard(), null, 2)}\n`;
}

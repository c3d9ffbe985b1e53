/**
 * The service's Prometheus metrics (docs/metrics.md): base units, `_total`
 * counters, bounded labels (queue, rank, backend; never job, step or sample ids). Steps per second
 * is `rate(ddpm_train_steps_total[1m])`.
 */
import { type Queue } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface TrainMetrics {
  readonly registry: Registry;
  readonly stepsTotal: Counter<'queue' | 'rank' | 'backend'>;
  readonly imagesTotal: Counter<'queue' | 'rank' | 'backend'>;
  readonly stepDuration: Histogram<'queue' | 'rank' | 'backend'>;
  readonly loss: Gauge<'queue' | 'rank' | 'backend'>;
  readonly evalFid: Gauge<'queue' | 'extractor' | 'distance'>;
  readonly evalKid: Gauge<'queue' | 'extractor'>;
  readonly evalInceptionScore: Gauge<'queue' | 'extractor'>;
  readonly evalPixels: Gauge<'queue' | 'statistic'>;
  readonly evalBitsPerDim: Gauge<'queue'>;
  readonly evalDuration: Histogram<'queue'>;
  readonly rankComputeSeconds: Histogram<'queue' | 'rank' | 'backend'>;
  readonly allreduceDuration: Histogram<'rank'>;
  readonly allreduceBytes: Counter<'rank' | 'direction'>;
  readonly allreducePlane: Gauge<'rank' | 'plane'>;
  readonly relayBytes: Counter<'queue' | 'rank' | 'direction'>;
  readonly checkpointDuration: Histogram<'queue' | 'reason'>;
  readonly groupRestarts: Counter<'queue'>;
  readonly worldSize: Gauge<'queue'>;
  readonly jobsTotal: Counter<'queue' | 'outcome'>;
}

/** Steps, images, step time and loss: what a dashboard's throughput and loss panels read. */
function trainingMetrics(
  registry: Registry,
): Pick<TrainMetrics, 'stepsTotal' | 'imagesTotal' | 'stepDuration' | 'loss'> {
  const labels = ['queue', 'rank', 'backend'] as const;
  return {
    stepsTotal: new Counter({
      name: 'ddpm_train_steps_total',
      help: 'Optimizer steps taken',
      labelNames: labels,
      registers: [registry],
    }),
    imagesTotal: new Counter({
      name: 'ddpm_train_images_total',
      help: 'Training images processed',
      labelNames: labels,
      registers: [registry],
    }),
    stepDuration: new Histogram({
      name: 'ddpm_train_step_duration_seconds',
      help: 'Wall time of one optimizer step',
      labelNames: labels,
      // From a fast GPU step to a CPU step of a large model.
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    loss: new Gauge({
      name: 'ddpm_train_loss',
      help: 'Training loss of the latest step',
      labelNames: labels,
      registers: [registry],
    }),
  };
}

/** The latest evaluation's numbers, by extractor, and its duration. */
function evaluationMetrics(
  registry: Registry,
): Pick<TrainMetrics, 'evalFid' | 'evalKid' | 'evalInceptionScore' | 'evalPixels' | 'evalBitsPerDim' | 'evalDuration'> {
  return {
    // The Fréchet distance of the latest evaluation, labelled by the feature extractor and by the
    // distance's own name: it is FID only where distance="fid" (the FID Inception's weights);
    // distance="fd_fmnist_cnn" is the offline extractor's, not comparable with published FIDs.
    evalFid: new Gauge({
      name: 'ddpm_eval_fid',
      help: 'Fréchet distance of the latest evaluation (FID only where distance="fid"; otherwise the named extractor\'s distance)',
      labelNames: ['queue', 'extractor', 'distance'],
      registers: [registry],
    }),
    evalKid: new Gauge({
      name: 'ddpm_eval_kid',
      help: 'Kernel Inception Distance (unbiased MMD², cubic kernel) of the latest evaluation, by extractor',
      labelNames: ['queue', 'extractor'],
      registers: [registry],
    }),
    evalInceptionScore: new Gauge({
      name: 'ddpm_eval_inception_score',
      help: 'Inception Score of the latest evaluation, by extractor (comparable with the paper only for the FID Inception)',
      labelNames: ['queue', 'extractor'],
      registers: [registry],
    }),
    evalPixels: new Gauge({
      name: 'ddpm_eval_pixel_statistic',
      help: 'Pixel statistics of the latest evaluation\'s samples on [0, 1]: statistic="mean", "background" (fraction < 0.1) or "saturated" (fraction > 0.9); the report holds the reference\'s',
      labelNames: ['queue', 'statistic'],
      registers: [registry],
    }),
    evalBitsPerDim: new Gauge({
      name: 'ddpm_eval_bits_per_dim',
      help: 'Test-set NLL bound of the latest evaluation, bits per data dimension',
      labelNames: ['queue'],
      registers: [registry],
    }),
    evalDuration: new Histogram({
      name: 'ddpm_eval_duration_seconds',
      help: 'Wall time of one evaluation (during training or an eval job)',
      labelNames: ['queue'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers: [registry],
    }),
  };
}

/** A group's ranks: their own compute, their exchanges, the plane the values travel, the relayed samples. */
function exchangeMetrics(
  registry: Registry,
): Pick<TrainMetrics, 'rankComputeSeconds' | 'allreduceDuration' | 'allreduceBytes' | 'allreducePlane' | 'relayBytes'> {
  const labels = ['queue', 'rank', 'backend'] as const;
  return {
    rankComputeSeconds: new Histogram({
      name: 'ddpm_train_rank_compute_seconds',
      help: "A rank's own share of a step (its micro-batches' forward and backward, no waiting): the slowest rank is the group's straggler",
      labelNames: labels,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    allreduceDuration: new Histogram({
      name: 'ddpm_allreduce_duration_seconds',
      help: "Wall time of one group exchange (gradient all-reduce and the ranks' reports), waiting for peers included",
      labelNames: ['rank'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    allreduceBytes: new Counter({
      name: 'ddpm_allreduce_bytes_total',
      help: 'Gradient bytes sent and received',
      labelNames: ['rank', 'direction'],
      registers: [registry],
    }),
    allreducePlane: new Gauge({
      name: 'ddpm_allreduce_plane',
      help: "Where the current group generation's values travel, 1 for the plane in use (hub: one Redis; shared-memory: ranks on one host; ranks: the ranks' own data servers)",
      labelNames: ['rank', 'plane'],
      registers: [registry],
    }),
    relayBytes: new Counter({
      name: 'ddpm_sampling_relay_bytes_total',
      help: "Drawn samples moved between a group's ranks: a sampling group's batches sent to rank 0 and received there (a grouped sample or eval job), and a training group's evaluation samples each rank sent and received when the ranks share them",
      labelNames: ['queue', 'rank', 'direction'],
      registers: [registry],
    }),
  };
}

/** Checkpoints, group restarts and sizes, and the jobs a worker finished. */
function jobMetrics(
  registry: Registry,
): Pick<TrainMetrics, 'checkpointDuration' | 'groupRestarts' | 'worldSize' | 'jobsTotal'> {
  return {
    checkpointDuration: new Histogram({
      name: 'ddpm_checkpoint_duration_seconds',
      help: 'Wall time of writing one checkpoint',
      labelNames: ['queue', 'reason'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
    groupRestarts: new Counter({
      name: 'ddpm_group_restarts_total',
      help: 'Data-parallel group restarts',
      labelNames: ['queue'],
      registers: [registry],
    }),
    worldSize: new Gauge({
      name: 'ddpm_world_size',
      help: 'Ranks in the current data-parallel group',
      labelNames: ['queue'],
      registers: [registry],
    }),
    jobsTotal: new Counter({
      name: 'ddpm_jobs_total',
      help: 'Jobs finished by this worker, by outcome',
      labelNames: ['queue', 'outcome'],
      registers: [registry],
    }),
  };
}

/** A registry with process metrics and every training metric, for a worker (registered in this order). */
export function createWorkerMetrics(defaultLabels: Record<string, string> = {}): TrainMetrics {
  const registry = new Registry();
  registry.setDefaultLabels(defaultLabels);
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    ...trainingMetrics(registry),
    ...evaluationMetrics(registry),
    ...exchangeMetrics(registry),
    ...jobMetrics(registry),
  };
}

const BULLMQ_STATES = ['waiting', 'active', 'completed', 'failed', 'delayed', 'paused', 'prioritized'] as const;

/** `bullmq_job_count{queue,state}`, read from Redis at scrape time. */
export function registerQueueCounts(registry: Registry, queues: readonly Queue[]): Gauge<'queue' | 'state'> {
  return new Gauge({
    name: 'bullmq_job_count',
    help: 'Jobs in each BullMQ queue by state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      for (const queue of queues) {
        try {
          const counts = await queue.getJobCounts(...BULLMQ_STATES);
          for (const state of BULLMQ_STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
        } catch {
          // Redis unreachable: leave the last values; /readyz reports the outage.
        }
      }
    },
  });
}

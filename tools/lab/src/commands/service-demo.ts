/**
 * `ddpm service-demo` — the main job (`npm run demo`): starts Redis if none is reachable, the API and two
 * worker processes, submits a real training job over HTTP (Fashion-MNIST when the Debian package
 * is installed, procedural shapes otherwise), shows its progress until it finishes, samples a grid
 * from it through a sample job, and prints where the PNG is (file and URL).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { FASHION_MNIST_DIR } from '@ddpm/data';

import { type CliIo, formatDuration, parseCommandArgs, parseInteger, waitForJob } from '@ddpm/cli/toolkit';
import { type ApiClient, type JobView } from '@ddpm/api-client';
import { type LocalService, startLocalService } from '../local-services';

export const SERVICE_DEMO_USAGE = `Usage: ddpm service-demo [--steps N] [--workers 1|2] [--out DIR] [--keep-running]

Starts Redis (if 127.0.0.1:6379 does not answer and redis-server is on the PATH), the API and two
workers, trains micro32 for N steps (default 250) of batch 16 on Fashion-MNIST (or procedural
shapes) as one data-parallel group of --workers (default 2: both cores of this machine; the wasm
backend uses one core a process), prints the group's images/s, then samples a grid of 16 images
per worker (a sampling group of --workers, each drawing 16) and, the same way, a grid of the
shipped reference model fashion-mnist-cpu (an hour of its recipe), and prints their paths and URL.
--keep-running leaves the services up.
`;

type DemoEnv = { tty: boolean; signal?: AbortSignal };

/** What the demo runs, and where. */
interface Demo {
  readonly steps: number;
  readonly workers: number;
  readonly out: string;
  readonly started: number;
  readonly keepRunning: boolean;
}

export async function serviceDemoCommand(
  argv: readonly string[],
  io: CliIo,
  env: DemoEnv = { tty: false },
): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    steps: { type: 'string' },
    workers: { type: 'string' },
    out: { type: 'string' },
    'keep-running': { type: 'boolean' },
  });
  const workers = parseInteger('workers', values['workers'], 2, { min: 1, max: 2 });
  const steps = parseInteger('steps', values['steps'], 250, { min: 1, max: 1_000_000 });
  const started = Date.now();
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(String(values['out'] ?? path.join('runs', `service-demo-${stamp}`)));
  await fs.mkdir(out, { recursive: true });
  const service = await startLocalService(out, 2, `demo-${stamp}`, io);
  if (!service) return 1;
  try {
    return await runDemo(
      service,
      { steps, workers, out, started, keepRunning: values['keep-running'] === true },
      io,
      env,
    );
  } finally {
    await service.stop();
  }
}

/** The demo on its running service: train, sample the run, sample the shipped model, print where the pictures are. */
async function runDemo(service: LocalService, demo: Demo, io: CliIo, env: DemoEnv): Promise<number> {
  const { api, client } = service;
  const { workers, out, started } = demo;
  const run = await trainDemoRun(service, demo, io, env);
  if (!run) return 1;
  const { trained, trainSeconds, imagesPerSecond } = run;
  // One network batch (16 images) per worker: the group draws them in the time one process draws 16.
  const sampleStarted = Date.now();
  const sample = await client.submit({
    type: 'sample',
    body: { trainJobId: run.id, count: 16 * workers, steps: 100, seed: 0, workers },
  });
  io.stderr(`POST /jobs/sample → ${sample.id}\n`);
  if (!(await completed(client, sample.id, 'sample', io, env))) return 1;
  const sampleSeconds = (Date.now() - sampleStarted) / 1000;
  io.stderr(
    `sampled ${16 * workers} images (100 steps) with ${workers} worker${workers > 1 ? 's as one sampling group' : ''} in ${sampleSeconds.toFixed(1)} s\n`,
  );
  const url = `${api}/samples/${sample.id}`;
  const png = await client.sample(sample.id);
  const file = path.join(out, 'store', 'samples', `${sample.id}.png`);
  // Beside it, the shipped reference model (a longer run of the fashion-mnist-cpu recipe), sampled the same way.
  const referenceStarted = Date.now();
  const reference = await client.submit({
    type: 'sample',
    body: { pretrained: 'fashion-mnist-cpu', count: 16 * workers, steps: 100, seed: 0, workers },
  });
  io.stderr(`POST /jobs/sample (pretrained fashion-mnist-cpu) → ${reference.id}\n`);
  if (!(await completed(client, reference.id, 'reference sample', io, env))) return 1;
  const referenceFile = path.join(out, 'store', 'samples', `${reference.id}.png`);
  const referenceMeta = JSON.parse(new TextDecoder().decode(await client.sample(`${reference.id}.json`))) as {
    step?: number;
  };
  const summary = {
    trainJob: run.id,
    sampleJob: sample.id,
    steps: trained.result?.step,
    workers,
    trainImagesPerSecond: Number(imagesPerSecond.toFixed(3)),
    trainSeconds: Math.round(trainSeconds),
    sampleImages: 16 * workers,
    sampleSeconds: Math.round(sampleSeconds),
    png: file,
    url,
    pngBytes: png.length,
    referencePng: referenceFile,
    referenceUrl: `${api}/samples/${reference.id}`,
    referenceStep: referenceMeta.step,
    console: `${api}/ui/jobs/${run.id}`,
    referenceSeconds: Math.round((Date.now() - referenceStarted) / 1000),
    wallSeconds: Math.round((Date.now() - started) / 1000),
  };
  io.stderr(
    `\nsample grid of this run (${trained.result?.step} steps): ${file}\nthe shipped fashion-mnist-cpu model (${referenceMeta.step} steps of its recipe): ${referenceFile}\n         URL: ${url}\nthe web console: ${api}/ui/jobs/${run.id}${demo.keepRunning ? '' : ' (served while the demo runs; --keep-running keeps it up)'}\ntotal time ${formatDuration((Date.now() - started) / 1000)}\n`,
  );
  io.stdout(JSON.stringify(summary) + '\n');
  if (demo.keepRunning) {
    io.stderr('services keep running; Ctrl-C stops them\n');
    await new Promise<void>((resolve) =>
      env.signal ? env.signal.addEventListener('abort', () => resolve()) : undefined,
    );
  }
  return 0;
}

/** Trains the demo's run and reports the group's rate; undefined (saying how it ended) unless it completed. */
async function trainDemoRun(
  service: LocalService,
  demo: Demo,
  io: CliIo,
  env: DemoEnv,
): Promise<{ id: string; trained: JobView; trainSeconds: number; imagesPerSecond: number } | undefined> {
  const { api, client } = service;
  const { steps, workers } = demo;
  let dataset = 'fashion-mnist';
  try {
    await fs.access(path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
  } catch {
    dataset = 'procedural:shapes?channels=1';
    io.stderr(`Fashion-MNIST not found in ${FASHION_MNIST_DIR}; training on the procedural dataset\n`);
  }
  const train = await client.submit({
    type: 'train',
    // The short-budget configuration docs/quality-study found best (its micro32-lr3e-4 candidate: the lowest distance at 4 and at 8 minutes).
    body: {
      dataset,
      preset: 'micro32',
      steps,
      batchSize: 16,
      learningRate: 3e-4,
      warmupSteps: 100,
      emaDecay: 0.995,
      emaWarmup: true,
      checkpointEvery: 50,
      workers,
    },
  });
  io.stderr(`POST /jobs/train → ${train.id}\nwatch it in the web console: ${api}/ui/jobs/${train.id}\n`);
  const trained = await completed(client, train.id, 'train', io, env);
  if (!trained) return undefined;
  // The whole group's rate: images of every step over the job's time on the workers (formation included).
  const trainSeconds = (Date.parse(trained.finishedAt ?? '') - Date.parse(trained.startedAt ?? '')) / 1000;
  const imagesPerSecond = ((trained.result?.step ?? 0) * 16) / trainSeconds;
  io.stderr(
    `trained ${trained.result?.step} steps of batch 16 with ${workers} worker${workers > 1 ? 's as one data-parallel group' : ''}: ${imagesPerSecond.toFixed(2)} images/s\n`,
  );
  return { id: train.id, trained, trainSeconds, imagesPerSecond };
}

/** Waits for job `id` (its bar labelled `label`); undefined, saying how it ended, unless it completed. */
async function completed(
  client: ApiClient,
  id: string,
  label: string,
  io: CliIo,
  env: DemoEnv,
): Promise<JobView | undefined> {
  const job = await waitForJob(client, id, io, env.tty, label, env.signal);
  if (job.state !== 'completed') {
    io.stderr(`the ${label} job ended ${job.state}: ${job.error ?? ''}\n`);
    return undefined;
  }
  return job;
}

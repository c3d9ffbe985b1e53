/**
 * `ddpm bench torch`: our training and sampling steps against the same U-Net in PyTorch
 * (tools/lab/bench/torch_unet.py, Debian's python3-torch), measured in the same run, on one core
 * and on the whole machine, each side in its best configuration.
 *
 * - One core: one of our processes (the engine's real step: dropout, L_simple, backward, global-norm
 *   clipping, Adam, EMA) against PyTorch with one thread doing the same work.
 * - Whole machine, both sides two ways with `workers` cores: `workers` processes (ours a
 *   data-parallel group, each its share of the batch with the all-reduce between; PyTorch's as many
 *   independent processes of one thread, each its share with no exchange at all, which no
 *   data-parallel PyTorch can beat); and one process of `workers` threads (PyTorch's, and ours
 *   where the native kernels run: their pool, DDPM_KERNEL_THREADS). Each side's better
 *   configuration is its figure; sampling likewise.
 * - What PyTorch computes with: its version and the BLAS and LAPACK libraries mapped into its
 *   process (Debian's PyTorch and NumPy use the reference BLAS unless libopenblas0-pthread is
 *   installed, which makes every comparison flatter us).
 *
 * Every measurement is interleaved with the others in rounds, so all see the same machine; the
 * ratios are ours / PyTorch's time per step (below 1: we are faster). The PyTorch twin must have
 * exactly our parameter count, or the benchmark refuses to compare.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { generationKeys, openGeneration } from '@ddpm/allreduce';
import { describeArchitecture, preset } from '@ddpm/unet';
import { Redis } from 'ioredis';

import { defaultSharedMemoryDir, openTrainer, ranks } from './group-bench';
import { probePythonBlas, referenceEnv } from './python-blas';
import { median, round } from './timing';

export interface TorchBenchOptions {
  readonly redisUrl: string;
  readonly presetName: string;
  readonly batch: number;
  /** Processes of our whole-machine configuration, and PyTorch's threads beside it. */
  readonly workers: number;
  readonly rounds: number;
  readonly backend: string;
  /** The Python with torch (DDPM_PYTHON, else /usr/bin/python3 where it exists, else python3). */
  readonly python?: string;
}

export const TORCH_SCRIPT = path.join(__dirname, '..', '..', 'bench', 'torch_unet.py');

export function defaultPython(): string {
  return process.env['DDPM_PYTHON'] ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
}

interface TorchProcess {
  readonly params: number;
  readonly version: string;
  step(cmd: 'train' | 'sample', threads: number): Promise<number>;
  close(): void;
}

/**
 * Starts the PyTorch twin for `threads` threads (its BLAS held to as many, so that nothing runs
 * beside what is measured); rejects with its stderr when Python or torch is missing.
 */
async function startTorch(python: string, config: object, batch: number, threads: number): Promise<TorchProcess> {
  const env = { ...referenceEnv().env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
  const child: ChildProcessWithoutNullStreams = spawn(python, [TORCH_SCRIPT, JSON.stringify({ ...config, batch })], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env,
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const lines = readline.createInterface({ input: child.stdout });
  const queue: ((line: string | Error) => void)[] = [];
  const failed = (why: string): Error =>
    new Error(
      `the PyTorch reference (${python} ${path.basename(TORCH_SCRIPT)}) ${why}${stderr ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`,
    );
  lines.on('line', (line) => queue.shift()?.(line));
  child.on('error', (err) => {
    for (const waiter of queue.splice(0)) waiter(failed(err.message));
  });
  child.on('exit', (code) => {
    for (const waiter of queue.splice(0)) waiter(failed(`exited with code ${code}`));
  });
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      queue.push((line) =>
        line instanceof Error ? reject(line) : resolve(JSON.parse(line) as Record<string, unknown>),
      );
    });
  const ready = await next();
  return {
    params: Number(ready['params']),
    version: String(ready['torch']),
    step: async (cmd, threads) => {
      const answer = next();
      child.stdin.write(`${JSON.stringify({ cmd, threads })}\n`);
      return Number((await answer)['ms']);
    },
    close: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

/** Whether this machine can run the comparison: a reason when it cannot. */
export async function torchUnavailable(python = defaultPython()): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn(python, ['-c', 'import torch'], { stdio: 'ignore' });
    child.on('error', (err) => resolve(`${python}: ${err.message}`));
    child.on('exit', (code) =>
      resolve(code === 0 ? undefined : `${python} cannot import torch (apt-get install python3-torch)`),
    );
  });
}

type Sample =
  | 'train1'
  | 'torchTrain1'
  | 'trainN'
  | 'trainThreads'
  | 'torchTrainThreads'
  | 'torchTrainProcesses'
  | 'sample1'
  | 'torchSample1'
  | 'sampleN'
  | 'sampleThreads'
  | 'torchSampleThreads'
  | 'torchSampleProcesses';

/** PyTorch's processes: one thread, `n` threads, and `n` of one thread with a share of the batch each. */
interface TorchSide {
  readonly one: TorchProcess;
  readonly threads: TorchProcess;
  readonly shares: readonly TorchProcess[];
}

async function startTorchSide(python: string, config: object, batch: number, n: number): Promise<TorchSide> {
  const started: TorchProcess[] = [];
  const start = async (b: number, threads: number): Promise<TorchProcess> => {
    const t = await startTorch(python, config, b, threads);
    started.push(t);
    return t;
  };
  try {
    const one = await start(batch, 1);
    const threads = await start(batch, n);
    const shares: TorchProcess[] = [];
    for (let r = 0; r < n; r++) shares.push(await start(batch / n, 1));
    return { one, threads, shares };
  } catch (err) {
    for (const t of started) t.close();
    throw err;
  }
}

/** The slowest of steps run at once (as a group's step is its slowest rank's). */
const slowest = (ms: readonly number[]): number => Math.max(...ms);

export async function benchTorch(options: TorchBenchOptions): Promise<Record<string, unknown>> {
  const { presetName, batch, workers: n, rounds } = options;
  const config = preset(presetName);
  const ours = describeArchitecture(config).totalParams;
  if (batch % n !== 0) throw new Error(`--batch ${batch} must be divisible by --workers ${n}`);
  const python = options.python ?? defaultPython();
  const blas = await probePythonBlas(python, ['torch', 'numpy']);
  const torch = await startTorchSide(python, config, batch, n);
  const storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-bench-torch-'));
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const namespace = `bench-torch-${randomBytes(4).toString('hex')}`;
  let samples: Record<Sample, number[]>;
  let group: OurGroup | undefined;
  let threaded: OurGroup | undefined;
  try {
    for (const t of [torch.one, torch.threads, ...torch.shares]) {
      if (t.params !== ours)
        throw new Error(
          `the PyTorch twin has ${t.params} parameters, ours ${ours}: the architectures differ, so the times are not comparable`,
        );
    }
    await openGeneration(redis, namespace, 3_600_000);
    // The group as a worker runs it: its gradients through shared memory when the host has it.
    const shm = defaultSharedMemoryDir();
    group = await ranks(n, options.redisUrl, namespace, {
      transport: 'fp32',
      backend: options.backend,
      ...(shm ? { sharedMemoryDir: shm } : {}),
    });
    await openOurTrainers(group, options, storeDir);
    // One process of N threads: the native kernels' pool (DDPM_KERNEL_THREADS), where they run.
    if (options.backend === 'native' && n > 1) {
      threaded = await ranks(1, options.redisUrl, namespace, {
        transport: 'fp32',
        backend: options.backend,
        env: { DDPM_KERNEL_THREADS: String(n) },
      });
      await threaded.one(0, openTrainer('single', { presetName, batch, accumulation: 1, storeDir }));
    }
    samples = await timeRounds(benchTasks(group, torch, options, threaded), rounds);
  } finally {
    for (const t of [torch.one, torch.threads, ...torch.shares]) t.close();
    await group?.close();
    await threaded?.close();
    await redis.del(generationKeys(namespace).alive).catch(() => undefined);
    redis.disconnect();
    await fs.rm(storeDir, { recursive: true, force: true });
  }
  const m = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)])) as Record<Sample, number>;
  return torchReport(options, { params: ours, version: torch.one.version, python, blas }, m);
}

type OurGroup = Awaited<ReturnType<typeof ranks>>;

/** Our trainers: `single` (rank 0 alone, the whole batch) and, with several ranks, `group` (a share each). */
async function openOurTrainers(g: OurGroup, options: TorchBenchOptions, storeDir: string): Promise<void> {
  const { presetName, batch, workers: n } = options;
  await g.one(0, openTrainer('single', { presetName, batch, accumulation: 1, storeDir }));
  if (n > 1) await g.all((rank) => openTrainer('group', { presetName, batch, accumulation: n, storeDir }, rank, n));
}

/** One step of each configuration, each task's time in ms (of steps run at once, the slowest). */
function benchTasks(
  g: OurGroup,
  torch: TorchSide,
  options: TorchBenchOptions,
  threaded: OurGroup | undefined,
): Record<Sample, () => Promise<number>> {
  const { presetName, batch, workers: n } = options;
  const ms = (replies: readonly { cmd: string; ms?: number }[]): number =>
    slowest(replies.map((m) => m.ms ?? Number.NaN));
  const none = (): Promise<number> => Promise.resolve(Number.NaN);
  return {
    trainThreads: threaded ? async () => ms([await threaded.one(0, { cmd: 'train', name: 'single', steps: 1 })]) : none,
    sampleThreads: threaded
      ? async () => ms([await threaded.one(0, { cmd: 'sample', preset: presetName, batch, steps: 1 })])
      : none,
    train1: async () => ms([await g.one(0, { cmd: 'train', name: 'single', steps: 1 })]),
    torchTrain1: () => torch.one.step('train', 1),
    trainN: async () =>
      ms(
        await g.all(() =>
          n > 1 ? { cmd: 'train', name: 'group', steps: 1 } : { cmd: 'train', name: 'single', steps: 1 },
        ),
      ),
    torchTrainThreads: () => torch.threads.step('train', n),
    torchTrainProcesses: async () => slowest(await Promise.all(torch.shares.map((t) => t.step('train', 1)))),
    sample1: async () => ms([await g.one(0, { cmd: 'sample', preset: presetName, batch, steps: 1 })]),
    torchSample1: () => torch.one.step('sample', 1),
    // Each process draws its share of the images at once, as a sample job split over processes.
    sampleN: async () => ms(await g.all(() => ({ cmd: 'sample', preset: presetName, batch: batch / n, steps: 1 }))),
    torchSampleThreads: () => torch.threads.step('sample', n),
    torchSampleProcesses: async () => slowest(await Promise.all(torch.shares.map((t) => t.step('sample', 1)))),
  };
}

/** Each task's times over `rounds` interleaved rounds, after one warm-up of each (kernel compilation, weight packing, heap growth). */
async function timeRounds(
  tasks: Record<Sample, () => Promise<number>>,
  rounds: number,
): Promise<Record<Sample, number[]>> {
  const names = Object.keys(tasks) as Sample[];
  const samples = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<Sample, number[]>;
  for (const name of names) await tasks[name]();
  for (let r = 0; r < rounds; r++) for (const name of names) samples[name].push(await tasks[name]());
  return samples;
}

/** The benchmark's JSON: per configuration our time over PyTorch's, and each side's best. */
function torchReport(
  options: TorchBenchOptions,
  torch: { params: number; version: string; python: string; blas: Awaited<ReturnType<typeof probePythonBlas>> },
  m: Record<Sample, number>,
): Record<string, unknown> {
  const { presetName, batch, workers: n, rounds } = options;
  const side = (oursMs: number, torchMs: number) => ({
    oursMs: round(oursMs, 1),
    torchMs: round(torchMs, 1),
    oursOverTorch: round(oursMs / torchMs, 3),
  });
  // A configuration not run (NaN) is never the better.
  const better = (threadsMs: number, processesMs: number) =>
    threadsMs <= processesMs ? { config: 'threads', ms: threadsMs } : { config: 'processes', ms: processesMs };
  const best = (kind: 'train' | 'sample') => {
    const ours = better(kind === 'train' ? m.trainThreads : m.sampleThreads, kind === 'train' ? m.trainN : m.sampleN);
    const theirs =
      kind === 'train'
        ? better(m.torchTrainThreads, m.torchTrainProcesses)
        : better(m.torchSampleThreads, m.torchSampleProcesses);
    return {
      ours: ours.config,
      torch: theirs.config,
      oursMs: round(ours.ms, 1),
      torchMs: round(theirs.ms, 1),
      imagesPerSecondOverTorch: round(theirs.ms / ours.ms, 3),
    };
  };
  return {
    benchmark: 'torch',
    preset: presetName,
    batch,
    rounds,
    backend: options.backend,
    params: torch.params,
    torch: torch.version,
    python: torch.python,
    blas: {
      libraries: torch.blas.libraries,
      openblas: torch.blas.openblas.config,
      // The kernels OpenBLAS runs, and who chose them (OPENBLAS_CORETYPE: the environment's, or ours by the CPU's flags).
      openblasCore: torch.blas.openblas.core,
      openblasCoretype: referenceEnv().coretype,
      numpy: torch.blas.modules['numpy'] ?? null,
    },
    measured:
      "median over interleaved rounds of one step; oursOverTorch is our time over PyTorch's (below 1: we are faster)",
    oneCore: {
      ours: '1 process',
      torch: '1 process, 1 thread',
      trainStep: side(m.train1, m.torchTrain1),
      sampleStep: side(m.sample1, m.torchSample1),
    },
    wholeMachine: {
      cores: os.cpus().length,
      processes: {
        ours: `${n} processes (a data-parallel group for training, its all-reduce included; ${batch / n} images each for sampling)`,
        torch: `${n} independent processes of 1 thread, ${batch / n} images each (no gradient exchange: an upper bound for PyTorch's data parallelism)`,
        trainStep: side(m.trainN, m.torchTrainProcesses),
        sampleStep: side(m.sampleN, m.torchSampleProcesses),
      },
      // One process of N threads: PyTorch's, and ours where the native kernels run (their pool).
      threads: {
        ours: Number.isNaN(m.trainThreads)
          ? `none: the ${options.backend} backend runs one thread a process`
          : `1 process, ${n} threads (DDPM_KERNEL_THREADS=${n})`,
        torch: `1 process, ${n} threads`,
        ...(Number.isNaN(m.trainThreads)
          ? { torchTrainMs: round(m.torchTrainThreads, 1), torchSampleMs: round(m.torchSampleThreads, 1) }
          : {
              trainStep: side(m.trainThreads, m.torchTrainThreads),
              sampleStep: side(m.sampleThreads, m.torchSampleThreads),
            }),
      },
      // Each side's better configuration against the other's: images/s, ours over PyTorch's (above 1: we are faster).
      best: { train: best('train'), sample: best('sample') },
    },
  };
}

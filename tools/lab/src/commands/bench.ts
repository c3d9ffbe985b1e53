/**
 * `ddpm bench …`: benchmarks that print JSON with ratios measured in the same run.
 * `ddpm bench all` runs every benchmark at its default size (what `npm run bench` runs).
 */
import { GRADIENT_TRANSPORTS, type GradientTransport } from '@ddpm/settings';
import { PRESET_NAMES, type PresetName } from '@ddpm/unet';

import {
  type CliIo,
  CliUsageError,
  type OptionSpec,
  parseChoice,
  parseCommandArgs,
  parseInteger,
  parseNumber,
  startTensors,
} from '@ddpm/cli/toolkit';
import { benchAllReduce, benchDataParallel, defaultSharedMemoryDir } from '../bench/group-bench';
import { runClusterBench } from '../bench/cluster-bench';
import { benchFid } from '../bench/fid-bench';
import { simulationUnavailable } from '../sim/hosts';
import { DEFAULT_MEMORY_CASES, benchMemory } from '../bench/memory-bench';
import { benchTorch, defaultPython, torchUnavailable } from '../bench/torch-bench';
import { benchUNet } from '../bench/unet-bench';

export const BENCH_USAGE = `Usage: ddpm bench unet [--preset NAME] [--batch B] [--steps K] [--profile]
       ddpm bench allreduce [--workers N] [--mb S] [--rounds R] [--transport fp32|bf16|fp16] [--data-plane redis|shm] [--redis URL]
       ddpm bench dp [--preset NAME] [--batch B] [--workers N] [--steps K] [--rounds R] [--transport fp32|bf16|fp16] [--data-plane redis|shm] [--redis URL]
       ddpm bench torch [--preset NAME] [--batch B] [--workers N] [--rounds R] [--redis URL]
       ddpm bench memory [--cases PRESET:B,...] [--steps K]
       ddpm bench fid [--dim D] [--rounds R]
       ddpm bench cluster [--hosts H] [--ranks-per-host K] [--link-mbit R] [--mb S] [--plane ranks|hub] [--rounds N] [--sweep] [--queue-ms Q] [--burst-kb B]
       ddpm bench all [options]

all: every benchmark with its own defaults; an option given applies to every benchmark that takes
it (--steps 10 makes unet time 10 rounds, dp 10 steps per round and memory 10 steps).

Output is JSON (--json is accepted for symmetry). The tensor backend is chosen as everywhere
else (DDPM_BACKEND, else tfjs-node-gpu > tfjs-node > native > wasm > cpu).

unet: a training step (forward + backward + Adam) and a sampling step of the preset against the
backend's own forward conv2d on the model's most common layer, interleaved in rounds (the conv
counts its fastest of five runs per round); GFLOP/s and the ratios train/conv and sample/conv.
  --preset ${PRESET_NAMES.join(' | ')} (default tiny32), --batch (16), --steps: timed rounds (5)
  --profile: also one training and one sampling step by op kind: each kernel's own time (ours
  and tfjs's) by phase (forward, backward, update), convolutions with their GFLOP/s, and the time
  between kernels as "other"

allreduce: the Redis all-reduce of S MB across N rank processes, interleaved with one client's SET
and GET of S MB on the same Redis (with ioredis, and with the lean connection the all-reduce moves
its values on); the bus bandwidth 2(N-1)/N * S / time against those raw rates, and the hub's own
rate (N*S in, 2(N-1)*S out per all-reduce) against ioredis's.
  --workers (2), --mb (64), --rounds (5), --transport (fp32), --data-plane (redis: the figure to
  compare with raw Redis; shm: the values through shared-memory files, Redis carrying the signals)

dp: training images/s of one process with the whole batch and of N rank processes with a share
each (accumulation N, the all-reduce between), interleaved in rounds; the speed-up, beside the
ceiling: the same N processes each training its share alone at the same time (no exchange, no
waiting), and the group's fraction of it. Each configuration has processes of its own.
  --preset (tiny32), --batch: the global batch (16), --workers (2), --steps per round (3), --rounds (3),
  --transport (fp32): how the gradients travel; --data-plane: shm (the default where the machine
  has a shared-memory folder, as a worker does: DDPM_SHM_DIR, else /dev/shm) or redis

torch: our training and sampling steps against the same U-Net in PyTorch (Debian's python3-torch;
$DDPM_PYTHON, else /usr/bin/python3), interleaved in rounds: one of our processes against one
PyTorch thread; and the whole machine two ways for each side, N processes (ours a group with its
all-reduce; PyTorch's N independent processes of one thread, an upper bound for its data
parallelism) and 1 process of N threads (ours: the native backend's kernels with
DDPM_KERNEL_THREADS=N; none on wasm), each side's better against the other's. Reports the
BLAS and LAPACK PyTorch runs on (install libopenblas0-pthread: Debian otherwise links the
reference BLAS). "all" skips it, saying why, when Python has no torch.
  --preset (tiny32), --batch (16), --workers (2), --rounds (5)

memory: the peak memory of a training step (the engine's, K steps, default 2) per preset and
micro-batch, each in a fresh process (a wasm heap never shrinks): the heap and resident set against
the estimate the server's step-memory budget uses. Cases whose estimate exceeds wasm's 4 GiB heap
are listed as not run.
  --cases (${DEFAULT_MEMORY_CASES.map(([p, b]) => `${p}:${b}`).join(',')})

fid: the Fréchet distance between two D-dimensional statistics (.npz files of random features),
ours (the library call behind "ddpm fid a.npz b.npz", each phase with its GFLOP/s) against
NumPy's eigh route and, where SciPy imports, pytorch-fid's sqrtm route, in a python3 per round
($DDPM_PYTHON, else /usr/bin/python3), interleaved; the ratios, the distances' agreement, and the
BLAS/LAPACK NumPy ran on with its thread count. "all" skips it, saying why, when Python has no
NumPy.

The Python references (torch, fid) run OpenBLAS's kernels for this CPU's instruction sets
(OPENBLAS_CORETYPE, unless the environment sets it): an OpenBLAS older than the CPU otherwise falls
back to generic SSE3 kernels several times slower, and the comparison would flatter us.
  --dim (2048), --rounds (3)

cluster: the all-reduce across H simulated hosts (network namespaces joined by links shaped to
R Mbit/s with tc; a data Redis on every host; the hub in a namespace of its own; root, ip and tc
needed), K ranks a host, S MB of fp32 values, on the ranks' own data servers or on the hub. Reports
the median all-reduce, one link's measured rate (a raw SET and GET between two hosts; and with
both directions loaded at once), the ring bound 2(N − 1)/N·S at that rate and the all-reduce over
it, and each host's bytes per all-reduce from the kernel's counters. --sweep runs 2, 4 and 8
hosts on both planes at S/4 and S MB, fits t = 2(N − 1)·α + β·(bytes on the busiest link) per
plane, and projects the CIFAR-10 model onto 8, 32 and 128 GPUs at 25 and 100 Gbit/s (a
projection). "all" leaves it out.
  --hosts (4), --ranks-per-host (1), --link-mbit (200), --mb (32), --plane (ranks), --rounds (3),
  --queue-ms (50): how long tbf lets a packet wait before it drops it, --burst-kb (4 ms of the rate)

  --redis URL   the data plane (default $DDPM_DATA_REDIS_URL, $REDIS_URL or redis://127.0.0.1:6379)
`;

const BENCH_OPTIONS: OptionSpec = {
  preset: { type: 'string' },
  batch: { type: 'string' },
  steps: { type: 'string' },
  workers: { type: 'string' },
  mb: { type: 'string' },
  rounds: { type: 'string' },
  transport: { type: 'string' },
  'data-plane': { type: 'string' },
  redis: { type: 'string' },
  json: { type: 'boolean' },
  profile: { type: 'boolean' },
  cases: { type: 'string' },
  dim: { type: 'string' },
  hosts: { type: 'string' },
  'ranks-per-host': { type: 'string' },
  'link-mbit': { type: 'string' },
  plane: { type: 'string' },
  sweep: { type: 'boolean' },
  'queue-ms': { type: 'string' },
  'burst-kb': { type: 'string' },
};

type Values = Record<string, string | boolean | undefined>;

export async function benchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, BENCH_OPTIONS);
  const which = positionals[0];
  if (
    positionals.length !== 1 ||
    !['unet', 'allreduce', 'dp', 'torch', 'memory', 'fid', 'cluster', 'all'].includes(which ?? '')
  ) {
    throw new CliUsageError(
      `expected "ddpm bench unet", "allreduce", "dp", "torch", "memory", "fid", "cluster" or "all", got "ddpm bench ${positionals.join(' ')}"`,
    );
  }
  if (which === 'cluster') return benchClusterCommand(values, io);
  const context = benchContext(values);
  const all = which === 'all';
  const results: Record<string, unknown>[] = [];
  if (which === 'unet' || all) results.push(await benchUNetCommand(context));
  if (which === 'allreduce' || all) results.push(await benchAllReduceCommand(context));
  if (which === 'dp' || all) results.push(await benchDataParallelCommand(context));
  if (which === 'torch' || all) results.push(await benchTorchCommand(context, all));
  if (which === 'memory' || all) results.push(await benchMemoryCommand(context));
  if (which === 'fid' || all) results.push(await benchFidCommand(context, all));
  io.stdout(JSON.stringify(all ? { results } : results[0], null, 2) + '\n');
  return 0;
}

/** `ddpm bench cluster`, which takes none of the other benchmarks' options and prints its own JSON. */
async function benchClusterCommand(values: Values, io: CliIo): Promise<number> {
  const unavailable = simulationUnavailable();
  if (unavailable !== undefined) throw new CliUsageError(`ddpm bench cluster: ${unavailable}`);
  const result = await runClusterBench({
    hosts: parseInteger('hosts', values['hosts'], 4, { min: 1, max: 32 }),
    ranksPerHost: parseInteger('ranks-per-host', values['ranks-per-host'], 1, { min: 1, max: 8 }),
    linkMbit: parseNumber('link-mbit', values['link-mbit'], 200),
    mb: parseNumber('mb', values['mb'], 32),
    plane: parseChoice('plane', values['plane'], ['ranks', 'hub'] as const, 'ranks'),
    rounds: parseInteger('rounds', values['rounds'], 3, { min: 1, max: 100 }),
    sweep: values['sweep'] === true,
    ...(values['queue-ms'] !== undefined ? { queueMs: parseNumber('queue-ms', values['queue-ms'], 50) } : {}),
    ...(values['burst-kb'] !== undefined ? { burstKb: parseNumber('burst-kb', values['burst-kb'], 64) } : {}),
    onLine: (line) => io.stderr(`${line}\n`),
  });
  io.stdout(JSON.stringify(result, null, 2) + '\n');
  return 0;
}

/** The options the other benchmarks share, parsed (and so checked) before any of them runs. */
interface BenchContext {
  readonly values: Values;
  readonly presetName: PresetName;
  readonly batch: number;
  readonly workers: number;
  readonly transport: GradientTransport;
  readonly redisUrl: string;
  /** The shared-memory folder a benchmark's ranks may use (`--data-plane shm`), or none. */
  readonly dataPlane: (fallback: 'redis' | 'shm') => { sharedMemoryDir?: string };
}

function benchContext(values: Values): BenchContext {
  const presetName = parseChoice('preset', values['preset'], PRESET_NAMES, 'tiny32');
  const batch = parseInteger('batch', values['batch'], 16, { min: 1, max: 4096 });
  const workers = parseInteger('workers', values['workers'], 2, { min: 1, max: 64 });
  const transport = parseChoice('transport', values['transport'], GRADIENT_TRANSPORTS, 'fp32');
  const shm = defaultSharedMemoryDir();
  const dataPlane = (fallback: 'redis' | 'shm'): { sharedMemoryDir?: string } => {
    const plane = parseChoice('data-plane', values['data-plane'], ['redis', 'shm'] as const, shm ? fallback : 'redis');
    if (plane === 'shm' && !shm)
      throw new CliUsageError(
        '--data-plane shm needs a shared-memory folder: this machine has no /dev/shm (set DDPM_SHM_DIR)',
      );
    return plane === 'shm' && shm ? { sharedMemoryDir: shm } : {};
  };
  const redisUrl = String(
    values['redis'] ?? process.env['DDPM_DATA_REDIS_URL'] ?? process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379',
  );
  return { values, presetName, batch, workers, transport, redisUrl, dataPlane };
}

async function benchUNetCommand({ values, presetName, batch }: BenchContext): Promise<Record<string, unknown>> {
  const backend = await startTensors();
  return benchUNet({
    preset: presetName,
    batch,
    steps: parseInteger('steps', values['steps'], 5, { min: 1, max: 1000 }),
    backend,
    profile: values['profile'] === true,
  });
}

function benchAllReduceCommand(context: BenchContext): Promise<Record<string, unknown>> {
  const { values, redisUrl, workers, transport, dataPlane } = context;
  return benchAllReduce({
    redisUrl,
    workers,
    megabytes: parseNumber('mb', values['mb'], 64),
    rounds: parseInteger('rounds', values['rounds'], 5, { min: 1, max: 1000 }),
    transport,
    ...dataPlane('redis'),
  });
}

async function benchDataParallelCommand(context: BenchContext): Promise<Record<string, unknown>> {
  const { values, redisUrl, presetName, batch, workers, transport, dataPlane } = context;
  const backend = await startTensors();
  return benchDataParallel({
    redisUrl,
    presetName,
    batch,
    workers,
    steps: parseInteger('steps', values['steps'], 3, { min: 1, max: 1000 }),
    rounds: parseInteger('rounds', values['rounds'], 3, { min: 1, max: 100 }),
    transport,
    ...dataPlane('shm'),
    backend: backend.name,
  });
}

/** `all` reports the torch benchmark as skipped, saying why, where Python has no torch; `torch` alone fails. */
async function benchTorchCommand(context: BenchContext, all: boolean): Promise<Record<string, unknown>> {
  const { values, redisUrl, presetName, batch, workers } = context;
  const backend = await startTensors();
  const missing = await torchUnavailable();
  if (missing !== undefined && all) return { benchmark: 'torch', skipped: missing };
  if (missing !== undefined) throw new CliUsageError(`ddpm bench torch needs PyTorch: ${missing}`);
  if (batch % workers !== 0) throw new CliUsageError(`--batch ${batch} must be divisible by --workers ${workers}`);
  return benchTorch({
    redisUrl,
    presetName,
    batch,
    workers,
    rounds: parseInteger('rounds', values['rounds'], 5, { min: 1, max: 100 }),
    backend: backend.name,
    python: defaultPython(),
  });
}

async function benchMemoryCommand({ values, redisUrl }: BenchContext): Promise<Record<string, unknown>> {
  const backend = await startTensors();
  const cases = values['cases'] === undefined ? DEFAULT_MEMORY_CASES : parseCases(String(values['cases']));
  return benchMemory({
    redisUrl,
    cases,
    steps: parseInteger('steps', values['steps'], 2, { min: 1, max: 100 }),
    backend: backend.name,
  });
}

function benchFidCommand({ values }: BenchContext, all: boolean): Promise<Record<string, unknown>> {
  const dim = parseInteger('dim', values['dim'], 2048, { min: 2, max: 8192 });
  return benchFid({
    dim,
    rounds: parseInteger('rounds', values['rounds'], 3, { min: 1, max: 100 }),
    python: defaultPython(),
    skipWithoutNumpy: all,
  });
}

/** `--cases tiny32:8,cifar10:1` → [preset, micro-batch] pairs, each checked. */
function parseCases(text: string): [string, number][] {
  return text.split(',').map((item) => {
    const [name, b] = item.split(':');
    if (
      name === undefined ||
      !(PRESET_NAMES as readonly string[]).includes(name) ||
      b === undefined ||
      !/^[1-9][0-9]*$/.test(b) ||
      Number(b) > 4096
    ) {
      throw new CliUsageError(
        `--cases takes PRESET:BATCH pairs separated by commas (presets: ${PRESET_NAMES.join(', ')}; batch 1 to 4096), got ${JSON.stringify(item)}`,
      );
    }
    return [name, Number(b)];
  });
}

/**
 * What a Python reference computes with, for benchmarks that compare with NumPy, SciPy or
 * PyTorch: a time means little without the BLAS and LAPACK behind it and the threads they may use.
 *
 * The probe imports the given modules, then lists the files mapped into its own address space
 * (/proc/self/maps) whose names contain "blas" or "lapack", with each one's real path (Debian
 * reaches OpenBLAS through alternatives: libblas.so.3 → /etc/alternatives → the OpenBLAS build).
 * Where a mapped library is OpenBLAS (Debian's, or the scipy-openblas build that NumPy and SciPy
 * wheels bundle), it asks the library itself for its configuration and thread count; otherwise the count is what the environment allows (OPENBLAS_NUM_THREADS, then
 * OMP_NUM_THREADS, unset meaning every core the process may run on).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface PythonBlas {
  readonly python: string;
  readonly pythonVersion: string;
  /** Each module's __version__, or null where it does not import. */
  readonly modules: Record<string, string | null>;
  /** Mapped files named like a BLAS or LAPACK, as mapped and with links resolved. */
  readonly libraries: readonly { readonly path: string; readonly realpath: string }[];
  readonly openblas: {
    /** openblas_get_config() of the mapped OpenBLAS: its version and build target (not the kernels it runs), or null where none is mapped. */
    readonly config: string | null;
    /** openblas_get_corename(): the CPU whose kernels a DYNAMIC_ARCH build chose at run time (OPENBLAS_CORETYPE overrides it). */
    readonly core: string | null;
    /** openblas_get_num_threads(), or the environment's limit where it cannot be asked. */
    readonly threads: number;
    readonly threadsFrom: 'openblas_get_num_threads' | 'OPENBLAS_NUM_THREADS' | 'OMP_NUM_THREADS' | 'cores';
    readonly env: { readonly OPENBLAS_NUM_THREADS: string | null; readonly OMP_NUM_THREADS: string | null };
    /** The cores this process may run on. */
    readonly cores: number;
  };
}

const PROBE = String.raw`
import ctypes, importlib, json, os, sys
modules = {}
for name in json.loads(sys.argv[1]):
    try:
        modules[name] = str(getattr(importlib.import_module(name), '__version__', 'unknown'))
    except Exception:
        modules[name] = None
libraries, seen = [], set()
with open('/proc/self/maps') as maps:
    for line in maps:
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        path = fields[5].strip()
        base = os.path.basename(path).lower()
        if ('blas' in base or 'lapack' in base) and path not in seen:
            seen.add(path)
            libraries.append({'path': path, 'realpath': os.path.realpath(path)})
env = {k: os.environ.get(k) for k in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS')}
cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
config, core, threads, source = None, None, None, None
# OpenBLAS's own names, and those of the builds NumPy and SciPy wheels bundle (scipy-openblas).
names = [('openblas_get_config', 'openblas_get_num_threads', 'openblas_get_corename'),
         ('scipy_openblas_get_config64_', 'scipy_openblas_get_num_threads64_', 'scipy_openblas_get_corename64_'),
         ('scipy_openblas_get_config', 'scipy_openblas_get_num_threads', 'scipy_openblas_get_corename')]
for lib in libraries:
    try:
        handle = ctypes.CDLL(lib['path'])
    except OSError:
        continue
    for get_config, get_threads, get_core in names:
        if hasattr(handle, get_config) and hasattr(handle, get_threads):
            getattr(handle, get_config).restype = ctypes.c_char_p
            config = getattr(handle, get_config)().decode()
            if hasattr(handle, get_core):
                getattr(handle, get_core).restype = ctypes.c_char_p
                core = getattr(handle, get_core)().decode()
            threads, source = int(getattr(handle, get_threads)()), 'openblas_get_num_threads'
            break
    if config is not None:
        break
if threads is None:
    for key in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
        if env[key] and env[key].strip().isdigit() and int(env[key]) > 0:
            threads, source = int(env[key]), key
            break
if threads is None:
    threads, source = cores, 'cores'
print(json.dumps({'pythonVersion': sys.version.split()[0], 'modules': modules, 'libraries': libraries,
                  'openblas': {'config': config, 'core': core, 'threads': threads, 'threadsFrom': source, 'env': env, 'cores': cores}}))
`;

/**
 * The OpenBLAS kernels a reference should run on this CPU, by its instruction sets: a
 * DYNAMIC_ARCH OpenBLAS picks them by CPU model, and one older than the CPU (Debian bookworm's
 * 0.3.21 on recent Xeons) falls back to its generic SSE3 "Prescott" kernels, several times slower
 * than the AVX-512 ones the CPU runs. Undefined where the flags ask for nothing better than
 * OpenBLAS's own choice, or where /proc/cpuinfo cannot be read.
 */
export function openblasCoreFor(cpuinfo = readCpuinfo()): string | undefined {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16'].every((f) => flags.has(f))) return 'Cooperlake';
  if (['avx512f', 'avx512bw', 'avx512vl'].every((f) => flags.has(f))) return 'SkylakeX';
  if (['avx2', 'fma'].every((f) => flags.has(f))) return /AuthenticAMD/.test(cpuinfo) ? 'Zen' : 'Haswell';
  return undefined;
}

function readCpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

/**
 * The environment a Python reference runs in: OPENBLAS_CORETYPE set to {@link openblasCoreFor}
 * unless the caller's environment sets it already (then that wins), and `coretype` saying which.
 */
export function referenceEnv(base: NodeJS.ProcessEnv = process.env): {
  env: NodeJS.ProcessEnv;
  coretype: { value: string | null; from: 'environment' | 'cpu flags' | 'openblas' };
} {
  if (base['OPENBLAS_CORETYPE'])
    return { env: base, coretype: { value: base['OPENBLAS_CORETYPE'], from: 'environment' } };
  const core = openblasCoreFor();
  if (core === undefined) return { env: base, coretype: { value: null, from: 'openblas' } };
  return { env: { ...base, OPENBLAS_CORETYPE: core }, coretype: { value: core, from: 'cpu flags' } };
}

/** Probes `python` after importing `modules` (those that fail to import are reported as null). */
export function probePythonBlas(
  python: string,
  modules: readonly string[],
  env: NodeJS.ProcessEnv = referenceEnv().env,
): Promise<PythonBlas> {
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-c', PROBE, JSON.stringify(modules)],
      { encoding: 'utf8', timeout: 120_000, env },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(
              `${python} could not run the BLAS probe: ${(stderr.trim().split('\n').pop() ?? '') || err.message}`,
            ),
          );
          return;
        }
        resolve({ python, ...(JSON.parse(stdout) as Omit<PythonBlas, 'python'>) });
      },
    );
  });
}

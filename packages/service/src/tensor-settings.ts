/**
 * How a process that runs tensors is set up (docs/configuration.md): which TensorFlow.js backend
 * (`DDPM_BACKEND`), our kernels' switches (`DDPM_WASM_KERNELS`, `DDPM_WASM_FMA`, `DDPM_WINOGRAD`)
 * and the native kernels' threads (`DDPM_KERNEL_THREADS`), read from the environment and checked
 * once. Tensor-free: the worker hands them
 * to its job processes, and the job process, the CLI and the benchmarks to `@ddpm/kernels`
 * (`setKernelSwitches`, `initBackend`), which reads no environment.
 */
import { type EnvError, configError, envInteger, envSwitch } from './env-values';

/** The backends `@ddpm/kernels` can load, in the order it tries them when none is named. */
export const TENSOR_BACKENDS = ['tensorflow-gpu', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type TensorBackend = (typeof TENSOR_BACKENDS)[number];

export interface TensorSettings {
  /** The backend to load (DDPM_BACKEND); unset: the first of TENSOR_BACKENDS that loads. */
  readonly backend?: TensorBackend;
  /** Our kernels, each of which can be switched off to compare against what it replaces. */
  readonly kernelSwitches: {
    /** DDPM_WASM_KERNELS (default 1): our SIMD kernels on wasm; 0, tfjs's composed ops. */
    readonly wasmKernels: boolean;
    /** DDPM_WASM_FMA (default 1): the build with fused multiply-adds where it compiles; 0, the plain build. */
    readonly wasmFma: boolean;
    /** DDPM_WINOGRAD (default 1): Winograd 3×3 convolutions; 0, tfjs's direct convolution. */
    readonly winograd: boolean;
    /** DDPM_KERNEL_THREADS (default 1): threads of the native kernels, the process's own included. */
    readonly threads: number;
  };
}

/** Reads and checks the tensor settings; a bad value `fail`s naming the variable. */
export function loadTensorSettings(env: NodeJS.ProcessEnv = process.env, fail: EnvError = configError): TensorSettings {
  const backend = env['DDPM_BACKEND'];
  if (backend !== undefined && backend !== '' && !(TENSOR_BACKENDS as readonly string[]).includes(backend))
    throw fail(`DDPM_BACKEND must be one of ${TENSOR_BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  // The threaded wasm build is gone (on two cores it was no faster than one thread): a deployment
  // that still asks for it hears so at start-up rather than running at a speed it does not expect.
  const threads = env['DDPM_WASM_THREADS'];
  if (threads !== undefined && threads !== '' && threads !== '1')
    throw fail(
      `DDPM_WASM_THREADS=${JSON.stringify(threads)}: the wasm backend runs one thread (its threaded build was no faster); ` +
        'unset DDPM_WASM_THREADS and run one worker per core (a data-parallel group uses several)',
    );
  return {
    ...(backend ? { backend: backend as TensorBackend } : {}),
    kernelSwitches: {
      wasmKernels: envSwitch(env, 'DDPM_WASM_KERNELS', true, fail),
      wasmFma: envSwitch(env, 'DDPM_WASM_FMA', true, fail),
      winograd: envSwitch(env, 'DDPM_WINOGRAD', true, fail),
      threads: envInteger(env, 'DDPM_KERNEL_THREADS', 1, 1, 64, fail),
    },
  };
}

/** The tensor settings alone, out of a configuration that holds them (the service's). */
export function tensorSettingsOf(config: TensorSettings): TensorSettings {
  return { ...(config.backend ? { backend: config.backend } : {}), kernelSwitches: config.kernelSwitches };
}

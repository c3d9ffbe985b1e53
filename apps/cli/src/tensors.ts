/**
 * The tensor backend a command runs on, as the environment asks: `DDPM_BACKEND` and the kernels'
 * switches (`DDPM_WASM_KERNELS`, `DDPM_WASM_FMA`, `DDPM_WINOGRAD`, `DDPM_KERNEL_THREADS`), read and checked by
 * `@ddpm/service` as the workers read them; a bad value is a usage error naming the variable.
 */
import { type BackendInfo, initBackend } from '@ddpm/kernels';
import { loadTensorSettings } from '@ddpm/service';

import { CliUsageError } from './cli-io';

/** Loads the backend (once per process: later calls return the first) with the kernels' switches. */
export async function startTensors(env: NodeJS.ProcessEnv = process.env, backend?: string): Promise<BackendInfo> {
  const settings = loadTensorSettings(env, (message) => new CliUsageError(message));
  return initBackend(backend === undefined ? settings : { ...settings, backend });
}

import { hasCode } from '@ddpm/core';

import { loadTensorSettings } from './tensor-settings';

describe('the tensor settings from the environment', () => {
  it('default to the first backend that loads and every kernel on', () => {
    expect(loadTensorSettings({})).toEqual({
      kernelSwitches: { wasmKernels: true, wasmFma: true, winograd: true, threads: 1 },
    });
    expect(loadTensorSettings({ DDPM_BACKEND: '', DDPM_WINOGRAD: '', DDPM_WASM_THREADS: '1' })).toEqual(
      loadTensorSettings({}),
    );
  });

  it('read the backend and each switch', () => {
    expect(
      loadTensorSettings({
        DDPM_BACKEND: 'native',
        DDPM_WASM_KERNELS: '0',
        DDPM_WASM_FMA: '0',
        DDPM_WINOGRAD: '1',
        DDPM_KERNEL_THREADS: '2',
      }),
    ).toEqual({
      backend: 'native',
      kernelSwitches: { wasmKernels: false, wasmFma: false, winograd: true, threads: 2 },
    });
  });

  it('refuse a value they do not know, naming the variable, as a configuration error', () => {
    const refused = (env: NodeJS.ProcessEnv): unknown => {
      try {
        loadTensorSettings(env);
      } catch (err) {
        return err;
      }
      throw new Error('accepted');
    };
    const tpu = refused({ DDPM_BACKEND: 'tpu' });
    expect(hasCode(tpu, 'DDPM_SERVICE_CONFIG')).toBe(true);
    expect((tpu as Error).message).toBe(
      'DDPM_BACKEND must be one of tensorflow-gpu, tensorflow, native, wasm, cpu, got "tpu"',
    );
    expect((refused({ DDPM_WINOGRAD: 'off' }) as Error).message).toBe('DDPM_WINOGRAD must be 1 or 0, got "off"');
    expect((refused({ DDPM_KERNEL_THREADS: '0' }) as Error).message).toBe(
      'DDPM_KERNEL_THREADS must be an integer from 1 to 64, got "0"',
    );
    expect((refused({ DDPM_WASM_THREADS: '2' }) as Error).message).toMatch(
      /^DDPM_WASM_THREADS="2": the wasm backend runs one thread \(its threaded build was no faster\); unset DDPM_WASM_THREADS/,
    );
    // A caller's own error for the same message (the CLI: a usage error).
    expect(() => loadTensorSettings({ DDPM_WASM_FMA: 'yes' }, (m) => new RangeError(m))).toThrow(RangeError);
  });
});

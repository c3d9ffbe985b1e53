import { BACKEND_NAMES, DEFAULT_KERNEL_SWITCHES } from '@ddpm/kernels';
import { TENSOR_BACKENDS, loadTensorSettings } from '@ddpm/service';

import { CliUsageError } from './cli-io';
import { startTensors } from './tensors';

describe('the tensor settings a command starts with', () => {
  it('name the backends the kernels can load, in their order, and default to the kernels’ switches', () => {
    expect([...TENSOR_BACKENDS]).toEqual([...BACKEND_NAMES]);
    expect(loadTensorSettings({}).kernelSwitches).toEqual({ ...DEFAULT_KERNEL_SWITCHES });
  });

  it('refuse a bad variable as a usage error naming it, before any backend loads', async () => {
    await expect(startTensors({ DDPM_WINOGRAD: 'no' })).rejects.toThrow(CliUsageError);
    await expect(startTensors({ DDPM_KERNEL_THREADS: '0' })).rejects.toThrow(/DDPM_KERNEL_THREADS must be an integer/);
  });
});

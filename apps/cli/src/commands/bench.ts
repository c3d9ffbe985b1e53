/**
 * `ddpm bench …`: benchmarks that print JSON with ratios measured in the same run.
 * `ddpm bench unet --preset NAME --batch B [--steps K]`; `ddpm bench all` runs every benchmark
 * at its default size (what `npm run bench` runs).
 */
import { initBackend } from '@ddpm/backend';
import { PRESET_NAMES } from '@ddpm/unet';

import { parseChoice, parseCommandArgs, parseInteger } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { benchUNet } from '../bench/unet-bench';

export const BENCH_USAGE = `Usage: ddpm bench unet --preset NAME --batch B [--steps K] [--json]
       ddpm bench all [--json]

unet: times a training step (forward + backward + Adam) and a sampling step of the preset, and the
backend's own forward conv2d on the model's most common layer, interleaved in rounds (the conv
counts its fastest of five runs per round); reports GFLOP/s and the ratios train/conv and
sample/conv. Output is JSON (--json is accepted for symmetry).
The backend is chosen as everywhere else (DDPM_BACKEND, else tfjs-node-gpu > tfjs-node > wasm > cpu).

  --preset   ${PRESET_NAMES.join(' | ')}   (default tiny32)
  --batch    images per step (default 16)
  --steps    timed rounds after one warm-up (default 5)
`;

export async function benchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    preset: { type: 'string' },
    batch: { type: 'string' },
    steps: { type: 'string' },
    json: { type: 'boolean' },
  });
  const which = positionals[0];
  if (positionals.length !== 1 || (which !== 'unet' && which !== 'all')) {
    throw new CliUsageError(`expected "ddpm bench unet" or "ddpm bench all", got "ddpm bench ${positionals.join(' ')}"`);
  }
  const backend = await initBackend();
  const presetName = parseChoice('preset', values['preset'], PRESET_NAMES, 'tiny32');
  const batch = parseInteger('batch', values['batch'], 16, { min: 1, max: 4096 });
  const steps = parseInteger('steps', values['steps'], 5, { min: 1, max: 1000 });
  const results = [await benchUNet({ preset: presetName, batch, steps, backend })];
  io.stdout(JSON.stringify(which === 'all' ? { results } : results[0], null, 2) + '\n');
  return 0;
}

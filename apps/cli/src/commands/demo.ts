/**
 * `ddpm demo`: the main job's training without the service. Trains a small model for a few minutes on
 * Fashion-MNIST (the Debian package) when present, on the procedural dataset otherwise, then
 * writes a sample grid and prints where it is.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { FASHION_MNIST_DIR } from '@ddpm/data';

import { parseCommandArgs, parseInteger } from '../args';
import { type CliIo } from '../cli-io';
import { trainCommand } from './train';

export const DEMO_USAGE = `Usage: ddpm demo [--steps N] [--out DIR]

Trains micro32 for N steps (default 150, a few minutes on one core) on Fashion-MNIST when
${FASHION_MNIST_DIR} exists (apt-get install dataset-fashion-mnist), else on procedural shapes,
then samples a 16-image grid from the EMA weights. --out defaults to runs/demo-<time>.
`;

export async function demoCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  const { values } = parseCommandArgs(argv, { steps: { type: 'string' }, out: { type: 'string' } });
  const steps = parseInteger('steps', values['steps'], 150, { min: 1, max: 1_000_000 });
  const out = String(values['out'] ?? path.join('runs', `demo-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  let dataset = 'fashion-mnist';
  try {
    await fs.access(path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz'));
  } catch {
    dataset = 'procedural:shapes?channels=1';
    io.stderr(
      `Fashion-MNIST not found in ${FASHION_MNIST_DIR}; using the procedural dataset (apt-get install dataset-fashion-mnist for real data)\n`,
    );
  }
  return trainCommand(
    [
      '--dataset',
      dataset,
      '--preset',
      'micro32',
      '--steps',
      String(steps),
      '--batch',
      '16',
      '--lr',
      '1e-3',
      '--warmup',
      '20',
      '--ema-decay',
      '0.995',
      '--ema-warmup',
      '--checkpoint-every',
      '50',
      '--sample-count',
      '16',
      '--sample-steps',
      '100',
      '--out',
      out,
    ],
    io,
    env,
  );
}

import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runCaptured } from '../../../../test/support/cli';

const run = runCaptured;

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-cli-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const TRAIN = [
  '--dataset',
  'procedural:shapes?size=32&channels=1',
  '--preset',
  'micro32',
  '--batch',
  '2',
  '--warmup',
  '1',
  '--lr',
  '1e-3',
  '--checkpoint-every',
  '2',
];

describe('ddpm train and the sampling commands', () => {
  it('trains, refuses to overwrite a run, resumes it, and samples from it', async () => {
    const out = path.join(dir, 'run');
    const first = await run('train', ...TRAIN, '--steps', '2', '--out', out);
    expect(first.status).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ status: 'completed', step: 2 });
    const again = await run('train', ...TRAIN, '--steps', '3', '--out', out);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('already holds a run (newest checkpoint: step 2); pass --resume');
    const resumed = await run(
      'train',
      ...TRAIN,
      '--steps',
      '3',
      '--out',
      out,
      '--resume',
      '--sample-count',
      '2',
      '--sample-steps',
      '3',
    );
    expect(resumed.status).toBe(0);
    expect(resumed.stderr).toContain('resuming from step 2');
    const summary = JSON.parse(resumed.stdout);
    expect(summary).toMatchObject({ status: 'completed', step: 3 });
    await fs.access(new URL(summary.samples));

    const grid = path.join(dir, 'grid.png');
    const sampled = await run('sample', '--checkpoint', out, '-n', '3', '--steps', '4', '--out', grid);
    expect(sampled.status).toBe(0);
    const meta = JSON.parse(await fs.readFile(path.join(dir, 'grid.json'), 'utf8'));
    expect(meta).toMatchObject({
      kind: 'grid',
      count: 3,
      step: 3,
      ema: true,
      seed: 0,
      sampler: { kind: 'ancestral', steps: 4 },
    });
    expect((await fs.stat(grid)).size).toBeGreaterThan(100);

    const strip = await run(
      'progressive',
      '--checkpoint',
      path.join(out, 'checkpoints', 'step-000000002'),
      '--count',
      '1',
      '--steps',
      '4',
      '--every',
      '2',
      '--out',
      path.join(dir, 'p.png'),
    );
    expect(strip.status).toBe(0);
    expect(JSON.parse(strip.stdout)).toMatchObject({ step: 2, frames: [4, 2, 1] });
  }, 180_000);

  it('splits a batch over the step-memory budget into micro-batches, says so, and refuses a bad budget', async () => {
    // micro32: about 107 MiB of parameter state and heap base, and 31 MiB an image; 200 MiB fits micro-batches of 2.
    process.env['DDPM_MAX_STEP_MEMORY_MB'] = '200';
    try {
      const trained = await run('train', ...TRAIN, '--batch', '8', '--steps', '1', '--out', path.join(dir, 'split'));
      expect(trained.stderr).toMatch(
        /^accumulation 1 → 4: a micro-batch of 8 micro32 images needs an estimated \d+ MiB, over the step-memory budget of 200 MiB \(DDPM_MAX_STEP_MEMORY_MB\); 4 micro-batches of 2/m,
      );
      expect(trained.status).toBe(0);
      const state = JSON.parse(
        await fs.readFile(path.join(dir, 'split', 'checkpoints', 'step-000000001', 'state.json'), 'utf8'),
      );
      expect(state.config).toMatchObject({ batchSize: 8, accumulation: 4 });
      process.env['DDPM_MAX_STEP_MEMORY_MB'] = 'lots';
      const bad = await run('train', ...TRAIN, '--steps', '1', '--out', path.join(dir, 'bad-budget'));
      expect([bad.status, bad.stderr]).toEqual([
        2,
        expect.stringContaining('DDPM_MAX_STEP_MEMORY_MB must be an integer from 1 to 9007199254740991, got "lots"'),
      ]);
    } finally {
      delete process.env['DDPM_MAX_STEP_MEMORY_MB'];
    }
  }, 120_000);

  it('rejects bad arguments with clear messages', async () => {
    expect((await run('train', '--preset', 'micro32', '--steps', '1', '--out', dir)).stderr).toContain(
      'train request needs dataset (--dataset)',
    );
    const badData = await run(
      'train',
      '--dataset',
      'imagenet:/x',
      '--preset',
      'micro32',
      '--steps',
      '1',
      '--out',
      path.join(dir, 'x'),
    );
    expect(badData.status).toBe(1);
    expect(badData.stderr).toContain('unknown dataset kind "imagenet"');
    const badLr = await run('train', ...TRAIN, '--lr', '5', '--steps', '1', '--out', path.join(dir, 'y'));
    expect(badLr.status).toBe(2);
    expect(badLr.stderr).toContain('--lr must be a number in (0, 1), got 5');
    const noRun = await run('sample', '--checkpoint', path.join(dir, 'nothing'), '--out', path.join(dir, 'z.png'));
    expect(noRun.stderr).toMatch(/no checkpoint under file:\/\//);
    expect((await run('sample', '--checkpoint', dir, '--out', 'x.jpg')).stderr).toContain(
      '--out must name a .png file',
    );
  }, 60_000);
});

/**
 * `ddpm bench torch` against the PyTorch twin of our U-Net (slow tier: it starts PyTorch and
 * times real steps). Skipped, saying so, without python3-torch.
 */
import { execFileSync } from 'node:child_process';

import { PRESET_NAMES, describeArchitecture, preset } from '@ddpm/unet';

import { describeWithPython } from '../../../../test/support/python';
import { TORCH_SCRIPT, defaultPython } from '../bench/torch-bench';
import { runCaptured as run } from '../../../../test/support/cli';

/**
 * The report rounds times to 0.1 ms but computes ratios from the unrounded medians, so the
 * ratio of the printed times may differ from the printed ratio by the rounding's relative error.
 */
function expectRatioOfRounded(ratio: number, numeratorMs: number, denominatorMs: number): void {
  const fromRounded = numeratorMs / denominatorMs;
  const tolerance = fromRounded * (0.05 / numeratorMs + 0.05 / denominatorMs) + 0.0005;
  expect(Math.abs(ratio - fromRounded)).toBeLessThanOrEqual(tolerance);
}

describeWithPython(['torch'], 'apt-get install python3-torch libopenblas0-pthread')('ddpm bench torch', () => {
  it('times our steps and the PyTorch twin (same parameter count) in one run: one core, and each side’s configurations of the whole machine', async () => {
    const { status, stdout, stderr } = await run(
      'bench',
      'torch',
      '--preset',
      'micro32',
      '--batch',
      '2',
      '--workers',
      '2',
      '--rounds',
      '1',
      '--json',
    );
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const r = JSON.parse(stdout);
    expect(r).toMatchObject({ benchmark: 'torch', preset: 'micro32', batch: 2 });
    // The default backend: native where npm ci built our kernels for this CPU, else wasm.
    expect(['native', 'wasm']).toContain(r.backend);
    expect(r.torch).toMatch(/^\d+\.\d+/);
    // What PyTorch computes with: the BLAS libraries mapped into its process, with their real paths.
    expect(r.blas.libraries.length).toBeGreaterThan(0);
    for (const lib of r.blas.libraries) expect(lib.realpath).toMatch(/blas|lapack/i);
    const threaded = r.backend === 'native';
    const sides = [r.oneCore, r.wholeMachine.processes, ...(threaded ? [r.wholeMachine.threads] : [])];
    for (const side of sides) {
      for (const step of [side.trainStep, side.sampleStep]) {
        expect(step.oursMs).toBeGreaterThan(0);
        expect(step.torchMs).toBeGreaterThan(0);
        expectRatioOfRounded(step.oursOverTorch, step.oursMs, step.torchMs);
      }
    }
    expect(r.wholeMachine.processes).toMatchObject({
      ours: expect.stringContaining('2 processes'),
      torch: expect.stringContaining('2 independent processes of 1 thread'),
    });
    expect(r.wholeMachine.threads).toMatchObject({
      torch: '1 process, 2 threads',
      ours: threaded ? '1 process, 2 threads (DDPM_KERNEL_THREADS=2)' : expect.stringMatching(/^none: /),
    });
    const torchThreads = (kind: 'train' | 'sample'): number =>
      threaded
        ? r.wholeMachine.threads[kind === 'train' ? 'trainStep' : 'sampleStep'].torchMs
        : r.wholeMachine.threads[kind === 'train' ? 'torchTrainMs' : 'torchSampleMs'];
    // Each side's best is the faster of its configurations; the ratio is of those.
    for (const kind of ['train', 'sample'] as const) {
      const step = kind === 'train' ? 'trainStep' : 'sampleStep';
      const best = r.wholeMachine.best[kind];
      const oursThreads = threaded ? r.wholeMachine.threads[step].oursMs : Number.POSITIVE_INFINITY;
      expect(best.oursMs).toBeCloseTo(Math.min(r.wholeMachine.processes[step].oursMs, oursThreads), 1);
      expect(best.torchMs).toBeCloseTo(Math.min(r.wholeMachine.processes[step].torchMs, torchThreads(kind)), 1);
      expectRatioOfRounded(best.imagesPerSecondOverTorch, best.torchMs, best.oursMs);
    }
    expect((await run('bench', 'torch', '--batch', '3', '--workers', '2')).stderr).toContain(
      '--batch 3 must be divisible by --workers 2',
    );
  }, 240_000);

  it('has a PyTorch twin of every preset with exactly our parameter count', () => {
    // The twin's count is what the benchmark checks before it compares; here for every preset.
    const configs = Object.fromEntries(PRESET_NAMES.map((name) => [name, preset(name)]));
    const counts = JSON.parse(
      execFileSync(defaultPython(), [TORCH_SCRIPT, '--params'], { input: JSON.stringify(configs), encoding: 'utf8' }),
    );
    for (const name of PRESET_NAMES)
      expect([name, counts[name]]).toEqual([name, describeArchitecture(preset(name)).totalParams]);
  }, 120_000);
});

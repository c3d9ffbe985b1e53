import { runCaptured } from '../../../../test/support/cli';

const run = runCaptured;

describe('ddpm schedule', () => {
  it('prints every coefficient at the requested timesteps as JSON', async () => {
    const { status, stdout } = await run(
      'schedule',
      '--kind',
      'linear',
      '--steps',
      '1000',
      '--at',
      '0,99,499,999',
      '--json',
    );
    expect(status).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.schedule).toEqual({ kind: 'linear', numTimesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 });
    expect(out.rows.map((r: { t: number }) => r.t)).toEqual([0, 99, 499, 999]);
    const last = out.rows[3];
    expect(Object.keys(last).sort()).toEqual(
      [
        't',
        'beta',
        'alphaBar',
        'sqrtAlphaBar',
        'sqrtOneMinusAlphaBar',
        'posteriorVariance',
        'posteriorLogVarianceClipped',
        'posteriorMeanCoef1',
        'posteriorMeanCoef2',
        'fixedLargeLogVariance',
      ].sort(),
    );
    // Independent float64 values (packages/diffusion/fixtures/golden.py).
    expect(last.alphaBar).toBeCloseTo(4.035829765375676e-5, 15);
    expect(last.sqrtAlphaBar).toBeCloseTo(Math.sqrt(4.035829765375676e-5), 14);
    expect(out.rows[1].posteriorMeanCoef1).toBeCloseTo(0.01907634531731179, 14);
    expect(out.rows[1].fixedLargeLogVariance).toBeCloseTo(-6.179206171371276, 12);
    expect(out.rows[0].posteriorVariance).toBe(0);
  });

  it('prints a readable table without --json', async () => {
    const { status, stdout } = await run('schedule', '--at', '0,999');
    expect(status).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toContain('linear schedule, T = 1000');
    expect(lines[1]).toMatch(/^\s*t\s+beta\s+alpha_bar/);
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatch(/^999\s+0\.0200000\s+0\.0000403583\s/);
  });

  it.each([
    [
      ['--kind', 'sigmoid'],
      '--kind must be one of linear, quadratic, constant, warmup10, warmup50, jsd, cosine, got "sigmoid"',
    ],
    [['--steps=-5'], '--steps must be an integer in [1, 1000000], got "-5"'],
    [['--steps', '0'], '--steps must be an integer in [1, 1000000], got "0"'],
    [['--steps', 'ten'], '--steps must be a number, got "ten"'],
    [['--at', '0,1000'], '--at: timestep 1000 is outside [0, 999]'],
    [['--at', '1,x'], '--at: "x" is not an integer'],
    [['--beta-end', '2'], 'betaEnd must be a number in (0, 1], got 2'],
    [['--frobnicate'], "Unknown option '--frobnicate'"],
  ])('rejects %j with a clear message', async (args, message) => {
    const { status, stderr } = await run('schedule', ...args);
    expect(status).toBeGreaterThan(0);
    expect(stderr).toContain(message);
  });

  it('lists commands and rejects unknown ones', async () => {
    expect((await run('--help')).stdout).toContain('schedule');
    const unknown = await run('frobnicate');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });
});

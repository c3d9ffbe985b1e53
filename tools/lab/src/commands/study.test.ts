import { resolveTrainJob } from '@ddpm/settings';

import { runCaptured } from '../../../../test/support/cli';
import { STUDY_CANDIDATES } from './study-candidates';

describe('ddpm study', () => {
  it('refuses what it cannot run before starting anything, naming the flag', async () => {
    const cases: [string[], RegExp][] = [
      [['study', 'speed'], /expected "ddpm study quality"/],
      [
        ['study', 'quality', '--candidates', 'micro32-lr1e-3,huge'],
        /--candidates: unknown candidate "huge" \(known: micro32-lr1e-3, /,
      ],
      [['study', 'quality', '--budget-minutes', '0'], /--budget-minutes must be positive/],
      [['study', 'quality', '--budget-steps', '0'], /--budget-steps must be an integer in \[1, 10000000\]/],
      [
        ['study', 'quality', '--budget-minutes', '60', '--budget-steps', '5705'],
        /--budget-minutes and --budget-steps are alternatives: give one/,
      ],
      [['study', 'quality', '--evals', '0'], /--evals must be an integer in \[1, 100\]/],
      [['study', 'quality', '--adopt', 'fashion32=train-1'], /--adopt takes NAME=JOB pairs of the candidates run/],
      [['study', 'quality', 'extra'], /unexpected argument "extra"/],
    ];
    for (const [argv, message] of cases) {
      const { status, stderr } = await runCaptured(...argv);
      expect({ argv, status, message: message.test(stderr) }).toEqual({ argv, status: 2, message: true });
    }
  });

  it('runs the affordable candidates by default and fashion32 only when named', async () => {
    const { status, stdout } = await runCaptured('study', '--help');
    expect(status).toBe(0);
    const defaults = STUDY_CANDIDATES.filter((c) => c.byDefault).map((c) => c.name);
    expect(defaults).toEqual(['micro32-lr1e-3', 'micro32-b32', 'micro32-lr3e-4', 'micro32-ema0.99']);
    expect(stdout).toContain(
      `(default: ${defaults.join(', ')}; fashion32's evaluations alone take ~30 min on 2 cores)`,
    );
    // Every candidate is a valid train request once the study adds dataset, length and budget.
    for (const c of STUDY_CANDIDATES) {
      const config = resolveTrainJob({
        dataset: 'fashion-mnist',
        steps: 1_000_000,
        ...c.request,
        budgetMinutes: 8,
        workers: 2,
      });
      expect([c.name, config.train.budgetMinutes, config.group.workers]).toEqual([c.name, 8, 2]);
    }
  });
});

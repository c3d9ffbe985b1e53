import { PROGRESS_PHASES, progressProblem } from './schemas';

describe('a progress report crossing the process boundary', () => {
  const good = { phase: 'training', step: 3, totalSteps: 10, loss: 0.5, updatedAt: '2026-12-07T10:00:00.000Z' };

  it('is taken when it is one, in every phase', () => {
    for (const phase of PROGRESS_PHASES) expect(progressProblem({ ...good, phase })).toBeUndefined();
  });

  it('is refused, saying why, when it is not', () => {
    expect(progressProblem({ ...good, phase: 'napping' })).toMatch(/^phase "napping" is not one of starting, /);
    expect(progressProblem({ ...good, step: 1.5 })).toBe('step is not a whole number');
    expect(progressProblem({ ...good, totalSteps: -1 })).toBe('totalSteps is not a whole number');
    expect(progressProblem({ ...good, updatedAt: 'soon' })).toBe('updatedAt is not a time');
    expect(progressProblem(null)).toBe('not an object');
  });
});

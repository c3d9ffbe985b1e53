import { LossCurve, MAX_POINTS, lossPoints } from './loss-curve';

describe('the loss curve', () => {
  it('keeps a point per step until it is full, then pairs neighbours: the means of every step stay exact', () => {
    const curve = LossCurve.empty();
    const losses = Array.from({ length: 2 * MAX_POINTS + 7 }, (_, i) => 1 / (i + 1));
    losses.forEach((l, i) => curve.add(i + 1, l));
    const state = curve.state();
    // Full at 1000 points (→ 500 of 2 steps), again at 1000 of 2 (→ 500 of 4): 2007 steps are
    // 501 points of 4 steps and 3 steps pending.
    expect(state.every).toBe(4);
    expect(state.spans).toHaveLength(501);
    expect(state.pending).toMatchObject({ step: 2007, count: 3 });
    const points = lossPoints(state);
    expect(points.at(-1)).toMatchObject({ step: 2007, steps: 3 });
    expect(points[0]).toEqual({ step: 4, loss: (1 + 1 / 2 + (1 / 3 + 1 / 4)) / 4, steps: 4 });
    // Every step is in exactly one point.
    expect(points.reduce((n, p) => n + p.steps, 0)).toBe(2007);
  });

  it('restored from a checkpoint, continues to the same curve as a run that never stopped', () => {
    const straight = LossCurve.empty();
    const split = LossCurve.empty();
    for (let step = 1; step <= 3000; step++) {
      const loss = Math.sin(step) + 2;
      straight.add(step, loss);
      split.add(step, loss);
    }
    const resumed = LossCurve.restore(JSON.parse(JSON.stringify(split.state())));
    for (let step = 3001; step <= 4100; step++) {
      straight.add(step, Math.sin(step) + 2);
      resumed.add(step, Math.sin(step) + 2);
    }
    expect(resumed.state()).toEqual(straight.state());
  });

  it('starts empty for a checkpoint written before curves were kept', () => {
    expect(LossCurve.restore(undefined).state()).toEqual({ every: 1, spans: [] });
  });
});

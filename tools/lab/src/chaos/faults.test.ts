import { FAULT_KINDS, FAULT_SECONDS, drawFaults, pickOf } from './faults';

describe('the chaos schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(drawFaults(3, 600, 20)).toEqual(drawFaults(3, 600, 20));
    expect(drawFaults(4, 600, 20)).not.toEqual(drawFaults(3, 600, 20));
  });

  it('draws about one fault per mean interval, at least 2 s apart, inside the run', () => {
    const draws = drawFaults(1, 1800, 20);
    expect(draws.length).toBeGreaterThan(60);
    expect(draws.length).toBeLessThan(120);
    for (const [i, d] of draws.entries()) {
      expect(d.at).toBeLessThan(1800);
      if (i > 0) expect(d.at - draws[i - 1]!.at).toBeGreaterThanOrEqual(2);
      const [least, most] = FAULT_SECONDS[d.kind];
      expect(d.seconds).toBeGreaterThanOrEqual(least);
      expect(d.seconds).toBeLessThanOrEqual(most);
      expect(d.pick).toBeGreaterThanOrEqual(0);
      expect(d.pick).toBeLessThan(1);
    }
  });

  it('brings every kind once in each round of nine', () => {
    const draws = drawFaults(9, 3600, 10);
    for (let r = 0; r + FAULT_KINDS.length <= draws.length; r += FAULT_KINDS.length) {
      expect(new Set(draws.slice(r, r + FAULT_KINDS.length).map((d) => d.kind)).size).toBe(FAULT_KINDS.length);
    }
  });

  it('lands a draw on one of the candidates, or on none when there are none', () => {
    expect(pickOf(['a', 'b', 'c'], 0)).toBe('a');
    expect(pickOf(['a', 'b', 'c'], 0.999)).toBe('c');
    expect(pickOf([], 0.5)).toBeUndefined();
  });
});

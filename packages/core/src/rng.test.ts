import { Rng } from './rng';

describe('Rng', () => {
  it('is deterministic per seed and different across seeds', () => {
    const a = Rng.fromSeed(42).normals(8);
    expect([...Rng.fromSeed(42).normals(8)]).toEqual([...a]);
    expect([...Rng.fromSeed(43).normals(8)]).not.toEqual([...a]);
    expect(Rng.fromSeed(2 ** 40).nextUint32()).not.toBe(Rng.fromSeed(0).nextUint32());
  });

  it('restores exactly from its state (what checkpoints store)', () => {
    const rng = Rng.fromSeed(7);
    rng.normals(101);
    const state = rng.state();
    const expected = [...rng.normals(10), ...rng.ints(1000, 5)];
    const restored = Rng.fromState(JSON.parse(JSON.stringify(state)));
    expect([...restored.normals(10), ...restored.ints(1000, 5)]).toEqual(expected);
  });

  it('draws standard normals and uniform integers', () => {
    const rng = Rng.fromSeed(1);
    const draws = [...rng.normals(100_000)];
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    const std = Math.sqrt(draws.reduce((a, b) => a + (b - mean) ** 2, 0) / draws.length);
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(std - 1)).toBeLessThan(0.01);
    const counts = new Array<number>(10).fill(0);
    for (const v of rng.ints(10, 100_000)) counts[v]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    const perm = [...rng.permutation(50)].sort((x, y) => x - y);
    expect(perm).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('forks independent, reproducible streams', () => {
    const base = Rng.fromSeed(5);
    const a = base.fork(0).normals(4);
    const b = base.fork(1).normals(4);
    expect([...a]).not.toEqual([...b]);
    expect([...Rng.fromSeed(5).fork(0).normals(4)]).toEqual([...a]);
  });

  it('rejects bad seeds and states', () => {
    expect(() => Rng.fromSeed(-1)).toThrow('seed must be a non-negative safe integer, got -1');
    expect(() => Rng.fromSeed(1.5)).toThrow(/got 1.5/);
    expect(() => Rng.fromState([0, 0, 0, 0])).toThrow('rng state must not be all zero');
    expect(() => Rng.fromState([1, 2, 3] as never)).toThrow(/four unsigned 32-bit integers/);
    expect(() => Rng.fromSeed(1).int(0)).toThrow(/int\(n\) needs an integer/);
  });
});

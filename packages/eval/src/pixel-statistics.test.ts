import { PixelTally } from './pixel-statistics';

describe('PixelTally', () => {
  it('counts each threshold on [0, 1], the same from bytes and from signed values', () => {
    // 0, 0.2, 0.6, 1 as bytes and as [-1, 1] values.
    const bytes = [0, 51, 153, 255];
    const fromBytes = new PixelTally().addBytes(bytes).result();
    const fromSigned = new PixelTally().addSigned(bytes.map((b) => (b / 255) * 2 - 1)).result();
    expect(fromBytes).toEqual({ mean: 0.45, background: 0.25, aboveHalf: 0.5, saturated: 0.25, values: 4 });
    expect(fromSigned.mean).toBeCloseTo(0.45, 12);
    expect({ ...fromSigned, mean: 0 }).toEqual({ ...fromBytes, mean: 0 });
  });

  it('clamps samples outside [-1, 1], adds up over chunks, and refuses nothing or NaN', () => {
    const once = new PixelTally().addSigned([-3, 3, 0, 0.5]).result();
    const chunked = new PixelTally().addSigned([-3, 3]).addSigned([0, 0.5]).result();
    expect(chunked).toEqual(once);
    expect(once).toMatchObject({ mean: (0 + 1 + 0.5 + 0.75) / 4, background: 0.25, saturated: 0.25 });
    expect(() => new PixelTally().result()).toThrow(/no pixels/);
    expect(() => new PixelTally().addSigned([Number.NaN])).toThrow(/not a number/);
  });
});

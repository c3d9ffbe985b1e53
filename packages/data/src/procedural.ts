/**
 * A dataset that needs no files: filled discs, squares and triangles of random size, position
 * and colour on a dark background, drawn deterministically from (seed, index).
 */
import { Rng } from '@ddpm/core';

import { dataError, type ImageDataset, checkIndices, settled } from './dataset';

export interface ProceduralOptions {
  readonly size?: number;
  readonly imageSize?: number;
  readonly channels?: 1 | 3;
  readonly seed?: number;
}

export function proceduralShapes(options: ProceduralOptions = {}): ImageDataset {
  const n = options.size ?? 10_000;
  const s = options.imageSize ?? 32;
  const c = options.channels ?? 1;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(n) || n < 1)
    throw dataError('DDPM_DATA_SPEC', `procedural size must be a positive integer, got ${n}`);
  if (!Number.isInteger(s) || s < 8)
    throw dataError('DDPM_DATA_SPEC', `procedural imageSize must be an integer >= 8, got ${s}`);
  const base = Rng.fromSeed(seed);
  const draw = (index: number, out: Uint8Array, offset: number): void => {
    const rng = base.fork(index);
    const shape = rng.int(3);
    const radius = s * (0.15 + 0.2 * rng.uniform());
    const cx = radius + rng.uniform() * (s - 2 * radius);
    const cy = radius + rng.uniform() * (s - 2 * radius);
    const colour = Array.from({ length: c }, () => 128 + Math.floor(rng.uniform() * 128));
    const background = Math.floor(rng.uniform() * 40);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        const inside =
          shape === 0
            ? dx * dx + dy * dy < radius * radius
            : shape === 1
              ? Math.abs(dx) < radius * 0.85 && Math.abs(dy) < radius * 0.85
              : dy < radius * 0.8 && dy > -radius && Math.abs(dx) < (dy + radius) * 0.6;
        for (let k = 0; k < c; k++) out[offset + (y * s + x) * c + k] = inside ? colour[k]! : background;
      }
    }
  };
  const dataset: ImageDataset = {
    name: `procedural:shapes?size=${n}&imageSize=${s}&channels=${c}&seed=${seed}`,
    size: n,
    height: s,
    width: s,
    channels: c,
    read(indices) {
      return settled(() => {
        checkIndices(dataset, indices);
        const per = s * s * c;
        const out = new Uint8Array(indices.length * per);
        for (let i = 0; i < indices.length; i++) draw(indices[i]!, out, i * per);
        return out;
      });
    },
  };
  return dataset;
}

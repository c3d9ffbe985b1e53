/**
 * Turning model outputs into pictures: [-1, 1] floats to bytes, square-ish grids with a margin,
 * PNG encoding (sharp / libvips).
 */
import { type ObjectStore } from '@ddpm/storage';
import sharp from 'sharp';

import { engineError } from './errors';

/** [-1, 1] → {0..255}, clipping (the inverse of Sec. 3.3's scaling). */
export function toUint8(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.max(0, Math.min(255, Math.round((values[i]! + 1) * 127.5)));
  return out;
}

/** Columns for a square-ish grid of n tiles. */
export function gridColumns(n: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(n)));
}

export interface Picture {
  readonly pixels: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
}

/**
 * Tiles `n` images of size×size×channels (uint8, HWC, concatenated) into a grid with `columns`
 * columns and a `margin`-pixel white border around each tile.
 */
export function composeGrid(
  images: Uint8Array,
  n: number,
  size: number,
  channels: number,
  options: { columns?: number; margin?: number } = {},
): Picture {
  if (images.length !== n * size * size * channels) {
    throw engineError(
      'DDPM_CONFIG_INVALID',
      `grid: ${images.length} bytes for ${n} images of ${size}x${size}x${channels}`,
    );
  }
  const columns = options.columns ?? gridColumns(n);
  const rows = Math.ceil(n / columns);
  const margin = options.margin ?? 2;
  const width = columns * (size + margin) + margin;
  const height = rows * (size + margin) + margin;
  const pixels = new Uint8Array(width * height * channels).fill(255);
  for (let k = 0; k < n; k++) {
    const top = margin + Math.floor(k / columns) * (size + margin);
    const left = margin + (k % columns) * (size + margin);
    for (let y = 0; y < size; y++) {
      const src = (k * size + y) * size * channels;
      pixels.set(images.subarray(src, src + size * channels), ((top + y) * width + left) * channels);
    }
  }
  return { pixels, width, height, channels };
}

/** How much a picture is enlarged for viewing by default: twice, unless it is already 256 pixels wide. */
export function viewScale(picture: Picture): number {
  return picture.width < 256 ? 2 : 1;
}

/**
 * Encodes a picture as PNG, enlarged `scale` times with nearest-neighbour (default
 * {@link viewScale}: small samples are hard to see at their own size).
 */
export async function encodePng(picture: Picture, scale = viewScale(picture)): Promise<Uint8Array> {
  let image = sharp(Buffer.from(picture.pixels.buffer, picture.pixels.byteOffset, picture.pixels.length), {
    raw: { width: picture.width, height: picture.height, channels: picture.channels as 1 | 3 },
  });
  if (scale !== 1) image = image.resize(picture.width * scale, picture.height * scale, { kernel: 'nearest' });
  const buffer = await image.png().toBuffer();
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

/**
 * Writes a picture and what it shows: `<key>.png` and `<key>.json` (the metadata, the picture's
 * size and the time). Returns the PNG's URL.
 */
export async function savePicture(
  store: ObjectStore,
  key: string,
  picture: Picture,
  metadata: Record<string, unknown>,
  scale?: number,
): Promise<string> {
  await store.put(`${key}.png`, await encodePng(picture, scale), { contentType: 'image/png' });
  const described = { ...metadata, width: picture.width, height: picture.height, createdAt: new Date().toISOString() };
  await store.put(`${key}.json`, new TextEncoder().encode(JSON.stringify(described, null, 2) + '\n'), {
    contentType: 'application/json',
  });
  return store.urlOf(`${key}.png`);
}

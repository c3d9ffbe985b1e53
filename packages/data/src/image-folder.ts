/**
 * A folder of PNG / JPEG images (searched recursively), decoded on demand with the paper's
 * preprocessing for its 256² datasets: centre crop to a square, then resize (sharp's `cover`).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import sharp from 'sharp';

import { allowedPath, dataAccess, readDataFile } from './data-access';
import { dataError, type ImageDataset, checkIndices } from './dataset';

/** Largest decoded image sharp accepts (pixels): a 16k × 16k image, far above any training source. */
const MAX_INPUT_PIXELS = 2 ** 28;

const EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/**
 * The folder's .png / .jpg / .jpeg files, searched recursively, sorted. Symbolic links are not
 * followed (a link inside a data root cannot lead out of it), and the count is capped.
 */
export async function listImages(root: string, maxFiles = dataAccess().maxFolderFiles): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw dataError(
        'DDPM_DATA_REFUSED',
        `cannot list ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && EXTENSIONS.has(path.extname(entry.name).toLowerCase())) {
        out.push(full);
        if (out.length > maxFiles)
          throw dataError('DDPM_DATA_REFUSED', `image folder ${root} holds more than the cap of ${maxFiles} images`);
      }
    }
  };
  await walk(root);
  return out.sort();
}

/** Width and height of an image file, from its header. */
export async function imageDimensions(file: string): Promise<{ width: number; height: number }> {
  try {
    const { width, height } = await sharp(file).metadata();
    if (width === undefined || height === undefined) throw new Error('no dimensions in its header');
    return { width, height };
  } catch (err) {
    throw dataError('DDPM_DATA_INVALID', `cannot read image ${file}: ${(err as Error).message}`);
  }
}

export async function openImageFolder(root: string, options: { size: number; channels: 1 | 3 }): Promise<ImageDataset> {
  const { real } = await allowedPath(root, 'directory');
  const files = await listImages(real);
  if (files.length === 0)
    throw dataError('DDPM_DATA_INVALID', `image folder ${root} contains no .png, .jpg or .jpeg files`);
  const { size, channels } = options;
  const decode = async (file: string): Promise<Uint8Array> => {
    // Read through the data access checks (caps, roots, no symlink swapped in), then decode from memory.
    const bytes = await readDataFile(file);
    try {
      let pipeline = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS })
        .resize(size, size, { fit: 'cover', position: 'centre' })
        .removeAlpha();
      pipeline = channels === 1 ? pipeline.greyscale() : pipeline.toColourspace('srgb');
      const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
      if (info.width !== size || info.height !== size || info.channels !== channels) {
        throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}`);
      }
      return new Uint8Array(data.buffer, data.byteOffset, data.length);
    } catch (err) {
      throw dataError('DDPM_DATA_INVALID', `cannot decode image ${file}: ${(err as Error).message}`);
    }
  };
  const dataset: ImageDataset = {
    name: `folder:${root}`,
    size: files.length,
    height: size,
    width: size,
    channels,
    async read(indices) {
      checkIndices(dataset, indices);
      const per = size * size * channels;
      const images = await Promise.all(Array.from(indices, (i) => decode(files[i]!)));
      const out = new Uint8Array(indices.length * per);
      images.forEach((img, i) => out.set(img, i * per));
      return out;
    },
  };
  return dataset;
}

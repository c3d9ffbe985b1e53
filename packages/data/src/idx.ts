/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST), gzipped or not: a 4-byte magic (0x0000,
 * type 0x08 = unsigned byte, number of dimensions), big-endian int32 dimensions, then the data.
 * Image files have 3 dimensions [N, H, W].
 */
import { gunzipIfGzip, readDataFile } from './data-access';
import { dataError, type ImageDataset, checkIndices, settled } from './dataset';

/** The file's bytes (within the data roots and caps), gunzipped when they are gzip. */
async function readIdxBytes(file: string): Promise<Buffer> {
  return gunzipIfGzip(await readDataFile(file), file);
}

/**
 * The class labels of an IDX label file (1 dimension [N] of unsigned bytes), checked to number
 * `count` (the images they label).
 */
export async function readIdxLabels(file: string, count: number): Promise<Uint8Array> {
  const bytes = await readIdxBytes(file);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08 || bytes[3] !== 1) {
    throw dataError('DDPM_DATA_INVALID', `${file} is not an IDX label file (expected unsigned bytes in 1 dimension)`);
  }
  const n = bytes.readUInt32BE(4);
  if (n !== count) throw dataError('DDPM_DATA_INVALID', `${file} labels ${n} examples but its images number ${count}`);
  if (bytes.length < 8 + n)
    throw dataError('DDPM_DATA_INVALID', `${file} is truncated: ${n} labels declared, ${bytes.length - 8} present`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset + 8, n);
}

/** An IDX image file as a dataset; with `labelsFile`, its `labels()` reads the class labels. */
export async function openIdx(file: string, options: { labelsFile?: string } = {}): Promise<ImageDataset> {
  return idxDataset(await readIdxBytes(file), file, options);
}

/** An IDX image file's (gunzipped) bytes as a dataset; `file` names it in messages. */
export function idxDataset(bytes: Buffer, file: string, options: { labelsFile?: string } = {}): ImageDataset {
  if (bytes.length < 4)
    throw dataError('DDPM_DATA_INVALID', `${file} is ${bytes.length} bytes long, too short for an IDX header`);
  const [zero0, zero1, type, dims] = [bytes[0], bytes[1], bytes[2], bytes[3]];
  if (zero0 !== 0 || zero1 !== 0) throw dataError('DDPM_DATA_INVALID', `${file} is not an IDX file (bad magic number)`);
  if (type !== 0x08)
    throw dataError(
      'DDPM_DATA_INVALID',
      `${file} holds IDX type 0x${type!.toString(16)}; only unsigned bytes (0x08) are images`,
    );
  if (dims !== 3)
    throw dataError(
      'DDPM_DATA_INVALID',
      `${file} has ${dims} dimensions; image files have 3 (N, H, W) — is this a label file?`,
    );
  if (bytes.length < 16) throw dataError('DDPM_DATA_INVALID', `${file} is truncated inside its header`);
  const n = bytes.readUInt32BE(4);
  const h = bytes.readUInt32BE(8);
  const w = bytes.readUInt32BE(12);
  const expected = 16 + n * h * w;
  if (n === 0 || h === 0 || w === 0)
    throw dataError('DDPM_DATA_INVALID', `${file} declares an empty dataset [${n}, ${h}, ${w}]`);
  if (bytes.length < expected) {
    throw dataError(
      'DDPM_DATA_INVALID',
      `${file} is truncated: the header declares ${n} images of ${h}x${w} (${expected} bytes) but it has ${bytes.length}`,
    );
  }
  const pixels = new Uint8Array(bytes.buffer, bytes.byteOffset + 16, n * h * w);
  const dataset: ImageDataset = {
    name: `idx:${file}`,
    size: n,
    height: h,
    width: w,
    channels: 1,
    read(indices) {
      return settled(() => {
        checkIndices(dataset, indices);
        const per = h * w;
        const out = new Uint8Array(indices.length * per);
        for (let i = 0; i < indices.length; i++)
          out.set(pixels.subarray(indices[i]! * per, (indices[i]! + 1) * per), i * per);
        return out;
      });
    },
    ...(options.labelsFile !== undefined ? { labels: () => readIdxLabels(options.labelsFile!, n) } : {}),
  };
  return dataset;
}

/**
 * NumPy's `.npy` and `.npz` formats, enough for feature statistics files: the `mu` / `sigma`
 * pairs that pytorch-fid and TTUR read and write (so the published CIFAR-10 statistics can be
 * brought in). Arrays of little- or big-endian float32 / float64 (and integer types, read as
 * numbers), C or Fortran order; `.npz` written as `numpy.savez` writes it (a stored zip), read
 * stored or deflated (`savez_compressed`).
 * Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
import { unzipSync, zipSync } from 'fflate';

import { evalError } from './errors';
import { type FeatureStatistics, type KeptFeatures } from './feature-statistics';

export interface NpyArray {
  readonly shape: readonly number[];
  /** The values in C (row-major) order, whatever order the file had. */
  readonly data: Float64Array;
  /** The file's dtype descriptor, e.g. `<f8`. */
  readonly dtype: string;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const fail = (name: string, why: string): never => {
  throw evalError('DDPM_EVAL_FILE_INVALID', `${name}: ${why}`);
};

/** Parses one `.npy` file. `name` is for messages. */
export function readNpy(bytes: Uint8Array, name = 'array.npy'): NpyArray {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail(name, 'not a .npy file (no \\x93NUMPY magic)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) fail(name, 'truncated header');
    headerLength = view.getUint32(8, true);
    headerStart = 12;
  } else {
    return fail(name, `.npy format version ${major} is not supported (1, 2 and 3 are)`);
  }
  if (headerStart + headerLength > bytes.length) fail(name, 'truncated header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    bytes.subarray(headerStart, headerStart + headerLength),
  );
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined)
    return fail(name, `unreadable header ${JSON.stringify(header.trim())}`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  if (shape.some((s) => !Number.isInteger(s) || s < 0)) fail(name, `bad shape (${shapeText})`);
  const m = /^([<>|=])([fiu])(\d+)$/.exec(descr);
  if (!m) return fail(name, `dtype ${descr} is not supported (float and integer arrays are)`);
  const [, order, kind, sizeText] = m as unknown as [string, string, 'f' | 'i' | 'u', string];
  const size = Number(sizeText);
  const little = order !== '>';
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = headerStart + headerLength;
  if (bytes.length - dataStart < count * size)
    fail(name, `${bytes.length - dataStart} bytes of data for ${count} values of ${size} bytes`);
  const read = ((): ((offset: number) => number) => {
    if (kind === 'f' && size === 8) return (o) => view.getFloat64(o, little);
    if (kind === 'f' && size === 4) return (o) => view.getFloat32(o, little);
    if (kind === 'i' && size === 8) return (o) => Number(view.getBigInt64(o, little));
    if (kind === 'i' && size === 4) return (o) => view.getInt32(o, little);
    if (kind === 'u' && size === 1) return (o) => view.getUint8(o);
    if (kind === 'u' && size === 4) return (o) => view.getUint32(o, little);
    return fail(name, `dtype ${descr} is not supported`);
  })();
  const data = new Float64Array(count);
  if (fortran === 'True' && shape.length > 1) {
    // Column-major on disk: element (i₀, i₁, …) is at Σ i_k · Π_{j<k} shape_j.
    const strides = shape.map((_, k) => shape.slice(0, k).reduce((a, b) => a * b, 1));
    const index = new Array<number>(shape.length).fill(0);
    for (let c = 0; c < count; c++) {
      let f = 0;
      for (let k = 0; k < shape.length; k++) f += index[k]! * strides[k]!;
      data[c] = read(dataStart + f * size);
      for (let k = shape.length - 1; k >= 0; k--) {
        if (++index[k]! < shape[k]!) break;
        index[k] = 0;
      }
    }
  } else {
    for (let c = 0; c < count; c++) data[c] = read(dataStart + c * size);
  }
  return { shape, data, dtype: descr };
}

/** One `.npy` file (version 1.0, little-endian float64, C order). */
export function writeNpy(shape: readonly number[], data: Float64Array): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count)
    throw evalError('DDPM_EVAL_SHAPE', `${data.length} values for shape (${shape.join(', ')})`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f8', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Magic, version, length, header and its newline together a multiple of 64 bytes.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.length * 8);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const start = 10 + header.length;
  for (let i = 0; i < data.length; i++) view.setFloat64(start + i * 8, data[i]!, true);
  return out;
}

/** The arrays of an `.npz` file by name (without `.npy`). */
export function readNpz(bytes: Uint8Array, name = 'file.npz'): Map<string, NpyArray> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (err) {
    return fail(name, `not a zip archive (${(err as Error).message})`);
  }
  const arrays = new Map<string, NpyArray>();
  for (const [file, content] of Object.entries(files)) {
    if (!file.endsWith('.npy')) continue;
    arrays.set(file.slice(0, -4), readNpy(content, `${name}/${file}`));
  }
  return arrays;
}

/** An `.npz` archive of float64 arrays, stored (as `numpy.savez` writes it). */
export function writeNpz(
  arrays: Readonly<Record<string, { shape: readonly number[]; data: Float64Array }>>,
): Uint8Array {
  const files: Record<string, [Uint8Array, { level: 0 }]> = {};
  for (const [key, { shape, data }] of Object.entries(arrays))
    files[`${key}.npy`] = [writeNpy(shape, data), { level: 0 }];
  return zipSync(files);
}

/**
 * Feature statistics from an `.npz` with `mu` [d] and `sigma` [d, d] (pytorch-fid, TTUR), read
 * once: with our own files' `count` and `features` [n, d] when they are there.
 */
export function statisticsFromNpz(
  bytes: Uint8Array,
  name = 'statistics.npz',
): FeatureStatistics & { readonly countKnown: boolean; readonly features?: KeptFeatures } {
  const arrays = readNpz(bytes, name);
  const mu = arrays.get('mu');
  const sigma = arrays.get('sigma');
  if (!mu || !sigma)
    return fail(
      name,
      `needs arrays mu and sigma (pytorch-fid's format), found ${[...arrays.keys()].join(', ') || 'none'}`,
    );
  if (mu.shape.length !== 1) fail(name, `mu has shape (${mu.shape.join(', ')}), expected (d,)`);
  const d = mu.shape[0]!;
  if (sigma.shape.length !== 2 || sigma.shape[0] !== d || sigma.shape[1] !== d)
    fail(name, `sigma has shape (${sigma.shape.join(', ')}), expected (${d}, ${d}) to match mu`);
  // Our own files also carry the sample count and a sample of the features; pytorch-fid's do not.
  const n = arrays.get('count');
  const features = arrays.get('features');
  if (features && (features.shape.length !== 2 || features.shape[1] !== d))
    fail(name, `features has shape (${features.shape.join(', ')}), expected (n, ${d}) to match mu`);
  return {
    dim: d,
    count: n ? n.data[0]! : 0,
    countKnown: n !== undefined,
    mean: mu.data,
    covariance: sigma.data,
    ...(features ? { features: { featuresND: Float32Array.from(features.data), count: features.shape[0]! } } : {}),
  };
}

/**
 * Statistics as an `.npz` that pytorch-fid reads (`mu`, `sigma`), with our `count` beside them
 * and, when given, a sample of the features (`features` [n, d], for KID).
 */
export function statisticsToNpz(statistics: FeatureStatistics, features?: KeptFeatures): Uint8Array {
  return writeNpz({
    mu: { shape: [statistics.dim], data: statistics.mean },
    sigma: { shape: [statistics.dim, statistics.dim], data: statistics.covariance },
    count: { shape: [1], data: Float64Array.of(statistics.count) },
    ...(features
      ? { features: { shape: [features.count, statistics.dim], data: Float64Array.from(features.featuresND) } }
      : {}),
  });
}

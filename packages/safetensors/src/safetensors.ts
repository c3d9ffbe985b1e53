/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length, a JSON header mapping each tensor name to {dtype, shape, data_offsets} plus an
 * optional string-to-string `__metadata__`, then the raw little-endian tensor bytes. We write F32
 * only and add a sha256 of the data section to the metadata, which the reader verifies.
 */
import { errorCodes, sha256Hex } from '@ddpm/core';

/** Bytes that are not a safetensors file we can read (the code the weights' loaders report). */
const safetensorsError = errorCodes({ DDPM_WEIGHTS_INVALID: 'invalid' });

export interface NamedArray {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface DecodedSafetensors {
  /** Tensors in file order. */
  readonly tensors: NamedArray[];
  readonly metadata: Record<string, string>;
}

const CHECKSUM_KEY = 'ddpm.sha256';
/** Typed arrays are host-endian; safetensors is little-endian. Copy bytes directly when they agree. */
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function fail(message: string): never {
  throw safetensorsError('DDPM_WEIGHTS_INVALID', message);
}

/** Serialises float32 tensors with metadata; a sha256 of the data section is added to it. */
export function encodeSafetensors(tensors: readonly NamedArray[], metadata: Record<string, string> = {}): Uint8Array {
  const seen = new Set<string>();
  let offset = 0;
  const entries: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name))
      fail(`duplicate or reserved tensor name ${JSON.stringify(t.name)}`);
    seen.add(t.name);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length)
      fail(`tensor ${JSON.stringify(t.name)} has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    entries[t.name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + 4 * size] };
    offset += 4 * size;
  }
  const data = new Uint8Array(offset);
  const view = new DataView(data.buffer);
  let position = 0;
  for (const t of tensors) {
    if (LITTLE_ENDIAN_HOST) {
      data.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), position);
      position += t.data.byteLength;
    } else {
      for (let i = 0; i < t.data.length; i++, position += 4) view.setFloat32(position, t.data[i]!, true);
    }
  }
  const header = { __metadata__: { ...metadata, [CHECKSUM_KEY]: sha256Hex(data) }, ...entries };
  let json = JSON.stringify(header);
  // Pad the header with spaces to an 8-byte boundary, as the reference writer does.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(data, 8 + headerBytes.length);
  return out;
}

/** Parses and verifies a safetensors buffer; every error names what is wrong. */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  if (bytes.length < 8) fail(`weights are ${bytes.length} bytes long, too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    fail(
      `safetensors header claims ${headerLength} bytes but the buffer holds ${bytes.length - 8}: truncated or not safetensors`,
    );
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, headerLength).toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch (err) {
    fail(`safetensors header is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail('safetensors header is not a JSON object');
  const data = bytes.subarray(8 + headerLength);
  const metadata = (header['__metadata__'] ?? {}) as Record<string, string>;
  const expected = metadata[CHECKSUM_KEY];
  if (expected !== undefined) {
    const actual = sha256Hex(data);
    if (actual !== expected)
      fail(`weights checksum mismatch: header says sha256 ${expected}, data is ${actual} (corrupt or truncated)`);
  }
  const tensors: NamedArray[] = [];
  const entries = Object.entries(header).filter(([name]) => name !== '__metadata__');
  entries.sort(
    (a, b) =>
      (a[1] as { data_offsets: number[] }).data_offsets[0]! - (b[1] as { data_offsets: number[] }).data_offsets[0]!,
  );
  for (const [name, raw] of entries) {
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (entry.dtype !== 'F32')
      fail(`tensor ${JSON.stringify(name)} has dtype ${JSON.stringify(entry.dtype)}; only F32 is supported`);
    const shape = entry.shape;
    const offsets = entry.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      fail(`tensor ${JSON.stringify(name)} has a malformed shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2)
      fail(`tensor ${JSON.stringify(name)} has malformed data_offsets`);
    const [begin, end] = offsets as [number, number];
    const size = (shape as number[]).reduce((a, b) => a * b, 1);
    if (!(
      Number.isInteger(begin) &&
      Number.isInteger(end) &&
      begin >= 0 &&
      end === begin + 4 * size &&
      end <= data.length
    )) {
      fail(
        `tensor ${JSON.stringify(name)} has data_offsets [${begin}, ${end}] outside the ${data.length}-byte data section or not matching its shape`,
      );
    }
    const values = new Float32Array(size);
    if (LITTLE_ENDIAN_HOST) {
      new Uint8Array(values.buffer).set(data.subarray(begin, end));
    } else {
      const dv = new DataView(data.buffer, data.byteOffset + begin, end - begin);
      for (let i = 0; i < size; i++) values[i] = dv.getFloat32(4 * i, true);
    }
    tensors.push({ name, shape: shape as number[], data: values });
  }
  return { tensors, metadata };
}

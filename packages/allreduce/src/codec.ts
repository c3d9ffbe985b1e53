/**
 * Gradient values on the wire: fp32 as they are (the sum is then bit-identical to one process
 * adding the same values in the same order), or bf16 / fp16 at half the bytes. Decoding always
 * yields float32, and sums are float32 additions in rank order, so every rank that decodes the
 * same bytes gets the same numbers.
 */
export type Transport = 'fp32' | 'bf16' | 'fp16';

export function bytesPerValue(transport: Transport): number {
  switch (transport) {
    case 'fp32':
      return 4;
    case 'bf16':
    case 'fp16':
      return 2;
    default: {
      const unreachable: never = transport;
      throw new Error(`unknown transport ${String(unreachable)}`);
    }
  }
}

/** float32 bits → bfloat16 bits, rounding to nearest even (NaN stays NaN). */
function toBf16(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 bits → IEEE binary16 bits, rounding to nearest even, overflow to ±Inf, subnormals kept. */
function toFp16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && (r & 1) === 1)) r += 1;
    return sign | r;
  }
  let r = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1) === 1)) r += 1;
  return sign | r;
}

function fromFp16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Every binary16 value as float32, built once (256 KiB): decoding is a table lookup. */
let fp16Table: Float32Array | undefined;
function fp16Values(): Float32Array {
  if (fp16Table === undefined) {
    fp16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) fp16Table[h] = fromFp16(h);
  }
  return fp16Table;
}

/** `values` times `scale` (rounded to float32), or `values` itself when the scale is 1. */
function scaled(values: Float32Array, scale: number): Float32Array {
  if (scale === 1) return values;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! * scale;
  return out;
}

/**
 * Values, each multiplied by `scale` first, as wire bytes. Plain loops over typed arrays (no
 * per-value calls through Float32Array.from, which cost 100-350 ns a value; these take 1-15 ns).
 */
export function encode(values: Float32Array, transport: Transport, scale = 1): Buffer {
  const v = scaled(values, scale);
  if (transport === 'fp32') return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  const out = new Uint16Array(v.length);
  if (transport === 'bf16') for (let i = 0; i < bits.length; i++) out[i] = toBf16(bits[i]!);
  else for (let i = 0; i < bits.length; i++) out[i] = toFp16(bits[i]!);
  return Buffer.from(out.buffer);
}

/** Wire bytes → float32 values, each multiplied by `scale` after decoding. */
export function decode(bytes: Uint8Array, transport: Transport, scale = 1): Float32Array {
  if (transport === 'fp32') {
    // A large reply is a buffer of its own (a view costs nothing); a small one may sit at any byte
    // of a shared pool, and Float32Array needs 4-byte alignment: copy those.
    const out =
      bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Float32Array(bytes.byteLength / 4);
    if (out.buffer !== bytes.buffer) new Uint8Array(out.buffer).set(bytes);
    if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] = out[i]! * scale;
    return out;
  }
  const halves = new Uint16Array(bytes.byteLength / 2);
  new Uint8Array(halves.buffer).set(bytes);
  const out = new Float32Array(halves.length);
  if (transport === 'bf16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
    if (scale !== 1) for (let i = 0; i < out.length; i++) out[i] = out[i]! * scale;
  } else {
    const table = fp16Values();
    for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]!]! * scale;
  }
  return out;
}

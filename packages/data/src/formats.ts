/**
 * Telling dataset formats apart by their bytes, for datasets uploaded to the object store (the API
 * checks an upload with these before storing it; the job process opens it by them). Tensor-free
 * and sharp-free: the API imports it as @ddpm/data/formats.
 */

/** One CIFAR-10 binary record: a label byte, then the 32×32 red, green and blue planes. */
export const CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32;

/** Whether (gunzipped) bytes start like an IDX image file: zero, zero, unsigned bytes, 3 dimensions. */
export function looksLikeIdxImages(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0x08 && bytes[3] === 3;
}

/** Whether `length` bytes could be CIFAR-10 binary records. */
export function looksLikeCifar10(length: number): boolean {
  return length > 0 && length % CIFAR10_RECORD_BYTES === 0;
}

/** Whether bytes are gzip (magic 1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Bytes of an IDX image file's header: magic, then the image count, rows and columns (big-endian). */
export const IDX_HEADER_BYTES = 16;

/**
 * What contradicts itself in an IDX image file whose content is `length` bytes and starts with
 * `head` (at least its header), or undefined when the header and the length agree.
 */
export function idxImagesProblem(head: Uint8Array, length: number): string | undefined {
  if (!looksLikeIdxImages(head)) return 'it is not an IDX image file (magic 00 00 08 03)';
  if (head.length < IDX_HEADER_BYTES || length < IDX_HEADER_BYTES)
    return `an IDX header is ${IDX_HEADER_BYTES} bytes and the file has ${length}`;
  const view = new DataView(head.buffer, head.byteOffset, IDX_HEADER_BYTES);
  const [count, rows, cols] = [view.getUint32(4), view.getUint32(8), view.getUint32(12)];
  if (count === 0 || rows === 0 || cols === 0) return `its IDX header says ${count} images of ${rows}x${cols}`;
  const expected = IDX_HEADER_BYTES + count * rows * cols;
  if (expected !== length)
    return `its IDX header says ${count} images of ${rows}x${cols} (${expected} bytes with the header), but it has ${length} bytes`;
  return undefined;
}

/** What is wrong with bytes offered as CIFAR-10 binary records, or undefined. */
export function cifar10Problem(bytes: Uint8Array): string | undefined {
  if (!looksLikeCifar10(bytes.length))
    return `${bytes.length} bytes are not a whole number of CIFAR-10 records (${CIFAR10_RECORD_BYTES} bytes each)`;
  for (let offset = 0; offset < bytes.length; offset += CIFAR10_RECORD_BYTES) {
    const label = bytes[offset]!;
    if (label > 9)
      return `record ${offset / CIFAR10_RECORD_BYTES} has label ${label}; CIFAR-10 labels are 0-9 (is this CIFAR-100?)`;
  }
  return undefined;
}

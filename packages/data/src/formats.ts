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

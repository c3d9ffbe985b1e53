/** sha256 checksums as lowercase hex: what manifests and weight files record and verify. */
import { createHash } from 'node:crypto';

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

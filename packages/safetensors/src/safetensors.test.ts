import { hasCode } from '@ddpm/core';

import { decodeSafetensors, encodeSafetensors } from './safetensors';

function headerOf(bytes: Uint8Array): Record<string, unknown> {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return JSON.parse(Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8')) as Record<string, unknown>;
}

/** A file whose header is the given JSON text, padded as the format asks, followed by `data`. */
function rawFile(json: string, data = new Uint8Array(0)): Uint8Array {
  const header = Buffer.from(json + ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8));
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

describe('safetensors', () => {
  const tensors = [
    { name: 'b', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-30, -0]) },
    { name: 'a', shape: [], data: Float32Array.from([7]) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
  ];

  it('round-trips tensors in file order, bit for bit, with their metadata', () => {
    const decoded = decodeSafetensors(encodeSafetensors(tensors, { step: '42' }));
    expect(decoded.tensors.map((t) => t.name)).toEqual(['b', 'a', 'empty']);
    decoded.tensors.forEach((t, i) => {
      expect(t.shape).toEqual(tensors[i]!.shape);
      expect(new Uint8Array(t.data.buffer)).toEqual(new Uint8Array(tensors[i]!.data.buffer));
    });
    expect(decoded.metadata['step']).toBe('42');
  });

  it("writes the standard header: a padded length, F32 entries with offsets, the data's sha256", () => {
    const bytes = encodeSafetensors(tensors);
    const length = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(length % 8).toBe(0);
    expect(bytes.length).toBe(8 + length + 4 * 7);
    const header = headerOf(bytes);
    expect(header['b']).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(header['a']).toEqual({ dtype: 'F32', shape: [], data_offsets: [24, 28] });
    expect((header['__metadata__'] as Record<string, string>)['ddpm.sha256']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reads a file another writer made without our checksum', () => {
    const data = new Uint8Array(Float32Array.from([0.5, 2]).buffer);
    const decoded = decodeSafetensors(rawFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data));
    expect(decoded.tensors).toEqual([{ name: 'x', shape: [2], data: Float32Array.from([0.5, 2]) }]);
    expect(decoded.metadata).toEqual({});
  });

  it('refuses what it cannot write, naming the tensor', () => {
    expect(() => encodeSafetensors([{ name: 'a', shape: [2], data: new Float32Array(3) }])).toThrow(
      'tensor "a" has 3 values for shape [2]',
    );
    expect(() => encodeSafetensors([tensors[1]!, tensors[1]!])).toThrow('duplicate or reserved tensor name "a"');
    expect(() => encodeSafetensors([{ name: '__metadata__', shape: [], data: new Float32Array(1) }])).toThrow(
      'duplicate or reserved tensor name "__metadata__"',
    );
  });

  it('refuses corrupt, truncated and foreign bytes with an error naming what is wrong', () => {
    const bytes = encodeSafetensors(tensors);
    const corrupt = bytes.slice();
    corrupt[corrupt.length - 5]! ^= 0xff;
    const cases: [Uint8Array, string | RegExp][] = [
      [corrupt, /weights checksum mismatch: header says sha256 [0-9a-f]{64}, data is [0-9a-f]{64}/],
      [bytes.subarray(0, 40), /truncated or not safetensors/],
      [new Uint8Array(3), 'weights are 3 bytes long, too short for a safetensors header'],
      [rawFile('{not json'), /safetensors header is not valid JSON/],
      [rawFile('[1,2]'), 'safetensors header is not a JSON object'],
      [rawFile('{"x":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}', new Uint8Array(2)), /only F32 is supported/],
      [rawFile('{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', new Uint8Array(4)), /malformed shape/],
      [rawFile('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(4)), /outside the 4-byte data/],
    ];
    for (const [input, message] of cases) {
      let thrown: unknown;
      try {
        decodeSafetensors(input);
      } catch (err) {
        thrown = err;
      }
      expect(hasCode(thrown, 'DDPM_WEIGHTS_INVALID')).toBe(true);
      expect(() => decodeSafetensors(input)).toThrow(message);
    }
  });
});

/**
 * The wire codecs against independent conversions: PyTorch's float32 → bfloat16 and NumPy's
 * float32 → float16 (both round to nearest even), on values chosen to hit every branch (halfway
 * cases, subnormals, overflow, infinities, NaN, signed zeros) and on random bit patterns; decoding
 * gives back exactly the float32 those halves denote, times the scale. Skipped, saying so, without
 * python3-numpy and python3-torch.
 */
import { execFileSync } from 'node:child_process';

import { PYTHON, describeWithPython } from '../../../test/support/python';
import { decode, encode } from './codec';

/** float32 values from bit patterns, as the Python side reads them (little-endian bytes, hex). */
function valuesFromBits(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

function reference(values: Float32Array): { bf16: number[]; fp16: number[] } {
  const script = [
    'import sys, json, numpy as np, torch',
    'v = np.frombuffer(bytes.fromhex(sys.stdin.read()), dtype="<f4")',
    'bf = torch.from_numpy(v.copy()).to(torch.bfloat16).view(torch.int16).numpy().astype(np.uint16)',
    'with np.errstate(over="ignore"):',
    '    fp = v.astype(np.float16).view(np.uint16)',
    'print(json.dumps({"bf16": bf.tolist(), "fp16": fp.tolist()}))',
  ].join('\n');
  const out = execFileSync(PYTHON, ['-c', script], {
    input: Buffer.from(values.buffer).toString('hex'),
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  return JSON.parse(out) as { bf16: number[]; fp16: number[] };
}

/** A canonical NaN: the references and we may pick different NaN payloads, both NaN. */
const isNaNBf16 = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
const isNaNFp16 = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

describeWithPython(['numpy', 'torch'], 'apt-get install python3-numpy python3-torch')(
  'wire codecs against PyTorch and NumPy',
  () => {
    let seed = 12345;
    const next = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
    const special = [
      0x00000000,
      0x80000000,
      0x7f800000,
      0xff800000,
      0x7fc00000,
      0x7f800001, // zeros, infinities, NaNs
      0x3f808000,
      0x3f818000,
      0x3f808001,
      0x3f807fff, // bf16 halfway: to even down, to even up, above, below
      0x3f801000,
      0x3f803000,
      0x3f801001, // fp16 halfway cases around 1
      0x477fe000,
      0x477ff000,
      0x47800000,
      0xc77ff000, // fp16 largest, rounding to overflow, overflow
      0x33800000,
      0x33000000,
      0x33000001,
      0x387fc000,
      0x38800000,
      0x00000001,
      0x00800000, // fp16 subnormals and underflow; float32 subnormals
      0x7f7fffff,
      0xff7fffff, // float32 max: bf16 rounds to infinity
    ];
    const values = valuesFromBits([...special, ...Array.from({ length: 20_000 }, next)]);

    it('encodes like PyTorch (bfloat16) and NumPy (float16), rounding to nearest even', () => {
      const ref = reference(values);
      for (const [transport, expected, isNaN] of [
        ['bf16', ref.bf16, isNaNBf16],
        ['fp16', ref.fp16, isNaNFp16],
      ] as const) {
        const ours = new Uint16Array(new Uint8Array(encode(values, transport)).buffer);
        const wrong: string[] = [];
        for (let i = 0; i < values.length; i++) {
          const same = ours[i] === expected[i] || (isNaN(ours[i]!) && isNaN(expected[i]!));
          if (!same && wrong.length < 5)
            wrong.push(
              `${new Uint32Array(values.buffer)[i]!.toString(16)}: ours ${ours[i]!.toString(16)}, reference ${expected[i]!.toString(16)}`,
            );
        }
        expect({ transport, wrong }).toEqual({ transport, wrong: [] });
      }
    });

    it('decodes to the float32 each half denotes, scaled, and carries fp32 unchanged', () => {
      const halves = Uint16Array.from({ length: 65536 }, (_, h) => h);
      const wire = new Uint8Array(halves.buffer);
      const bf = decode(wire, 'bf16', 0.5);
      const fp = decode(wire, 'fp16', 0.5);
      const bits = new Uint32Array(1);
      const f = new Float32Array(bits.buffer);
      for (const h of [0x0000, 0x8000, 0x3f80, 0x7f80, 0x0001, 0xc2f7]) {
        bits[0] = h << 16;
        expect(Object.is(bf[h], Math.fround(f[0]! * 0.5))).toBe(true);
      }
      expect(Number.isNaN(bf[0x7fc0])).toBe(true);
      // binary16: 1.0, the smallest subnormal, the largest finite, −2, infinity, NaN.
      expect([fp[0x3c00], fp[0x0001], fp[0x7bff], fp[0xc000], fp[0x7c00]]).toEqual([
        0.5,
        2 ** -25,
        65504 / 2,
        -1,
        Infinity,
      ]);
      expect(Number.isNaN(fp[0x7e00])).toBe(true);
      // Round trips: encoding the decoded halves gives the halves back (NaNs aside).
      for (const transport of ['bf16', 'fp16'] as const) {
        const again = new Uint16Array(new Uint8Array(encode(decode(wire, transport), transport)).buffer);
        const isNaN = transport === 'bf16' ? isNaNBf16 : isNaNFp16;
        expect(halves.every((h) => isNaN(h) || again[h] === h)).toBe(true);
      }
      const v = Float32Array.from([1.5, -2.25, 3e-41]);
      expect([...decode(encode(v, 'fp32'), 'fp32')]).toEqual([...v]);
      expect([...decode(encode(v, 'fp32', 2), 'fp32', 0.25)]).toEqual([
        0.75,
        -1.125,
        Math.fround(Math.fround(3e-41 * 2) * 0.25),
      ]);
    });
  },
);

/**
 * A small, fast, seedable random number generator whose whole state is four 32-bit words, so it
 * can be checkpointed and restored exactly (resume must be bitwise identical) and forked into
 * independent streams (one per data-parallel rank, one per purpose).
 *
 * Generator: xoshiro128** (Blackman & Vigna, 2018), seeded through splitmix32. Normals by the
 * Box–Muller transform. Results are identical on every backend and machine because no tensor
 * backend is involved.
 */
import { errorCodes } from './errors';

const fail = errorCodes({ DDPM_CONFIG_INVALID: 'invalid' });

/** The serialisable state of an {@link Rng}: four unsigned 32-bit words, not all zero. */
export type RngState = readonly [number, number, number, number];

const TWO_POW_32 = 4294967296;

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  private constructor(state: RngState) {
    [this.s0, this.s1, this.s2, this.s3] = state;
  }

  /** A generator seeded from a non-negative integer seed (up to 2^53). */
  static fromSeed(seed: number): Rng {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw fail('DDPM_CONFIG_INVALID', `seed must be a non-negative safe integer, got ${String(seed)}`);
    }
    // Mix both halves of a 53-bit seed so that seeds differing only in high bits differ.
    const low = seed % TWO_POW_32;
    const high = Math.floor(seed / TWO_POW_32);
    const next = splitmix32((low ^ Math.imul(high, 0x27d4eb2d)) >>> 0);
    const state: [number, number, number, number] = [next(), next(), next(), next()];
    if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1;
    return new Rng(state);
  }

  /** A generator restored from {@link Rng.state}. */
  static fromState(state: RngState): Rng {
    if (
      !Array.isArray(state) ||
      state.length !== 4 ||
      !state.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32)
    ) {
      throw fail(
        'DDPM_CONFIG_INVALID',
        `rng state must be four unsigned 32-bit integers, got ${JSON.stringify(state)}`,
      );
    }
    if ((state[0] | state[1] | state[2] | state[3]) === 0) {
      throw fail('DDPM_CONFIG_INVALID', 'rng state must not be all zero');
    }
    return new Rng(state);
  }

  /** The current state; `Rng.fromState(rng.state())` continues the exact same sequence. */
  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** An independent generator derived from this one's current state and a stream number. */
  fork(stream: number): Rng {
    if (!Number.isInteger(stream) || stream < 0) {
      throw fail('DDPM_CONFIG_INVALID', `stream must be a non-negative integer, got ${stream}`);
    }
    const next = splitmix32((this.s0 ^ Math.imul(stream + 1, 0x9e3779b1) ^ rotl(this.s2, 7)) >>> 0);
    const state: [number, number, number, number] = [
      (next() ^ this.s1) >>> 0,
      (next() ^ this.s3) >>> 0,
      next(),
      next(),
    ];
    if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1;
    return new Rng(state);
  }

  /** Next unsigned 32-bit integer (xoshiro128**). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in the open interval (0, 1). */
  uniform(): number {
    return (this.nextUint32() + 0.5) / TWO_POW_32;
  }

  /** Uniform integer in [0, n). The bias is below n / 2^32, negligible for timestep counts. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw fail('DDPM_CONFIG_INVALID', `int(n) needs an integer 1 <= n <= 2^32, got ${n}`);
    }
    return Math.floor((this.nextUint32() * n) / TWO_POW_32);
  }

  /** `count` uniform integers in [0, n), e.g. the timesteps of a batch (Algorithm 1, line 3). */
  ints(n: number, count: number): Int32Array {
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.int(n);
    return out;
  }

  /** `count` standard normal draws as float32 (Box–Muller, both values of each pair used). */
  normals(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      const radius = Math.sqrt(-2 * Math.log(this.uniform()));
      const angle = 2 * Math.PI * this.uniform();
      out[i] = radius * Math.cos(angle);
      if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
    }
    return out;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = out[i]!;
      out[i] = out[j]!;
      out[j] = tmp;
    }
    return out;
  }
}

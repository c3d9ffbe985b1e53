import {
  currentBackend,
  groupNorm,
  nativeBuild,
  setKernelSwitches,
  useNativeKernels,
  wasmKernels,
} from '@ddpm/kernels';
import * as tf from '@tensorflow/tfjs-core';

import { preset } from '@ddpm/unet-config';
import { SMALL, lcgNormals, makeUNet, perturbAll, useBackend } from './test-support';
import { timestepEmbedding } from './unet';

beforeAll(() => useBackend('wasm'));

function input(b: number, s: number, c: number, seed: number): tf.Tensor4D {
  return tf.tensor4d(lcgNormals(seed, b * s * s * c), [b, s, s, c]);
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

describe('UNet forward', () => {
  it('maps [B, S, S, in] and t [B] to [B, S, S, out]; learned variances double the channels', () => {
    const net = makeUNet(preset('micro32'));
    const x = input(2, 32, 1, 1);
    const t = tf.tensor1d([0, 999], 'int32');
    const y = net.apply(x, t);
    expect(y.shape).toEqual([2, 32, 32, 1]);
    // conv_out is initialised at scale 1e-10, so a fresh network outputs ~0 (official init).
    expect(tf.max(tf.abs(y)).dataSync()[0]).toBeLessThan(1e-3);
    const learned = makeUNet(preset('micro32', { outChannels: 2 }));
    expect(learned.apply(x, t).shape).toEqual([2, 32, 32, 2]);
    expect(() => net.apply(input(2, 28, 1, 1), t)).toThrow(
      'input has shape [2, 28, 28, 1] but the model takes [B, 32, 32, 1]',
    );
    expect(() => net.apply(x, tf.tensor1d([1], 'int32'))).toThrow('t has shape [1] but the batch is 2');
    tf.dispose([x, t, y]);
    net.dispose();
    learned.dispose();
  });

  it('is deterministic for an init seed; dropout acts only in training mode, reproducibly per seed', () => {
    const a = makeUNet(SMALL, 7);
    const b = makeUNet(SMALL, 7);
    const c = makeUNet(SMALL, 8);
    [a, b, c].forEach((n) => perturbAll(n, 3));
    const x = input(2, 8, 2, 2);
    const t = tf.tensor1d([5, 500], 'int32');
    const evalA = a.apply(x, t);
    expect(maxAbsDiff(evalA, b.apply(x, t))).toBe(0);
    expect(maxAbsDiff(evalA, a.apply(x, t))).toBe(0);
    expect(maxAbsDiff(evalA, c.apply(x, t))).toBeGreaterThan(1e-3);
    // Training mode: dropout masks from the seed; eval mode never drops.
    const train1 = a.apply(x, t, { training: true, dropoutSeed: 1 });
    expect(maxAbsDiff(train1, a.apply(x, t, { training: true, dropoutSeed: 1 }))).toBe(0);
    expect(maxAbsDiff(train1, a.apply(x, t, { training: true, dropoutSeed: 2 }))).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(train1, evalA)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(a.apply(x, t, { training: false, dropoutSeed: 1 }), evalA)).toBe(0);
    expect(() => a.apply(x, t, { training: true })).toThrow(/training with dropout needs a dropoutSeed/);
    [a, b, c].forEach((n) => n.dispose());
  });

  it('the timestep embedding is [sin(t·f), cos(t·f)] with f_i = exp(−i·ln(10000)/(d/2 − 1))', () => {
    const emb = timestepEmbedding(tf.tensor1d([0, 1, 999], 'int32'), 8).arraySync();
    const freqs = [0, 1, 2, 3].map((i) => Math.exp((-i * Math.log(10000)) / 3));
    [0, 1, 999].forEach((t, row) => {
      const expected = [...freqs.map((f) => Math.sin(t * f)), ...freqs.map((f) => Math.cos(t * f))];
      expected.forEach((v, i) => expect(Math.abs(emb[row]![i]! - v)).toBeLessThan(2e-4));
    });
  });

  it('leaks no tensors across forward, backward and load', () => {
    const net = makeUNet(SMALL);
    const x = input(2, 8, 2, 3);
    const t = tf.tensor1d([1, 2], 'int32');
    const step = (): void => {
      const { value, grads } = tf.variableGrads(
        () => tf.mean<tf.Scalar>(tf.square(net.apply(x, t, { training: true, dropoutSeed: 4 }))),
        net.variables,
      );
      tf.dispose([value, ...Object.values(grads)]);
      tf.tidy(() => {
        net.apply(x, t);
      });
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, t]);
    net.dispose();
  });
});

describe('gradients of the whole network', () => {
  it('the wasm gradients (composed convolutions, GroupNorm, products) equal the cpu backend autodiff', async () => {
    const grads = async (backend: 'wasm' | 'cpu'): Promise<Map<string, Float32Array>> => {
      await useBackend(backend);
      const net = makeUNet({ ...SMALL, dropout: 0 }, 11);
      perturbAll(net, 12);
      const x = input(2, 8, 2, 13);
      const t = tf.tensor1d([3, 700], 'int32');
      const probe = input(2, 8, 2, 14);
      const { grads: g } = tf.variableGrads(() => tf.sum<tf.Scalar>(tf.mul(net.apply(x, t), probe)), net.variables);
      const out = new Map(net.namedVariables.map(([name, v]) => [name, g[v.name]!.dataSync() as Float32Array]));
      tf.dispose([x, t, probe, ...Object.values(g)]);
      net.dispose();
      return out;
    };
    const reference = await grads('cpu');
    const ours = await grads('wasm');
    expect(currentBackend()?.name).toBe('wasm');
    expect(wasmKernels()).toBeDefined();
    expect([...ours.keys()]).toEqual([...reference.keys()]);
    const bad: string[] = [];
    for (const [name, r] of reference) {
      const o = ours.get(name)!;
      const scale = Math.max(...Array.from(r, Math.abs), 1e-3);
      let worst = 0;
      for (let i = 0; i < r.length; i++) worst = Math.max(worst, Math.abs(o[i]! - r[i]!));
      if (worst / scale > 2e-3) bad.push(`${name}: ${(worst / scale).toExponential(2)}`);
    }
    expect(bad).toEqual([]);
  });

  const native = typeof nativeBuild(true) === 'object';
  (native ? it : it.skip)(
    'on the native backend (our kernels built for this CPU, 2 threads) the gradients are the wasm module’s bits',
    async () => {
      await useBackend('wasm');
      const grads = (): Float32Array[] => {
        const net = makeUNet({ ...SMALL, dropout: 0.1 }, 11);
        perturbAll(net, 12);
        const x = input(2, 8, 2, 13);
        const t = tf.tensor1d([3, 700], 'int32');
        const probe = input(2, 8, 2, 14);
        const { grads: g } = tf.variableGrads(
          () => tf.sum<tf.Scalar>(tf.mul(net.apply(x, t, { training: true, dropoutSeed: 5 }), probe)),
          net.variables,
        );
        const out = net.namedVariables.map(([, v]) => g[v.name]!.dataSync() as Float32Array);
        tf.dispose([x, t, probe, ...Object.values(g)]);
        net.dispose();
        return out;
      };
      const module = grads();
      const before = setKernelSwitches({ threads: 2 });
      useNativeKernels(true);
      try {
        const ours = grads();
        expect(ours.length).toBe(module.length);
        const differing = ours.filter((g, i) => !g.every((v, k) => Object.is(v, module[i]![k])));
        expect(differing.length).toBe(0);
      } finally {
        useNativeKernels(false);
        setKernelSwitches(before);
      }
    },
  );

  it.each([false, true])(
    'composed GroupNorm (swish=%s) equals the reference formulation, values and gradients',
    async (withSwish) => {
      await useBackend('wasm');
      const x = input(3, 4, 8, 21);
      const gamma = tf.tensor1d(lcgNormals(22, 8));
      const beta = tf.tensor1d(lcgNormals(23, 8));
      const probe = input(3, 4, 8, 24);
      const run = (reference: boolean) =>
        tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(
            tf.mul(
              groupNorm(xx as tf.Tensor4D, gg as tf.Tensor1D, bb as tf.Tensor1D, {
                numGroups: 2,
                swish: withSwish,
                reference,
              }),
              probe,
            ),
          ),
        )([x, gamma, beta]);
      const value = (reference: boolean) => groupNorm(x, gamma, beta, { numGroups: 2, swish: withSwish, reference });
      const ref = run(true);
      // Both wasm paths: our SIMD kernels (@ddpm/kernels' c/ddpm_kernels.c) and the composed tfjs ops.
      for (const on of [true, false]) {
        const before = setKernelSwitches({ wasmKernels: on });
        try {
          expect(wasmKernels() === undefined).toBe(!on);
          expect(maxAbsDiff(value(false), value(true))).toBeLessThan(1e-5);
          run(false).forEach((g, i) => expect(maxAbsDiff(g, ref[i]!)).toBeLessThan(1e-4));
        } finally {
          setKernelSwitches(before);
        }
      }
    },
  );
});

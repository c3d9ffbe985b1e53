import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { setKernelSwitches } from '@ddpm/kernels';
import { listCheckpoints } from '@ddpm/runs';
import * as tf from '@tensorflow/tfjs-core';

import { Adam } from './adam';
import { updateEma } from './ema';
import { globalNorm } from './flat-gradients';
import { loadModelFromCheckpoint } from './model-loading';
import { tempStore, tinyRun, useWasm } from './test-support';
import { Trainer } from './trainer';

beforeAll(useWasm);

async function snapshot(trainer: Trainer): Promise<Float32Array[]> {
  const tensors = [...trainer.unet.variables, ...trainer.ema.variables];
  return Promise.all(tensors.map(async (t) => Float32Array.from(await t.data())));
}

function identical(a: Float32Array[], b: Float32Array[]): boolean {
  return (
    a.length === b.length && a.every((x, i) => x.length === b[i]!.length && x.every((v, j) => Object.is(v, b[i]![j])))
  );
}

describe('the optimizer step', () => {
  const shapes = [[3, 3, 4, 8], [7], [5, 2]]; // 288, 7 and 10 values: lanes of four and tails
  const sizeOf = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
  const hyper = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
  /** One variable per shape, filled by `values` from seeds seed, seed + 1, … */
  const variables = (values: (seed: number, size: number) => Float32Array, seed: number): tf.Variable[] =>
    shapes.map((s, k) => tf.variable(tf.tensor(values(seed + k, sizeOf(s)), s)));
  /** Each pair of tensor lists holds the same bytes, tensor by tensor. */
  const expectSameBits = (pairs: readonly (readonly [readonly tf.Tensor[], readonly tf.Tensor[]])[]): void => {
    for (const [a, b] of pairs)
      a.forEach((t, k) =>
        expect(Buffer.from(t.dataSync().buffer).equals(Buffer.from(b[k]!.dataSync().buffer))).toBe(true),
      );
  };

  it('in one wasm kernel gives the same bits as clipping, Adam and the EMA composed of tfjs ops, SIMD body and scalar tail', () => {
    const values = (seed: number, size: number): Float32Array =>
      Float32Array.from({ length: size }, (_, i) => Math.sin(seed * 7.31 + i * 1.7) * (1 + (i % 5)));
    const make = (seed: number): tf.Variable[] => variables(values, seed);
    const [fusedParams, fusedEma, composedParams, composedEma] = [make(1), make(2), make(1), make(2)];
    const fused = new Adam(fusedParams, hyper);
    const composed = new Adam(composedParams, hyper);
    for (const [step, scale, lr, decay] of [
      [1, 0.37, 2e-4, 0.1],
      [2, 1, 2e-4, 0.9999],
      [3, 0.05, 1e-3, 0.995],
    ] as const) {
      const grads = shapes.map((s, k) => tf.tensor(values(10 * step + k, sizeOf(s)), s));
      expect(fused.applyFusedWithEma(grads, lr, scale, fusedEma, decay)).toBe(true);
      const clipped = scale === 1 ? grads : grads.map((g) => tf.mul(g, scale));
      composed.apply(clipped, lr);
      updateEma(composedEma, composedParams, decay);
      expectSameBits([
        [fusedParams, composedParams],
        [fusedEma, composedEma],
        [fused.m, composed.m],
        [fused.v, composed.v],
      ]);
      tf.dispose(clipped === grads ? grads : [...grads, ...clipped]);
    }
    expect(fused.step).toBe(3);
    tf.dispose([...fusedParams, ...fusedEma, ...composedParams, ...composedEma]);
    fused.dispose();
    composed.dispose();
  });

  it("takes the gradients as one flat tensor (a group's sum) to the same bits as one tensor per variable", () => {
    const values = (seed: number, size: number): Float32Array =>
      Float32Array.from({ length: size }, (_, i) => Math.cos(seed * 3.1 + i * 0.7) * (1 + (i % 3)));
    const make = (seed: number): tf.Variable[] => variables(values, seed);
    const [flatParams, flatEma, perParams, perEma] = [make(1), make(2), make(1), make(2)];
    const flatAdam = new Adam(flatParams, hyper);
    const perAdam = new Adam(perParams, hyper);
    for (const step of [1, 2, 3]) {
      const grads = shapes.map((s, k) => values(10 * step + k, sizeOf(s)));
      const all = tf.tensor1d(Float32Array.from(grads.flatMap((g) => [...g])));
      const per = grads.map((g, k) => tf.tensor(g, shapes[k]));
      expect(flatAdam.applyFusedWithEma(all, 1e-3, 0.5, flatEma, 0.99)).toBe(true);
      expect(perAdam.applyFusedWithEma(per, 1e-3, 0.5, perEma, 0.99)).toBe(true);
      tf.dispose([all, ...per]);
    }
    expectSameBits([
      [flatParams, perParams],
      [flatEma, perEma],
      [flatAdam.m, perAdam.m],
      [flatAdam.v, perAdam.v],
    ]);
    // A flat tensor of the wrong length is refused before anything changes.
    const short = tf.zeros([10]);
    expect(() => flatAdam.applyFusedWithEma(short, 1e-3, 1, flatEma, 0.99)).toThrow(
      /10 gradient values for 305 parameters/,
    );
    expect(flatAdam.step).toBe(3);
    tf.dispose([short, ...flatParams, ...flatEma, ...perParams, ...perEma]);
    flatAdam.dispose();
    perAdam.dispose();
  });

  it('computes the global gradient norm on the host to the bits of the tfjs ops on wasm', () => {
    const sizes = [864, 32, 1000, 4096, 36_864, 7];
    for (const spread of [1e-6, 0.01, 3, 1e4]) {
      const grads = sizes.map((n, k) => tf.mul(tf.randomNormal([n], 0, 1, 'float32', 17 + k), spread));
      const expected = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g)))))).dataSync()[0]!;
      const flat = Float32Array.from(grads.flatMap((g) => [...g.dataSync()]));
      expect(Object.is(globalNorm(flat, grads), expected)).toBe(true);
      tf.dispose(grads);
    }
    expect(() => globalNorm(new Float32Array(5), [{ size: 4 }])).toThrow(/5 gradient values for 4 parameters/);
  });

  it('is refused by the fused path where our kernels are off (wasmKernels: false), changing nothing', () => {
    const before = setKernelSwitches({ wasmKernels: false });
    try {
      const p = [tf.variable(tf.ones([4]))];
      const adam = new Adam(p, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 });
      const g = [tf.ones([4])];
      expect(adam.applyFusedWithEma(g, 1e-3, 1, [tf.variable(tf.ones([4]))], 0.9)).toBe(false);
      expect(adam.step).toBe(0);
      expect([...p[0]!.dataSync()]).toEqual([1, 1, 1, 1]);
      tf.dispose([...p, ...g]);
      adam.dispose();
    } finally {
      setKernelSwitches(before);
    }
  });
});

describe('Trainer', () => {
  it('resumes exactly: k steps, stop, resume, n − k more equals n steps straight, bit for bit', async () => {
    const straight = await tempStore();
    const split = await tempStore();
    try {
      const a = await Trainer.open(tinyRun({ steps: 4 }), { store: straight.store, prefix: 'run' });
      const ra = await a.run();
      expect(ra).toMatchObject({ status: 'completed', step: 4 });
      const expected = await snapshot(a);
      a.dispose();

      const b1 = await Trainer.open(tinyRun({ steps: 2 }), { store: split.store, prefix: 'run' });
      await b1.run();
      b1.dispose();
      const b2 = await Trainer.open(tinyRun({ steps: 4 }), { store: split.store, prefix: 'run' });
      expect(b2.resumedFrom?.step).toBe(2);
      expect(b2.step).toBe(2);
      await b2.run();
      expect(b2.step).toBe(4);
      expect(identical(await snapshot(b2), expected)).toBe(true);
      // The optimizer moments too: compare the step-4 checkpoints' optimizer files.
      const [ca] = await listCheckpoints(straight.store, 'run');
      const [cb] = await listCheckpoints(split.store, 'run');
      const optA = await straight.store.get(`${ca!.key}/optimizer.safetensors`);
      const optB = await split.store.get(`${cb!.key}/optimizer.safetensors`);
      expect(Buffer.compare(Buffer.from(optA), Buffer.from(optB))).toBe(0);
      // And the loss curve kept in the checkpoints: 4 points, the same numbers.
      const curve = async (store: typeof straight.store, key: string): Promise<unknown> =>
        (JSON.parse(new TextDecoder().decode(await store.get(`${key}/state.json`))) as { loss: unknown }).loss;
      const curveA = (await curve(straight.store, ca!.key)) as { spans: { step: number }[] };
      expect(curveA.spans.map((s) => s.step)).toEqual([1, 2, 3, 4]);
      expect(await curve(split.store, cb!.key)).toEqual(curveA);
      b2.dispose();
    } finally {
      await straight.cleanup();
      await split.cleanup();
    }
  }, 120_000);

  it('keeps the EMA as the recurrence ema ← d · ema + (1 − d) · θ over the weights after every step, with the warm-up rule', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const t = await Trainer.open(tinyRun({ steps: 4, emaDecay: 0.95, emaWarmup: true }), { store, prefix: 'run' });
      // The EMA starts as a copy of the initial weights; each step's decay is min(0.95, (1 + n) / (10 + n)) for update n = 0, 1, ...
      let expected = await Promise.all(t.unet.variables.map(async (v) => Float64Array.from(await v.data())));
      const initial = await Promise.all(t.ema.variables.map(async (v) => Float64Array.from(await v.data())));
      expect(initial.every((e, i) => e.every((x, j) => x === expected[i]![j]))).toBe(true);
      for (let n = 0; n < 4; n++) {
        await t.trainStep();
        const d = Math.min(0.95, (1 + n) / (10 + n));
        const weights = await Promise.all(t.unet.variables.map(async (v) => await v.data()));
        expected = expected.map((e, i) => e.map((x, j) => d * x + (1 - d) * weights[i]![j]!));
      }
      const ema = await Promise.all(t.ema.variables.map(async (v) => await v.data()));
      let worst = 0;
      let moved = 0;
      ema.forEach((e, i) =>
        e.forEach((x, j) => {
          worst = Math.max(worst, Math.abs(x - expected[i]![j]!));
          moved = Math.max(moved, Math.abs(x - initial[i]![j]!));
        }),
      );
      // float32 arithmetic against float64: a few ulps; and the EMA did move.
      expect(worst).toBeLessThan(1e-6);
      expect(moved).toBeGreaterThan(1e-4);
      // What a checkpoint stores and loads as the EMA is exactly this.
      await t.checkpoint('test');
      const loaded = await loadModelFromCheckpoint(store, 'run', { ema: true });
      const stored = await Promise.all(loaded.model.variables.map(async (v) => await v.data()));
      expect(stored.every((s, i) => s.every((x, j) => Object.is(x, ema[i]![j])))).toBe(true);
      loaded.model.dispose();
      t.dispose();
    } finally {
      await cleanup();
    }
  }, 60_000);

  it('checkpoints every checkpointEverySeconds of wall time too, whichever comes first', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const t = await Trainer.open(
        tinyRun({ steps: 7, checkpointEvery: 3, checkpointEverySeconds: 1, keepCheckpoints: 10 }),
        { store, prefix: 'run' },
      );
      // A clock of 0.7 s a step, but for step 3 that takes none: saves after 2 (1.4 s), 3 (every
      // 3 steps), 5 (1.4 s after 3), 6 (every 3 steps) and 7 (the end).
      let ms = 0;
      const reasons: string[] = [];
      await t.run({
        clock: () => ms,
        onStep: (stats) => {
          if (stats.step !== 3) ms += 700;
        },
        onCheckpoint: (ref, reason) => {
          reasons.push(`${ref.step} ${reason}`);
        },
      });
      t.dispose();
      expect(reasons).toEqual(['2 periodic', '3 periodic', '5 periodic', '6 periodic', '7 final']);
      expect((await listCheckpoints(store, 'run')).map((r) => r.step)).toEqual([7, 6, 5, 3, 2]);
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('refuses a checkpoint that fails its checksum and falls back to the previous good one', async () => {
    const { store, root, cleanup } = await tempStore();
    try {
      const t = await Trainer.open(tinyRun({ steps: 2, checkpointEvery: 1, keepCheckpoints: 5 }), {
        store,
        prefix: 'run',
      });
      await t.run();
      t.dispose();
      const refs = await listCheckpoints(store, 'run');
      expect(refs.map((r) => r.step)).toEqual([2, 1]);
      // Corrupt the newest checkpoint's weights on disk.
      const file = path.join(root, refs[0]!.key, 'model.safetensors');
      const bytes = await fs.readFile(file);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
      await fs.writeFile(file, bytes);
      const warnings: string[] = [];
      const resumed = await Trainer.open(tinyRun({ steps: 2 }), {
        store,
        prefix: 'run',
        onWarning: (w) => warnings.push(w),
      });
      expect(resumed.step).toBe(1);
      expect(warnings[0]).toMatch(
        /step-000000002\/manifest.json: model.safetensors fails its checksum .*; using an older checkpoint/,
      );
      resumed.dispose();
      const loaded = await loadModelFromCheckpoint(store, 'run');
      expect(loaded.ref.step).toBe(1);
      expect(loaded.skipped).toHaveLength(1);
      loaded.model.dispose();
      // With every checkpoint corrupt, nothing is loaded and the error says why.
      const older = path.join(root, refs[1]!.key, 'ema.safetensors');
      await fs.writeFile(older, 'garbage');
      await expect(Trainer.open(tinyRun({ steps: 2 }), { store, prefix: 'run' })).rejects.toThrow(
        /no usable checkpoint under .*ema.safetensors fails its checksum/,
      );
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('stops on abort with a checkpoint, reports statistics, and leaks no tensors over many steps', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const t = await Trainer.open(tinyRun({ steps: 100, accumulation: 1 }), { store, prefix: 'run' });
      const controller = new AbortController();
      const counts: number[] = [];
      const stats: number[] = [];
      const rates: number[] = [];
      const result = await t.run({
        signal: controller.signal,
        onStep: (s) => {
          counts.push(tf.memory().numTensors);
          stats.push(s.loss);
          rates.push(s.learningRate);
          expect(s.lossQuartiles).toHaveLength(4);
          expect(s.gradNorm).toBeGreaterThan(0);
          expect(s.imagesPerSecond).toBeGreaterThan(0);
          if (s.step === 6) controller.abort();
        },
      });
      expect(result).toMatchObject({ status: 'stopped', step: 6 });
      expect(result.checkpoint?.step).toBe(6);
      // The learning rate warms up from 0 as the official code: lr · min(updates done / 2, 1).
      expect(rates).toEqual([0, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3]);
      expect(new Set(counts.slice(1)).size).toBe(1);
      expect(stats.every(Number.isFinite)).toBe(true);
      t.dispose();
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('refuses an invalid configuration before opening anything, naming the setting', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await expect(
        Trainer.open({ ...tinyRun(), batchSize: 6, accumulation: 4 }, { store, prefix: 'run' }),
      ).rejects.toThrow('batchSize 6 must be divisible by accumulation 4');
      await expect(Trainer.open({ ...tinyRun(), keepCheckpoints: 0 }, { store, prefix: 'run' })).rejects.toMatchObject({
        code: 'DDPM_CONFIG_INVALID',
        kind: 'invalid',
      });
      expect(await store.list('')).toEqual([]);
    } finally {
      await cleanup();
    }
  });

  it('resumes with the run’s stored configuration and names what the new request asked for in vain', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const first = await Trainer.open(tinyRun({ steps: 1 }), { store, prefix: 'run' });
      await first.run();
      first.dispose();
      const again = await Trainer.open(tinyRun({ steps: 2, learningRate: 5e-4, checkpointEvery: 7 }), {
        store,
        prefix: 'run',
      });
      expect(again.resumedFrom?.step).toBe(1);
      expect(again.config.optimizer.learningRate).toBe(1e-3);
      expect([again.config.steps, again.config.checkpointEvery]).toEqual([2, 7]);
      expect(again.ignoredOnResume).toEqual(['optimizer.learningRate: 0.0005 requested, 0.001 kept']);
      again.dispose();
    } finally {
      await cleanup();
    }
  }, 60_000);
});

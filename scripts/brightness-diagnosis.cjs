#!/usr/bin/env node
/**
 * Brightness diagnosis of a Fashion-MNIST run (issue: sample quality): samples a checkpoint under
 * several sampling choices and compares pixel statistics with the test set's.
 *
 *   npx tsc -b && node scripts/brightness-diagnosis.cjs --store DIR --run TRAIN_JOB_ID [--steps 250] [--count 64] [--checkpoint-steps 500,2500] [--full-count 16]
 *
 * DIR is a file store (e.g. runs/service-demo-<time>/store). Variants: the EMA weights with the
 * run's own settings (x̂₀ clipped to [-1, 1], its variance), without clipping, with the other fixed
 * variance (fixedsmall β̃ against fixedlarge β), the raw weights, and (with --full-count N) N
 * samples of the run's own sampling in all T steps instead of --steps strided ones (whether the
 * respaced chain itself brightens). Statistics are over the
 * central 28 × 28 pixels (Fashion-MNIST's own size; the model's 32 × 32 adds a 2-pixel border of
 * padding, reported separately), in [0, 1]: mean, fraction above 0.5, fraction near black (< 0.1).
 * Prints one JSON object.
 */
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..');
const dist = (pkg) => require(path.join(ROOT, 'packages', pkg, 'dist', 'index.js'));

function stats(pixels, count, size, crop) {
  // pixels: uint8 [count, size, size] (one channel); crop: side of the central square.
  const off = (size - crop) / 2;
  let sum = 0,
    bright = 0,
    dark = 0,
    n = 0,
    border = 0,
    nb = 0;
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const v = pixels[(i * size + y) * size + x] / 255;
        if (y >= off && y < off + crop && x >= off && x < off + crop) {
          sum += v;
          n++;
          if (v > 0.5) bright++;
          if (v < 0.1) dark++;
        } else {
          border += v;
          nb++;
        }
      }
    }
  }
  const r = (x) => Math.round(x * 1000) / 1000;
  return {
    mean: r(sum / n),
    aboveHalf: r(bright / n),
    nearBlack: r(dark / n),
    ...(nb > 0 ? { borderMean: r(border / nb) } : {}),
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      store: { type: 'string' },
      run: { type: 'string' },
      steps: { type: 'string' },
      count: { type: 'string' },
      'checkpoint-steps': { type: 'string' },
      seed: { type: 'string' },
      'full-count': { type: 'string' },
    },
  });
  if (!values.store || !values.run)
    throw new Error(
      'usage: node scripts/brightness-diagnosis.cjs --store DIR --run TRAIN_JOB_ID [--steps 250] [--count 64] [--checkpoint-steps A,B]',
    );
  const steps = Number(values.steps ?? 250);
  const count = Number(values.count ?? 64);
  const seed = Number(values.seed ?? 0);
  const fullCount = Number(values['full-count'] ?? 0);
  const { initBackend } = dist('kernels');
  const backend = await initBackend({ backend: 'wasm' });
  const tf = require('@tensorflow/tfjs-core');
  const { FileStore } = dist('storage');
  const { listCheckpoints, loadModelFromCheckpoint, samplingDiffusion, toUint8 } = dist('engine');
  const { GaussianDiffusion, sampleAncestral, rngNoise } = dist('diffusion');
  const { Rng } = dist('core');
  const { openDataset, parseDatasetSpec } = dist('data');
  const store = new FileStore(path.resolve(values.store));
  const { runPrefixOf } = require(path.join(ROOT, 'packages', 'storage', 'dist', 'layout.js'));
  const prefix = runPrefixOf(values.run);
  const available = (await listCheckpoints(store, prefix)).map((c) => c.step);
  const wanted = values['checkpoint-steps'] ? values['checkpoint-steps'].split(',').map(Number) : [available[0]];

  const test = await openDataset(parseDatasetSpec('fashion-mnist:?split=test'), { imageSize: 28, channels: 1 });
  const real = await test.read(Array.from({ length: test.size }, (_, i) => i));
  const report = {
    backend: backend.name,
    sampler: `ancestral, ${steps} evenly strided steps`,
    count,
    seed,
    availableCheckpoints: available,
    testSet: { images: test.size, ...stats(real, test.size, 28, 28) },
    checkpoints: [],
  };

  for (const step of wanted) {
    if (!available.includes(step)) {
      report.checkpoints.push({ step, missing: true });
      continue;
    }
    const rows = [];
    for (const ema of [true, false]) {
      const loaded = await loadModelFromCheckpoint(store, prefix, { step, ema });
      const own = loaded.diffusion;
      const other = own.varianceType === 'fixedlarge' ? 'fixedsmall' : 'fixedlarge';
      const variants = ema
        ? [
            { name: `EMA, clipped x0, ${own.varianceType} (the run's own)`, diffusion: own, clip: true },
            { name: `EMA, unclipped x0, ${own.varianceType}`, diffusion: own, clip: false },
            {
              name: `EMA, clipped x0, ${other}`,
              diffusion: new GaussianDiffusion({ ...loaded.config.diffusion, varianceType: other }),
              clip: true,
            },
            ...(fullCount > 0
              ? [
                  {
                    name: `EMA, clipped x0, ${own.varianceType}, ${fullCount} samples in ${steps} strided steps`,
                    diffusion: own,
                    clip: true,
                    count: fullCount,
                  },
                  {
                    name: `EMA, clipped x0, ${own.varianceType}, ${fullCount} samples in all ${own.numTimesteps} steps`,
                    diffusion: own,
                    clip: true,
                    count: fullCount,
                    steps: own.numTimesteps,
                  },
                ]
              : []),
          ]
        : [{ name: `raw weights, clipped x0, ${own.varianceType}`, diffusion: own, clip: true }];
      for (const v of variants) {
        const started = Date.now();
        const diffusion = samplingDiffusion(v.diffusion, { kind: 'ancestral', steps: v.steps ?? steps });
        const size = loaded.model.config.imageSize;
        const n0 = v.count ?? count;
        const out = new Uint8Array(n0 * size * size);
        for (let b = 0; b * 16 < n0; b++) {
          const n = Math.min(16, n0 - b * 16);
          const result = await sampleAncestral(diffusion, loaded.model.asDenoiseFn(), [n, size, size, 1], {
            noise: rngNoise(Rng.fromSeed(seed).fork(b)),
            clipDenoised: v.clip,
          });
          out.set(toUint8(await result.sample.data()), b * 16 * size * size);
          result.sample.dispose();
        }
        rows.push({ variant: v.name, ...stats(out, n0, size, 28), seconds: Math.round((Date.now() - started) / 1000) });
        process.stderr.write(`${step}: ${JSON.stringify(rows.at(-1))}\n`);
      }
      loaded.model.dispose();
      if (tf.memory().numTensors > 100) process.stderr.write(`warning: ${tf.memory().numTensors} tensors alive\n`);
    }
    report.checkpoints.push({ step, variants: rows });
  }
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});

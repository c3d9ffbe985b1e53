#!/usr/bin/env node
/**
 * Standard errors of the shipped model's quality figures, as docs/evaluation.md quotes them
 * (build first: npx tsc -b):
 *
 *   node scripts/quality-errors.cjs [--model fashion-mnist-cpu] [--repeats 8] [--count 128]
 *                                   [--steps 50] [--nll-images 8,64] [--cache DIR]
 *
 * - fd: the offline extractor's Fréchet distance of `count` samples (ancestral, `steps` strided
 *   steps, EMA weights) against the training split, drawn `repeats` times with seeds 0, 1, ...;
 *   the mean, the sample standard deviation and the standard error of one draw's value (its sd)
 *   and of the mean (sd / √repeats).
 * - floor: the same distance of `repeats` disjoint sets of `count` real test images (what a
 *   perfect model would score at this count).
 * - bits/dim: the bound over all T terms on the first N test images, for each N of --nll-images,
 *   with the standard error over images that evaluateNll reports.
 *
 * With --yardstick instead: the offline extractor's own yardstick on the test split (two disjoint
 * halves of 2,500 images, a half against a 3 × 3 box-blurred copy of the other, a half against
 * uniform noise), each distance with a bootstrap standard error (`repeats` resamplings of both
 * sides' features, with replacement).
 *
 * Prints one JSON object; the machine, the date and the settings are in it. On wasm, one core.
 */
'use strict';
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const dist = (pkg) => require(path.join(ROOT, 'packages', pkg, 'dist', 'index.js'));

function parseArgs(argv) {
  const options = {
    model: 'fashion-mnist-cpu',
    repeats: 8,
    count: 128,
    steps: 50,
    nllImages: [8, 64],
    cache: path.join(os.tmpdir(), 'ddpm-quality-errors'),
    yardstick: false,
  };
  if (argv[0] === '--yardstick') {
    options.yardstick = true;
    options.repeats = 50;
    argv = argv.slice(1);
  }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--model') options.model = value;
    else if (flag === '--cache') options.cache = path.resolve(value);
    else if (flag === '--nll-images') options.nllImages = value.split(',').map(Number);
    else if (['--repeats', '--count', '--steps'].includes(flag)) options[flag.slice(2)] = Number(value);
    else throw new Error(`unknown option ${flag}`);
  }
  for (const n of [options.repeats, options.count, options.steps, ...options.nllImages]) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`counts must be positive integers, got ${n}`);
  }
  if (options.repeats < 2) throw new Error('--repeats must be at least 2 for a standard deviation');
  return options;
}

/** Mean, sample sd, and the standard error of the mean. */
function spread(values) {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  return { n, values, mean, sd, seMean: sd / Math.sqrt(n) };
}

/** Pixels of test images from..from+n-1 at the model's 32 × 32, optionally box-blurred 3 × 3 first. */
async function testPixels(test, toModelInput, from, n, blur) {
  let raw = await test.read(Array.from({ length: n }, (_, i) => from + i));
  if (blur) {
    const { height: h, width: w } = test;
    const out = new Uint8Array(raw.length);
    for (let k = 0; k < n; k++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          let sum = 0;
          let count = 0;
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              const [yy, xx] = [y + dy, x + dx];
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
              sum += raw[(k * h + yy) * w + xx];
              count++;
            }
          }
          out[(k * h + y) * w + x] = Math.round(sum / count);
        }
      }
    }
    raw = out;
  }
  return toModelInput(raw, n, test, 32);
}

/** The offline extractor's yardstick distances on the test split, with bootstrap standard errors. */
async function yardstick(options) {
  const { FmnistCnn, extractFeatures } = require(path.join(ROOT, 'packages', 'eval', 'dist', 'extractors', 'index.js'));
  const { FeatureAccumulator, frechetDistance } = dist('eval');
  const { openDataset, toModelInput } = dist('data');
  const { Rng } = dist('core');
  const { readShippedExtractor } = dist('pretrained');
  const extractor = FmnistCnn.fromWeights(readShippedExtractor('fmnist_cnn-v1'));
  const test = await openDataset('fashion-mnist:?split=test', { imageSize: 32, channels: 1 });
  const half = 2500;
  const features = async (read) => (await extractFeatures(extractor, half, read, { keep: half })).kept.featuresND;
  let seed = 1;
  const sides = {
    a: await features((start, n) => testPixels(test, toModelInput, start, n, false)),
    b: await features((start, n) => testPixels(test, toModelInput, 5000 + start, n, false)),
    blurred: await features((start, n) => testPixels(test, toModelInput, 5000 + start, n, true)),
    noise: await features(async (_start, n) =>
      Float32Array.from({ length: n * 32 * 32 }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1),
    ),
  };
  extractor.dispose();
  const d = extractor.featureDim;
  const rng = Rng.fromSeed(7);
  const statistics = (rows, pick) => {
    const acc = new FeatureAccumulator(d);
    const one = new Float32Array(d);
    for (let i = 0; i < half; i++) {
      const r = pick ? Math.floor(rng.uniform() * half) : i;
      one.set(rows.subarray(r * d, r * d + d));
      acc.add(one, 1);
    }
    return acc.statistics();
  };
  const pairs = { halves: ['a', 'b'], blurred: ['a', 'blurred'], noise: ['a', 'noise'] };
  const out = {};
  for (const [name, [x, y]] of Object.entries(pairs)) {
    const value = frechetDistance(statistics(sides[x], false), statistics(sides[y], false)).distance;
    const boot = [];
    for (let k = 0; k < options.repeats; k++)
      boot.push(frechetDistance(statistics(sides[x], true), statistics(sides[y], true)).distance);
    const { sd } = spread(boot);
    out[name] = {
      value,
      bootstrapStandardError: sd,
      bootstrapMean: spread(boot).mean,
      imagesPerSide: half,
      resamplings: options.repeats,
    };
  }
  return out;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.yardstick) {
    await dist('kernels').initBackend({ backend: 'wasm' });
    const started = Date.now();
    const result = await yardstick(options);
    const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}`;
    process.stdout.write(
      `${JSON.stringify({ yardstick: 'fmnist_cnn on the Fashion-MNIST test split', date: new Date().toISOString().slice(0, 10), machine, ...result, seconds: Math.round((Date.now() - started) / 1000) }, null, 2)}\n`,
    );
    return;
  }
  const backend = await dist('kernels').initBackend({ backend: 'wasm' });
  const { loadPretrainedModel, evaluateModel, realDataDistance, evaluateNll } = dist('engine');
  const { openDataset } = dist('data');
  const { FileStore } = dist('storage');
  const cache = new FileStore(options.cache);
  const loaded = loadPretrainedModel(options.model);
  const dataset = loaded.manifest.train.dataset;
  const started = Date.now();
  const log = (line) => process.stderr.write(`${line}\n`);
  try {
    const fd = [];
    for (let seed = 0; seed < options.repeats; seed++) {
      const spec = {
        metrics: ['fd'],
        samples: { count: options.count, sampler: { kind: 'ancestral', steps: options.steps }, seed, ema: true },
        extractor: 'fmnist_cnn',
        reference: { split: 'train' },
        nll: { images: 1 },
      };
      const evaluation = await evaluateModel(loaded.model, loaded.diffusion, dataset, spec, { cache, onLog: log });
      fd.push(evaluation.metrics.fd_fmnist_cnn);
      log(`fd seed ${seed}: ${fd[fd.length - 1]}`);
    }
    const floor = [];
    for (let k = 0; k < options.repeats; k++) {
      const real = await realDataDistance(
        dataset,
        { extractor: 'fmnist_cnn', reference: { split: 'train' } },
        options.count,
        { size: 32, channels: 1 },
        { cache, from: k * options.count },
      );
      floor.push(real.value);
      log(`floor set ${k}: ${real.value}`);
    }
    const test = await openDataset(dataset.replace(/\?.*$/, '') + '?split=test', { imageSize: 32, channels: 1 });
    const nll = [];
    for (const images of options.nllImages) {
      const r = await evaluateNll(loaded.model, loaded.diffusion, test, { count: images });
      nll.push({ images, bitsPerDim: r.bitsPerDim, standardError: r.standardError });
      log(`bits/dim on ${images} images: ${r.bitsPerDim} ± ${r.standardError}`);
    }
    const fdSpread = spread(fd);
    const floorSpread = spread(floor);
    process.stdout.write(
      `${JSON.stringify(
        {
          model: options.model,
          date: new Date().toISOString().slice(0, 10),
          machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}`,
          backend: backend.name,
          fd: {
            extractor: 'fmnist_cnn',
            count: options.count,
            sampler: { kind: 'ancestral', steps: options.steps },
            seeds: `0 to ${options.repeats - 1}`,
            reference: 'training split',
            ...fdSpread,
          },
          floor: { count: options.count, sets: `${options.repeats} disjoint sets of the test split`, ...floorSpread },
          overFloor: fdSpread.mean / floorSpread.mean,
          bitsPerDim: nll,
          seconds: Math.round((Date.now() - started) / 1000),
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    loaded.model.dispose();
  }
}

main().catch((err) => {
  process.stderr.write(`quality-errors: ${err.stack ?? err.message}\n`);
  process.exit(1);
});

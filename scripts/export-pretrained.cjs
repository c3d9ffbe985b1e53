#!/usr/bin/env node
/**
 * Exports a run's EMA weights as a reference model of @ddpm/pretrained
 * (packages/pretrained/models/NAME/: ema.safetensors and model.json):
 *
 *   npx tsc -b && node scripts/export-pretrained.cjs --store DIR --run TRAIN_JOB_ID --nll-job EVAL_JOB_ID \
 *     --floor FD --recipe NAME --name fashion-mnist-cpu [--step N] [--study docs/reference-run]
 *
 * DIR is the service's file store (the study's runs/.../store). The manifest records the run's
 * configuration, the recipe's request, step, images seen and training time, the weights' sha256,
 * the scores of the run's last evaluation (fd_fmnist_cnn and pixel statistics, with their sample
 * settings and the real-data floor at the same count) and the bits/dim of the eval job named, and
 * a small deterministic sampling (16 samples, 20 strided ancestral steps, seed 0) that
 * packages/pretrained's test repeats on the shipped weights; and draws the grid the model is shown
 * with (scripts/pretrained-grid.cjs).
 */
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..');
const dist = (pkg) => require(path.join(ROOT, 'packages', pkg, 'dist', 'index.js'));

const { drawGrid, DEFAULTS: GRID } = require('./pretrained-grid.cjs');

const CHECK = { count: 16, steps: 20, seed: 0 };

async function main() {
  const { values } = parseArgs({
    options: {
      store: { type: 'string' },
      run: { type: 'string' },
      'nll-job': { type: 'string' },
      floor: { type: 'string' },
      recipe: { type: 'string' },
      name: { type: 'string' },
      step: { type: 'string' },
      study: { type: 'string' },
    },
  });
  for (const required of ['store', 'run', 'nll-job', 'floor', 'recipe', 'name']) {
    if (values[required] === undefined)
      throw new Error(`--${required} is required (see the comment at the top of ${__filename})`);
  }
  const { initBackend } = dist('kernels');
  const backend = await initBackend({ backend: 'wasm' });
  const { FileStore } = dist('storage');
  const { RECIPES, PRETRAINED_MODELS } = dist('settings');
  const { listCheckpoints, readEvalHistory, samplingCheck, loadModelFromCheckpoint } = dist('engine');
  const { sha256Hex } = dist('core');
  if (!PRETRAINED_MODELS.includes(values.name))
    throw new Error(
      `--name must be one of ${PRETRAINED_MODELS.join(', ')} (add it to PRETRAINED_MODELS in @ddpm/settings first)`,
    );
  const recipe = RECIPES[values.recipe];
  if (!recipe) throw new Error(`--recipe must be one of ${Object.keys(RECIPES).join(', ')}`);
  const store = new FileStore(path.resolve(values.store));
  const { runPrefixOf, evalReportKey } = require(path.join(ROOT, 'packages', 'storage', 'dist', 'layout.js'));
  const prefix = runPrefixOf(values.run);
  const checkpoints = await listCheckpoints(store, prefix);
  const ref = values.step ? checkpoints.find((c) => c.step === Number(values.step)) : checkpoints[0];
  if (!ref)
    throw new Error(`no checkpoint${values.step ? ` at step ${values.step}` : ''} under ${store.urlOf(prefix)}`);
  const state = JSON.parse(new TextDecoder().decode(await store.get(`${ref.key}/state.json`)));
  const weights = await store.get(`${ref.key}/ema.safetensors`);
  const history = await readEvalHistory(store, prefix);
  const last = history.entries.find((e) => e.step === ref.step);
  if (!last) throw new Error(`the run has no evaluation at step ${ref.step}`);
  const nll = JSON.parse(new TextDecoder().decode(await store.get(evalReportKey(values['nll-job']))));
  if (nll.trainJobId !== values.run || nll.checkpoint.step !== ref.step)
    throw new Error(
      `eval job ${values['nll-job']} measured ${nll.trainJobId} at step ${nll.checkpoint.step}, not ${values.run} at ${ref.step}`,
    );

  const loaded = await loadModelFromCheckpoint(store, prefix, { step: ref.step, ema: true });
  const check = { ...CHECK, ...(await samplingCheck(loaded.model, loaded.diffusion, CHECK)) };
  const grid = await drawGrid(loaded.model, loaded.diffusion, GRID, backend.name);
  loaded.model.dispose();

  const floor = Number(values.floor);
  const fd = last.metrics.fd_fmnist_cnn;
  const manifest = {
    version: 1,
    name: values.name,
    weights: 'ema.safetensors',
    sha256: sha256Hex(weights),
    bytes: weights.length,
    train: state.config,
    recipe: { name: values.recipe, request: recipe.request },
    step: ref.step,
    imagesSeen: state.imagesSeen,
    trainSeconds: Math.round(state.trainSeconds),
    provenance: {
      trainJob: values.run,
      machine: `${os.cpus().length} × ${os.cpus()[0]?.model}`,
      workers: 'a data-parallel group of 2 (both cores)',
      backend: backend.name,
      exportedAt: new Date().toISOString(),
      ...(values.study ? { study: values.study } : {}),
    },
    scores: {
      fd_fmnist_cnn: {
        value: fd,
        samples: last.samples,
        realDataFloor: floor,
        overFloor: fd / floor,
        extractorSha256: last.extractor?.weightsSha256,
      },
      bits_per_dim: {
        value: nll.metrics.bits_per_dim,
        images: nll.nll?.count,
        dataset: nll.nll?.dataset,
        terms: 'all T',
      },
      pixel_mean: { value: last.metrics.pixel_mean, reference: last.pixels?.reference?.mean },
      pixel_background: { value: last.metrics.pixel_background, reference: last.pixels?.reference?.background },
      pixel_saturated: { value: last.metrics.pixel_saturated, reference: last.pixels?.reference?.saturated },
    },
    check,
    grid: grid.entry,
  };
  const dir = path.join(ROOT, 'packages', 'pretrained', 'models', values.name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'ema.safetensors'), weights);
  fs.writeFileSync(path.join(dir, grid.entry.file), grid.png);
  fs.writeFileSync(path.join(dir, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  process.stdout.write(
    `${JSON.stringify({ dir, bytes: weights.length, sha256: manifest.sha256, step: ref.step, check }, null, 2)}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});

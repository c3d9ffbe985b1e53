#!/usr/bin/env node
/**
 * Draws the picture a shipped reference model is shown with (the console's models page,
 * GET /models/NAME/grid.png): `count` samples of its EMA weights in `steps` strided ancestral
 * steps from `seed`, as a grid PNG beside the weights (packages/pretrained/models/NAME/grid.png),
 * and records how it was drawn, with its sha256, in model.json's `grid`:
 *
 *   npx tsc -b && node scripts/pretrained-grid.cjs --name fashion-mnist-cpu [--count 64] [--steps 100] [--seed 0]
 *
 * scripts/export-pretrained.cjs draws it too when it exports a model.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const ROOT = path.resolve(__dirname, '..');
const dist = (pkg) => require(path.join(ROOT, 'packages', pkg, 'dist', 'index.js'));

const DEFAULTS = { count: 64, steps: 100, seed: 0 };

/** Draws the grid of a loaded model and returns the PNG's bytes and the manifest's `grid` entry. */
async function drawGrid(model, diffusion, settings, backendName) {
  const { sampleGrid, encodePng } = dist('engine');
  const { sha256Hex } = dist('core');
  const sampler = { kind: 'ancestral', steps: settings.steps };
  const started = Date.now();
  const { picture } = await sampleGrid(model, diffusion, settings.count, { sampler, seed: settings.seed, batch: 16 });
  const png = await encodePng(picture);
  return {
    png,
    entry: {
      file: 'grid.png',
      count: settings.count,
      sampler,
      seed: settings.seed,
      ema: true,
      bytes: png.length,
      sha256: sha256Hex(png),
      drawnAt: new Date().toISOString(),
      backend: backendName,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    },
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      count: { type: 'string' },
      steps: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  if (values.name === undefined) throw new Error(`--name is required (see the comment at the top of ${__filename})`);
  const settings = {
    count: Number(values.count ?? DEFAULTS.count),
    steps: Number(values.steps ?? DEFAULTS.steps),
    seed: Number(values.seed ?? DEFAULTS.seed),
  };
  for (const [key, value] of Object.entries(settings)) {
    if (!Number.isInteger(value) || value < (key === 'seed' ? 0 : 1))
      throw new Error(`--${key} must be a ${key === 'seed' ? 'non-negative' : 'positive'} integer`);
  }
  const { initBackend } = dist('kernels');
  const backend = await initBackend({ backend: 'wasm' });
  const { loadPretrainedModel } = dist('engine');
  const { pretrainedDir } = dist('pretrained');
  const loaded = loadPretrainedModel(values.name);
  const { png, entry } = await drawGrid(loaded.model, loaded.diffusion, settings, backend.name);
  loaded.model.dispose();
  const dir = pretrainedDir(values.name);
  const manifestFile = path.join(dir, 'model.json');
  const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  fs.writeFileSync(path.join(dir, entry.file), png);
  fs.writeFileSync(manifestFile, `${JSON.stringify({ ...manifest, grid: entry }, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify({ dir, grid: entry }, null, 2)}\n`);
}

module.exports = { drawGrid, DEFAULTS };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err.stack ?? err}\n`);
    process.exit(1);
  });
}

#!/usr/bin/env node
/*
 * Calibrates the step-memory estimate of @ddpm/config's budgets (trainingStepBytes): trains two
 * steps of a preset at a batch size on wasm and prints the wasm heap after them next to the
 * architecture's estimated activations (describeArchitecture().activationFloats). The factor
 * in budgets.ts (2.6) is the largest heap/estimate ratio seen (2.41-2.55), rounded up.
 *
 *   npm run build && node scripts/calibrate-step-memory.cjs tiny32 64
 */
'use strict';
const { initBackend } = require('@ddpm/backend');
const { UNet, describeArchitecture, preset } = require('@ddpm/unet');
const { Rng } = require('@ddpm/diffusion');
const tf = require('@tensorflow/tfjs-core');
(async () => {
  await initBackend({ preferred: 'wasm' });
  const [name, B] = [process.argv[2], Number(process.argv[3])];
  const config = preset(name);
  const s = describeArchitecture(config);
  const rng = Rng.fromSeed(0);
  const net = new UNet(config, { uniform: () => rng.uniform() });
  const S = config.imageSize;
  const x = tf.tensor4d(rng.normals(B*S*S*config.inChannels), [B,S,S,config.inChannels]);
  const t = tf.tensor1d(rng.ints(1000, B), 'int32');
  const opt = tf.train.adam(2e-4);
  const mem = () => tf.backend().wasm ? tf.backend().wasm.HEAPU8.length : 0;
  const before = mem();
  let peak = 0;
  for (let i = 0; i < 2; i++) {
    const loss = opt.minimize(() => tf.mean(tf.square(tf.sub(x, net.apply(x, t, { training: true, dropoutSeed: i })))), true, net.variables);
    await loss.data(); loss.dispose();
    peak = Math.max(peak, mem());
  }
  console.log(JSON.stringify({ name, B, params: s.totalParams, actFloatsPerImage: s.activationFloats, heapBefore: before/2**20, heapAfter: peak/2**20, estMB: B*s.activationFloats*4/2**20, rss: process.memoryUsage().rss/2**20 }));
})();

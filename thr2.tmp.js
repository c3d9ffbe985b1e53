(async () => {
  const { initBackend } = require('./packages/backend/dist/index.js');
  const info = await initBackend({ preferred: 'wasm' });
  console.log(JSON.stringify(info));
  const tf = require('@tensorflow/tfjs-core');
  const { wasmKernels } = require('./packages/unet/dist/internal.js');
  console.log('kernels', wasmKernels() !== undefined);
  process.exit(0);
})().catch((e) => { console.error('ERR', e); process.exit(1); });

const { installWasmThreads } = require('./packages/backend/dist/wasm-threads.js');
const n = Number(process.argv[2] || 2);
(async () => {
  const tf = require('@tensorflow/tfjs-core');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  const os = require('os'); const cpus = os.cpus;
  if (n > 1) { installWasmThreads(); tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true); os.cpus = () => Array.from({ length: 2 * n }, () => cpus()[0]); }
  wasm.setThreadsCount(n);
  await tf.setBackend('wasm'); await tf.ready();
  os.cpus = cpus;
  const P = tf.backend().wasm.PThread; console.log('threads', wasm.getThreadsCount(), 'unused', P && P.unusedWorkers.length, 'running', P && P.runningWorkers.length);
  const x = tf.randomNormal([16, 32, 32, 64]); const w = tf.randomNormal([3, 3, 64, 64]);
  for (let i = 0; i < 5; i++) { const s = performance.now(); const y = tf.conv2d(x, w, 1, 'same'); await y.data(); y.dispose(); console.log('conv ms', (performance.now() - s).toFixed(1)); }
  process.exit(0);
})().catch((e) => { console.error('ERR', e); process.exit(1); });

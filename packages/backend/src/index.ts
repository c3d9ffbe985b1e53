/**
 * @ddpm/backend — one place that chooses and initialises the TensorFlow.js backend and makes
 * sure gradients are registered. Import it before any training code.
 */
import { assertGradientsRegistered } from './gradients';

export {
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  currentBackend,
  initBackend,
  isBackendName,
  MAX_WASM_THREADS,
  wasmThreadsFrom,
} from './backend';
export { assertGradientsRegistered } from './gradients';

assertGradientsRegistered();

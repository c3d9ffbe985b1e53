/** @ddpm/engine/internal — the trainer's building blocks, for tests and benchmarks; not a stable API. */
export { Adam, type AdamHyper, learningRateAt, loadAdam, saveAdam } from './adam';
export { emaDecayAt, updateEma } from './ema';

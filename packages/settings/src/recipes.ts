/**
 * Recipes: configurations measured to work for a kind of machine and budget, whose settings
 * become a train request's defaults (every field the request gives itself wins). Each says what
 * measured it. `ddpm train --recipe NAME` and `"recipe": NAME` in `POST /jobs/train`.
 */
export interface Recipe {
  readonly summary: string;
  /** Train request fields (the settings table's names). */
  readonly request: Readonly<Record<string, unknown>>;
}

export const RECIPES = {
  'fashion-mnist-cpu': {
    summary:
      "Fashion-MNIST on CPUs (the wasm backend): micro32, batch 16, lr 1e-3 after 20 warm-up steps, EMA 0.995 with warm-up, for one hour of training; the better of docs/quality-study's two candidates over an hour (5705 steps each: fd_fmnist_cnn 29.8 against 43.8 for lr 3e-4, one evaluation of 128 samples each, standard error about 4), as a group of 2 on a 2-core machine: run it as workers: 2 there",
    request: {
      dataset: 'fashion-mnist',
      preset: 'micro32',
      steps: 1_000_000,
      budgetMinutes: 60,
      batchSize: 16,
      learningRate: 1e-3,
      warmupSteps: 20,
      emaDecay: 0.995,
      emaWarmup: true,
      checkpointEvery: 500,
      sampleCount: 64,
      sampleSteps: 100,
    },
  },
} as const satisfies Record<string, Recipe>;

export type RecipeName = keyof typeof RECIPES;
export const RECIPE_NAMES = Object.keys(RECIPES) as RecipeName[];

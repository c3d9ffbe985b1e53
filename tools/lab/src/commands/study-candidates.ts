/**
 * The configurations the quality study trains (`ddpm study quality --candidates`): each with the
 * request it submits, whether it is in the default set, and how long a step takes, which spaces its
 * evaluations.
 */
import { type TrainRequest } from '@ddpm/api-client';

/** A configuration the study trains; `secondsPerStep` (a group of 2 on a 2-core machine) only spaces its evaluations. */
export interface StudyCandidate {
  readonly name: string;
  /** In the default set (`npm run study:quality`); the others are run by naming them. */
  readonly byDefault: boolean;
  readonly summary: string;
  readonly request: Omit<TrainRequest, 'dataset' | 'steps'>;
  readonly secondsPerStep: number;
}

const EMA = { emaDecay: 0.995, emaWarmup: true } as const;

export const STUDY_CANDIDATES: readonly StudyCandidate[] = [
  {
    name: 'micro32-lr1e-3',
    byDefault: true,
    summary:
      'micro32 (1.1 M parameters), batch 16, lr 1e-3 after 20 warm-up steps, EMA 0.995 with warm-up (the fashion-mnist-cpu recipe)',
    request: { preset: 'micro32', batchSize: 16, learningRate: 1e-3, warmupSteps: 20, ...EMA },
    secondsPerStep: 0.95,
  },
  {
    name: 'micro32-b32',
    byDefault: true,
    summary: 'micro32, batch 32, lr 1e-3 after 20 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'micro32', batchSize: 32, learningRate: 1e-3, warmupSteps: 20, ...EMA },
    secondsPerStep: 1.8,
  },
  {
    name: 'micro32-lr3e-4',
    byDefault: true,
    summary: 'micro32, batch 16, lr 3e-4 after 100 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'micro32', batchSize: 16, learningRate: 3e-4, warmupSteps: 100, ...EMA },
    secondsPerStep: 0.95,
  },
  {
    name: 'micro32-ema0.99',
    byDefault: true,
    summary:
      'micro32, batch 16, lr 1e-3 after 20 warm-up steps, EMA 0.99 with warm-up (a shorter average of the weights)',
    request: { preset: 'micro32', batchSize: 16, learningRate: 1e-3, warmupSteps: 20, emaDecay: 0.99, emaWarmup: true },
    secondsPerStep: 0.95,
  },
  {
    name: 'fashion32',
    // Each 128-sample evaluation of this 6x larger network takes ~13 min on a 2-core machine, and its bound ~15 min.
    byDefault: false,
    summary:
      'fashion32 (6.5 M parameters, dropout 0.1), batch 16, lr 5e-4 after 50 warm-up steps, EMA 0.995 with warm-up',
    request: { preset: 'fashion32', batchSize: 16, learningRate: 5e-4, warmupSteps: 50, ...EMA },
    secondsPerStep: 6,
  },
];

/** Maps an API train request onto the engine's configuration input (defaults filled by the engine). */
import { type TrainJobRequest } from './schemas';

export function trainConfigOf(request: TrainJobRequest): {
  dataset: string;
  model: { preset: string; overrides?: { dropout: number } };
  diffusion: Record<string, unknown>;
  optimizer: Record<string, number>;
  ema: Record<string, number | boolean>;
  [key: string]: unknown;
} {
  const defined = <T extends Record<string, unknown>>(o: T): Partial<T> =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  return {
    dataset: request.dataset,
    model: { preset: request.preset, ...(request.dropout !== undefined ? { overrides: { dropout: request.dropout } } : {}) },
    diffusion: defined({
      ...(request.schedule !== undefined || request.timesteps !== undefined
        ? { schedule: defined({ kind: request.schedule ?? 'linear', numTimesteps: request.timesteps }) }
        : {}),
      meanType: request.meanType,
      varianceType: request.varianceType,
      lossType: request.lossType,
    }),
    optimizer: defined({ learningRate: request.learningRate, warmupSteps: request.warmupSteps, gradClipNorm: request.gradClipNorm }) as Record<string, number>,
    ema: defined({ decay: request.emaDecay, warmup: request.emaWarmup }) as Record<string, number | boolean>,
    ...defined({
      steps: request.steps,
      batchSize: request.batchSize ?? 16,
      accumulation: request.accumulation,
      checkpointEvery: request.checkpointEvery,
      keepCheckpoints: request.keepCheckpoints,
      seed: request.seed,
      randomFlip: request.randomFlip,
    }),
  };
}

/**
 * Where the service keeps what it stores: every top-level object-store key is built here, by a
 * typed function, and nowhere else (`@ddpm/storage/layout` has no dependencies, so the tensor-free
 * processes and the data readers import it too).
 *
 *     runs/<train job>/…                     a run: checkpoints, loss, evaluation history, curves (@ddpm/runs)
 *     samples/<id>.png, samples/<id>.json    a picture and what made it; a train job's grids
 *                                            during training are samples/<job>-step-<step>
 *     evals/<eval job>.json                  an eval job's report; evals/<job>-rate-distortion.csv|png
 *     extractors/<name>.safetensors          feature extractors' weights (a cache)
 *     reference-stats/<extractor>-<hash>.npz reference statistics of real data (a cache)
 *     datasets/<name>                        datasets uploaded with PUT /datasets/<name>
 */

/** The prefix of a train job's run: its checkpoints and records. */
export function runPrefixOf(jobId: string): string {
  return `runs/${jobId}`;
}

export const SAMPLES_PREFIX = 'samples/';

/** A picture's key without its extension (`.png` and `.json` are written). */
export function sampleKeyBase(sampleId: string): string {
  return `${SAMPLES_PREFIX}${sampleId}`;
}

export function sampleKey(sampleId: string, extension: 'png' | 'json'): string {
  return `${sampleKeyBase(sampleId)}.${extension}`;
}

/** The sample id of a train job's grid drawn at `step` during training (`sampleEvery`). */
export function progressGridName(jobId: string, step: number): string {
  return `${jobId}-step-${String(step).padStart(9, '0')}`;
}

/** The prefix under which a train job's grids during training lie (list it for them). */
export function progressGridsPrefix(jobId: string): string {
  return `${SAMPLES_PREFIX}${jobId}-step-`;
}

/** The step of a train job's grid during training, from its object's key; undefined for any other. */
export function progressGridStep(jobId: string, key: string): number | undefined {
  const name = key.startsWith(SAMPLES_PREFIX) ? key.slice(SAMPLES_PREFIX.length) : key;
  const m = /^(.+)-step-(\d{9})\.png$/.exec(name);
  return m && m[1] === jobId ? Number(m[2]) : undefined;
}

/** An eval job's report. */
export function evalReportKey(jobId: string): string {
  return `evals/${jobId}.json`;
}

/** An eval job's rate–distortion table and plot, without extension (`.csv`, `.png`). */
export function rateDistortionKeyBase(jobId: string): string {
  return `evals/${jobId}-rate-distortion`;
}

/** A feature extractor's weights in the cache, by its versioned name (`fmnist_cnn-v1`, `inception_fid`). */
export function extractorWeightsKey(name: string): string {
  return `extractors/${name}.safetensors`;
}

/** Reference statistics of real data for an extractor, by a hash of everything they depend on. */
export function referenceStatsKey(extractor: string, identityHash: string): string {
  return `reference-stats/${extractor}-${identityHash}.npz`;
}

export const DATASETS_PREFIX = 'datasets/';

/** An uploaded dataset (`store:<name>` in a dataset spec). */
export function datasetKey(name: string): string {
  return `${DATASETS_PREFIX}${name}`;
}

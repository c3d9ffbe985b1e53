/**
 * The reference models shipped with the service: each one's grid, its manifest (recipe, run,
 * scores with their precision) and a button that samples it (a sample job naming it).
 */
import { useEffect, useState } from 'preact/hooks';

import { type Answer, ApiError, type JobView, getJson, sendJson } from './api';
import { duration } from './format';
import { useImageData } from './image';
import { navigate } from './nav';

type ModelView = Answer<'/models'>['models'][number];

/**
 * A score as a reader takes it in: the value, with its standard error where one was measured, or
 * the mean and standard error of the repeated evaluations that measured its precision.
 */
function scoreText(score: ModelView['scores'][string]): string {
  const fmt = (x: number, digits = 4): string => x.toPrecision(digits);
  const value = typeof score.value === 'number' ? fmt(score.value) : String(score.value);
  const precision = score['precision'] as
    { mean?: unknown; standardErrorOfMean?: unknown; evaluations?: unknown } | undefined;
  const se = score['standardError'];
  if (
    typeof precision?.mean === 'number' &&
    typeof precision.standardErrorOfMean === 'number' &&
    typeof precision.evaluations === 'number'
  )
    return `${value} (one evaluation; over ${precision.evaluations}: ${fmt(precision.mean)} ± ${fmt(precision.standardErrorOfMean, 2)} s.e.)`;
  if (typeof se === 'number') return `${value} ± ${fmt(se, 2)} s.e.`;
  return value;
}

/** The number of images a model's sample job asks for, as its button says it ('' where it names none). */
function countText(body: ModelView['sample']['body']): string {
  const count = body['count'];
  return typeof count === 'number' || typeof count === 'string' ? String(count) : '';
}

function Grid(props: { grid: NonNullable<ModelView['grid']>; name: string }) {
  const { picture, error: failed } = useImageData(props.grid.url);
  const { grid } = props;
  const how = `${grid.count} samples, ${String(grid.sampler.kind)} sampler in ${String(grid.sampler.steps)} steps, seed ${grid.seed}`;
  if (failed) return <p class="error">{failed}</p>;
  return (
    <figure>
      {picture ? <img class="grid" src={picture} alt={`${props.name}: ${how}`} /> : <p>Loading the grid…</p>}
      <figcaption>{how}</figcaption>
    </figure>
  );
}

function Model(props: { model: ModelView }) {
  const { model } = props;
  const [error, setError] = useState<string | undefined>();
  const sample = (): void =>
    void sendJson<JobView>('POST', '/jobs/sample', model.sample.body).then(
      (job) => navigate(`/ui/jobs/${encodeURIComponent(job.id)}`),
      (err: unknown) => setError(err instanceof ApiError ? err.message : String(err)),
    );
  return (
    <article class="model">
      <div class="toolbar">
        <h2>{model.name}</h2>
        <div class="actions">
          <button onClick={sample}>Sample {countText(model.sample.body)}</button>
        </div>
      </div>
      {error ? <p class="error">{error}</p> : null}
      <div class="side-by-side">
        <div>{model.grid ? <Grid grid={model.grid} name={model.name} /> : <p>This model ships no grid.</p>}</div>
        <div>
          <dl class="facts">
            <dt>Recipe</dt>
            <dd>{model.recipe.name}</dd>
            <dt>Trained</dt>
            <dd>
              {model.step} steps, {model.imagesSeen.toLocaleString()} images, {duration(model.trainSeconds)}
            </dd>
            {Object.entries(model.provenance).map(([k, v]) => (
              <>
                <dt>{k}</dt>
                <dd>{String(v)}</dd>
              </>
            ))}
            <dt>Weights</dt>
            <dd>
              {(model.weights.bytes / 2 ** 20).toFixed(1)} MiB, sha256 <code>{model.weights.sha256.slice(0, 16)}…</code>
            </dd>
          </dl>
          <h3>Scores</h3>
          <dl class="facts scores">
            {Object.entries(model.scores).map(([k, v]) => (
              <>
                <dt>{k}</dt>
                <dd>{scoreText(v)}</dd>
              </>
            ))}
          </dl>
        </div>
      </div>
      <details>
        <summary>The manifest: the recipe's request, the run's configuration, every score's settings</summary>
        <div class="side-by-side">
          <div>
            <h3>Recipe request</h3>
            <pre>{JSON.stringify(model.recipe.request, null, 2)}</pre>
          </div>
          <div>
            <h3>Effective configuration</h3>
            <pre>{JSON.stringify(model.train, null, 2)}</pre>
          </div>
        </div>
        <h3>Scores, with their settings</h3>
        <pre>{JSON.stringify(model.scores, null, 2)}</pre>
      </details>
    </article>
  );
}

export function ModelsPage() {
  const [models, setModels] = useState<ModelView[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    getJson<{ models: ModelView[] }>('/models').then(
      (r) => setModels(r.models),
      (err: unknown) => setError(err instanceof ApiError ? err.message : String(err)),
    );
  }, []);
  return (
    <section class="models">
      <h1>Shipped models</h1>
      <p>Reference models that come with the service: sample or evaluate them without training.</p>
      {error ? <p class="error">{error}</p> : null}
      {models === undefined && !error ? <p>Loading…</p> : null}
      {models?.map((m) => (
        <Model key={m.name} model={m} />
      ))}
    </section>
  );
}

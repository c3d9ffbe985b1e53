/**
 * One job: its state and progress (live), the request next to the effective configuration, the
 * loss and evaluation curves, the sample grids over training with a slider, the log (following
 * while it runs), its checkpoints, its group, and what can be done with it (cancel, sample from
 * it, evaluate it). Everything the job's request or log holds is shown as text.
 */
import { useEffect, useRef, useState } from 'preact/hooks';

import { type Answer, ApiError, FINAL_STATES, type JobView, getJson, getText, sendJson } from './api';
import { Chart, type Series } from './chart';
import { bytes, progressText } from './format';
import { useImageData } from './image';
import { JobFacts } from './job-facts';
import { Link } from './nav';

/** Polls `load` every `ms` while `live`, and once more when it stops being live. */
function usePoll(load: () => Promise<void>, ms: number, live: boolean, deps: readonly unknown[]): void {
  useEffect(() => {
    let stopped = false;
    const tick = (): void => void load().catch(() => undefined);
    tick();
    if (!live) return;
    const timer = setInterval(() => !stopped && tick(), ms);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
    // The caller names what the poll depends on.
  }, [live, ...deps]);
}

type LossCurve = Answer<'/jobs/{id}/loss'>;
type EvalEntry = Answer<'/jobs/{id}/metrics'>['entries'][number];

/** The points of one metric: a point for each evaluation that measured it. */
function metricPoints(evals: readonly EvalEntry[], name: string): Series['points'] {
  return evals.flatMap((e) => {
    const y = e.metrics[name];
    return y === undefined ? [] : [{ x: e.step, y }];
  });
}

function Curves(props: { job: JobView; live: boolean }) {
  const { job, live } = props;
  const [loss, setLoss] = useState<LossCurve | undefined>();
  const [evals, setEvals] = useState<EvalEntry[]>([]);
  // Between checkpoints the curve goes on with the loss the progress reports.
  const recent = useRef<Map<number, number>>(new Map());
  const p = job.progress;
  if (p?.phase === 'training' && p.loss !== undefined) recent.current.set(p.step, p.loss);
  usePoll(
    async () => {
      setLoss(await getJson<LossCurve>(`/jobs/${encodeURIComponent(job.id)}/loss`));
      setEvals((await getJson<{ entries: EvalEntry[] }>(`/jobs/${encodeURIComponent(job.id)}/metrics`)).entries);
    },
    5000,
    live,
    [job.id],
  );
  const stored = loss?.points.map((q) => ({ x: q.step, y: q.loss })) ?? [];
  const after = [...recent.current].filter(([s]) => s > (loss?.step ?? 0)).map(([x, y]) => ({ x, y }));
  const lossPoints = [...stored, ...after];
  const lossSeries: Series[] = [{ label: 'loss', points: lossPoints }];
  const metricNames = [...new Set(evals.flatMap((e) => Object.keys(e.metrics)))];
  return (
    <div class="curves">
      {lossPoints.length > 0 ? (
        <Chart title="Training loss" series={lossSeries} logY />
      ) : (
        <p>No loss yet: the curve comes with the first checkpoint.</p>
      )}
      {metricNames.map((name) => (
        <Chart key={name} title={name} series={[{ label: name, points: metricPoints(evals, name) }]} />
      ))}
    </div>
  );
}

function Grids(props: { job: JobView; live: boolean }) {
  const { job, live } = props;
  const [grids, setGrids] = useState<{ step: number; url: string }[]>([]);
  const [index, setIndex] = useState<number | undefined>();
  const final = job.links.samples ?? [];
  usePoll(
    async () =>
      setGrids(
        (await getJson<{ grids: { step: number; url: string }[] }>(`/jobs/${encodeURIComponent(job.id)}/grids`)).grids,
      ),
    5000,
    live,
    [job.id],
  );
  const frames = [
    ...grids.map((g) => ({ label: `step ${g.step}`, url: g.url })),
    ...final.map((url) => ({
      label: `final${job.result?.step !== undefined ? ` (step ${job.result.step})` : ''}`,
      url,
    })),
  ];
  const shown = frames[index ?? frames.length - 1];
  const { picture } = useImageData(shown?.url);
  if (frames.length === 0)
    return <p>No samples yet{job.type === 'train' ? ' (sampleEvery draws a grid during training)' : ''}.</p>;
  return (
    <div class="grids">
      {picture ? <img class="grid" src={picture} alt={`samples, ${shown?.label ?? ''}`} /> : <p>Loading the grid…</p>}
      {frames.length > 1 ? (
        <label>
          <input
            type="range"
            min={0}
            max={frames.length - 1}
            value={index ?? frames.length - 1}
            onInput={(e) => setIndex(Number(e.currentTarget.value))}
          />{' '}
          {shown?.label}
        </label>
      ) : (
        <p>{shown?.label}</p>
      )}
    </div>
  );
}

function Log(props: { job: JobView; live: boolean }) {
  const { job, live } = props;
  const [lines, setLines] = useState<string[]>([]);
  const next = useRef(0);
  const box = useRef<HTMLPreElement>(null);
  usePoll(
    async () => {
      const page = await getText(`/jobs/${encodeURIComponent(job.id)}/logs?start=${next.current}&limit=1000`);
      const more = page.text.split('\n').filter((l) => l !== '');
      if (page.next !== undefined) next.current = page.next;
      if (more.length > 0) setLines((old) => [...old, ...more].slice(-2000));
    },
    2000,
    live,
    [job.id],
  );
  useEffect(() => {
    const el = box.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [lines.length]);
  return (
    <pre class="log" ref={box}>
      {lines.join('\n')}
    </pre>
  );
}

function Checkpoints(props: { job: JobView; live: boolean }) {
  const [list, setList] = useState<{ step: number; key: string; bytes: number }[]>([]);
  usePoll(
    async () =>
      setList(
        (
          await getJson<{ checkpoints: { step: number; key: string; bytes: number }[] }>(
            `/jobs/${encodeURIComponent(props.job.id)}/checkpoints`,
          )
        ).checkpoints,
      ),
    5000,
    props.live,
    [props.job.id],
  );
  if (list.length === 0) return <p>No checkpoint yet.</p>;
  return (
    <table class="checkpoints">
      <thead>
        <tr>
          <th>Step</th>
          <th>Size</th>
          <th>Key</th>
        </tr>
      </thead>
      <tbody>
        {list.map((c) => (
          <tr key={c.key}>
            <td>{c.step}</td>
            <td>{bytes(c.bytes)}</td>
            <td>
              <code>{c.key}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The sample and eval jobs of a train job: their state, and each sample job's grid once drawn. */
function FromThisRun(props: { job: JobView; refresh: number }) {
  const { job } = props;
  const [list, setList] = useState<JobView[]>([]);
  const live = list.some((j) => !FINAL_STATES.has(j.state));
  usePoll(
    async () => setList((await getJson<{ jobs: JobView[] }>(`/jobs?run=${encodeURIComponent(job.id)}&limit=20`)).jobs),
    3000,
    live,
    [job.id, props.refresh],
  );
  if (list.length === 0) return <p>None yet: “Sample from this run” and “Evaluate” add them here.</p>;
  return (
    <ul class="derived">
      {list.map((j) => (
        <li key={j.id}>
          <Link href={`/ui/jobs/${encodeURIComponent(j.id)}`}>{j.id}</Link>{' '}
          <span class={`state ${j.state}`} data-state={j.state}>
            {j.state}
          </span>{' '}
          {j.result?.metrics
            ? Object.entries(j.result.metrics)
                .map(([k, v]) => `${k} ${v.toPrecision(4)}`)
                .join(' · ')
            : progressText(j.progress)}
          {j.type === 'sample' && j.links.samples?.[0] ? <SampleImage url={j.links.samples[0]} label={j.id} /> : null}
        </li>
      ))}
    </ul>
  );
}

function SampleImage(props: { url: string; label: string }) {
  const { picture } = useImageData(props.url);
  return picture ? <img class="grid" src={picture} alt={`samples of ${props.label}`} /> : null;
}

function Generations(props: {
  generations: NonNullable<NonNullable<NonNullable<JobView['result']>['group']>['generations']>;
}) {
  return (
    <table class="generations">
      <thead>
        <tr>
          <th>Generation</th>
          <th>Ranks</th>
          <th>From step</th>
          <th>How it ended</th>
        </tr>
      </thead>
      <tbody>
        {props.generations.map((g) => (
          <tr key={g.generation}>
            <td>{g.generation}</td>
            <td>{g.worldSize}</td>
            <td>{g.fromStep ?? 'the start'}</td>
            <td>
              {g.ended === undefined
                ? 'finished the job'
                : `${g.ended} (${g.restart ? 'a restart' : 'not counted as a restart'})`}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/**
 * What "sample from this run" asks for: 16 images from its newest checkpoint, drawn with the
 * sampler of the run's own grids (its sampleSteps: a run of T = 1000 is not sampled in all 1000
 * steps by a click) and a new seed.
 */
function sampleFromRun(job: JobView): Record<string, unknown> {
  const grid = (job.config as { finalGrid?: { sampler?: { kind?: unknown; steps?: unknown; eta?: unknown } } })
    ?.finalGrid?.sampler;
  return {
    trainJobId: job.id,
    count: 16,
    ...(grid?.kind === 'ancestral' || grid?.kind === 'ddim' ? { sampler: grid.kind } : {}),
    ...(typeof grid?.steps === 'number' ? { steps: grid.steps } : {}),
    ...(grid?.kind === 'ddim' && typeof grid.eta === 'number' ? { eta: grid.eta } : {}),
  };
}

function Actions(props: { job: JobView; onError: (m: string) => void; onCreated: (job: JobView) => void }) {
  const { job, onError, onCreated } = props;
  const act = (what: () => Promise<JobView | undefined>): void =>
    void what().then(
      (created) => created && created.id !== job.id && onCreated(created),
      (err: unknown) => onError(err instanceof ApiError ? err.message : String(err)),
    );
  const finished = FINAL_STATES.has(job.state);
  const trained = job.type === 'train' && job.result?.step !== undefined && job.result.step > 0;
  return (
    <div class="actions">
      {!finished ? (
        <button
          class="danger"
          onClick={() => act(() => sendJson<JobView>('DELETE', `/jobs/${encodeURIComponent(job.id)}`))}
        >
          Cancel
        </button>
      ) : null}
      {trained ? (
        <>
          <button onClick={() => act(() => sendJson<JobView>('POST', '/jobs/sample', sampleFromRun(job)))}>
            Sample from this run
          </button>
          <button
            onClick={() =>
              act(() =>
                sendJson<JobView>('POST', '/jobs/eval', { trainJobId: job.id, metrics: ['nll'], nllImages: 16 }),
              )
            }
          >
            Evaluate (nll)
          </button>
        </>
      ) : null}
    </div>
  );
}

/** The job, read again every 1.5 s until it is over, with the error of the last read if it failed. */
function useJob(id: string): { job?: JobView; error?: string; live: boolean } {
  const [job, setJob] = useState<JobView | undefined>();
  const [error, setError] = useState<string | undefined>();
  const live = job === undefined || !FINAL_STATES.has(job.state);
  usePoll(
    async () => {
      try {
        setJob(await getJson<JobView>(`/jobs/${encodeURIComponent(id)}`));
        setError(undefined);
      } catch (err) {
        setError(err instanceof ApiError ? err.message : String(err));
      }
    },
    1500,
    live,
    [id],
  );
  return { job, error, live };
}

/** How far the job has come: a bar, its phase and steps, and the latest loss. */
function JobProgress(props: { job: JobView }) {
  const { job } = props;
  const p = job.progress;
  const fraction = p && p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : job.state === 'completed' ? 1 : 0;
  return (
    <div class="progress">
      <progress max={1} value={fraction} />
      <span>
        {p?.phase ?? ''} {progressText(p)}
        {p?.loss !== undefined ? ` · loss ${p.loss.toPrecision(4)}` : ''}
      </span>
    </div>
  );
}

/** The request as it was sent, next to the configuration the job ran with. */
function Configuration(props: { job: JobView }) {
  return (
    <div class="side-by-side">
      <div>
        <h3>Request, as sent</h3>
        <pre>{JSON.stringify(props.job.request, null, 2)}</pre>
      </div>
      <div>
        <h3>Effective configuration</h3>
        <pre>{JSON.stringify(props.job.config ?? {}, null, 2)}</pre>
      </div>
    </div>
  );
}

export function JobPage(props: { id: string }) {
  const { job, error, live } = useJob(props.id);
  const [actionError, setActionError] = useState<string | undefined>();
  // Bumped when this page submits a job from the run, so that its list is read again at once.
  const [created, setCreated] = useState(0);
  if (job === undefined) return <section>{error ? <p class="error">{error}</p> : <p>Loading…</p>}</section>;
  const group = job.result?.group;
  return (
    <section class="job">
      <div class="toolbar">
        <h1>{job.id}</h1>
        <span class={`state ${job.state}`} data-state={job.state}>
          {job.state}
        </span>
        <Actions job={job} onError={setActionError} onCreated={() => setCreated((n) => n + 1)} />
      </div>
      {error ? <p class="error">{error}</p> : null}
      {actionError ? <p class="error">{actionError}</p> : null}
      {job.error ? <p class="error">{job.error}</p> : null}
      <JobProgress job={job} />
      <JobFacts job={job} />
      {job.type === 'train' ? (
        <>
          <h2>Curves</h2>
          <Curves job={job} live={live} />
        </>
      ) : null}
      <h2>Samples</h2>
      <Grids job={job} live={live} />
      <h2>Configuration</h2>
      <Configuration job={job} />
      {group?.generations && group.generations.length > 0 ? (
        <>
          <h2>Generations of its group</h2>
          <Generations generations={group.generations} />
        </>
      ) : null}
      {job.type === 'train' ? (
        <>
          <h2>Checkpoints</h2>
          <Checkpoints job={job} live={live} />
          <h2>Sampled and evaluated from this run</h2>
          <FromThisRun job={job} refresh={created} />
        </>
      ) : null}
      <h2>Log</h2>
      <Log job={job} live={live} />
    </section>
  );
}

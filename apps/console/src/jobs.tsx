/** The jobs, newest first: filters by type and state, pages, and live updates every 2 s. */
import { useEffect, useState } from 'preact/hooks';

import { ApiError, type JobView, getJson } from './api';
import { progressText, time } from './format';
import { Link } from './nav';

const TYPES = ['', 'train', 'sample', 'eval'];
const STATES = ['', 'queued', 'active', 'delayed', 'completed', 'cancelled', 'failed'];
const PAGE = 50;

/** What a row says of a job's data and model. */
function subject(job: JobView): string {
  // Any of the three requests: read as a record, each field checked below.
  const r: Readonly<Record<string, unknown>> = job.request;
  const parts = [r['dataset'], r['preset'], r['recipe'], r['pretrained'], r['trainJobId']].filter(
    (v): v is string => typeof v === 'string',
  );
  return parts.join(' · ');
}

function workersOf(job: JobView): string {
  const g = job.result?.group ?? job.progress?.group;
  if (g) return `${g.worldSize}${g.restarts > 0 ? ` (${g.restarts} restarts)` : ''}`;
  const w = job.request['workers'];
  return typeof w === 'number' ? String(w) : '1';
}

/** A page of jobs, read again every 2 s, with the error of the last read if it failed. */
function useJobs(type: string, state: string, offset: number): { jobs?: JobView[]; error?: string } {
  const [jobs, setJobs] = useState<JobView[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (type) query.set('type', type);
    if (state) query.set('state', state);
    history.replaceState(null, '', `/ui/?${query.toString()}`);
    let stopped = false;
    // One request at a time: a slow answer is not piled on by the next poll.
    let inFlight = false;
    const load = async (): Promise<void> => {
      if (inFlight) return;
      inFlight = true;
      try {
        const page = await getJson<{ jobs: JobView[] }>(`/jobs?${query.toString()}`);
        if (!stopped) {
          setJobs(page.jobs);
          setError(undefined);
        }
      } catch (err) {
        if (!stopped) setError(err instanceof ApiError ? err.message : String(err));
      } finally {
        inFlight = false;
      }
    };
    void load();
    const timer = setInterval(() => void load(), 2000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [type, state, offset]);
  return { jobs, error };
}

/** A select of one filter: its values, the empty one meaning all. */
function Filter(props: {
  label: string;
  name: string;
  value: string;
  values: string[];
  onChange: (v: string) => void;
}) {
  return (
    <label>
      {props.label}{' '}
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.values.map((v) => (
          <option value={v}>{v || 'all'}</option>
        ))}
      </select>
    </label>
  );
}

function JobsTable(props: { jobs: JobView[] }) {
  return (
    <table class="jobs">
      <thead>
        <tr>
          <th>Job</th>
          <th>State</th>
          <th>Progress</th>
          <th>Workers</th>
          <th>Data and model</th>
          <th>Submitted</th>
          <th>Finished</th>
        </tr>
      </thead>
      <tbody>
        {props.jobs.map((job) => (
          <tr key={job.id} data-job={job.id}>
            <td>
              <Link href={`/ui/jobs/${encodeURIComponent(job.id)}`}>{job.id}</Link>
            </td>
            <td>
              <span class={`state ${job.state}`}>{job.state}</span>
            </td>
            <td>{job.state === 'active' ? progressText(job.progress) : (job.result?.step ?? '')}</td>
            <td>{workersOf(job)}</td>
            <td class="subject">{subject(job)}</td>
            <td>{time(job.submittedAt)}</td>
            <td>{time(job.finishedAt)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function JobsPage() {
  const params = new URLSearchParams(location.search);
  const [type, setType] = useState(params.get('type') ?? '');
  const [state, setState] = useState(params.get('state') ?? '');
  const [offset, setOffset] = useState(Number(params.get('offset') ?? 0) || 0);
  const { jobs, error } = useJobs(type, state, offset);
  return (
    <section>
      <div class="toolbar">
        <h1>Jobs</h1>
        <Filter label="Type" name="type" value={type} values={TYPES} onChange={(v) => (setType(v), setOffset(0))} />
        <Filter
          label="State"
          name="state"
          value={state}
          values={STATES}
          onChange={(v) => (setState(v), setOffset(0))}
        />
        <Link href="/ui/submit" class="button">
          New job
        </Link>
      </div>
      {error ? <p class="error">{error}</p> : null}
      {jobs === undefined ? (
        <p>Loading…</p>
      ) : jobs.length === 0 ? (
        <p>No jobs{type || state ? ' match' : ' yet'}.</p>
      ) : (
        <JobsTable jobs={jobs} />
      )}
      <div class="pager">
        <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Newer
        </button>
        <span>
          {offset + 1}–{offset + (jobs?.length ?? 0)}
        </span>
        <button disabled={(jobs?.length ?? 0) < PAGE} onClick={() => setOffset(offset + PAGE)}>
          Older
        </button>
      </div>
    </section>
  );
}

/**
 * A job's facts, as its page lists them: when it was submitted, started and finished, its
 * attempts, its group (as it ended, or so far), where it resumed from, and the scores it measured.
 */
import { type JobView } from './api';
import { duration, time } from './format';

/** The group a job ran in: as its result tells it, or as its progress does while it runs. */
function GroupFacts(props: { job: JobView }) {
  const group = props.job.result?.group;
  const p = props.job.progress;
  return (
    <>
      {group ? (
        <>
          <dt>Group</dt>
          <dd>
            {group.worldSize} ranks, generation {group.generation}, {group.restarts} restarts
            {group.dataPlane ? `, gradients via ${group.dataPlane}` : ''}
          </dd>
        </>
      ) : null}
      {p?.group !== undefined && !group ? (
        <>
          <dt>Group</dt>
          <dd>
            {p.group.worldSize} ranks, generation {p.group.generation}, {p.group.restarts} restarts so far
          </dd>
        </>
      ) : null}
    </>
  );
}

export function JobFacts(props: { job: JobView }) {
  const { job } = props;
  return (
    <dl class="facts">
      <dt>Submitted</dt>
      <dd>{time(job.submittedAt)}</dd>
      <dt>Started</dt>
      <dd>{time(job.startedAt)}</dd>
      <dt>Finished</dt>
      <dd>{time(job.finishedAt)}</dd>
      <dt>Attempts</dt>
      <dd>{job.attempts}</dd>
      <GroupFacts job={job} />
      {job.result?.resumedFrom ? (
        <>
          <dt>Resumed</dt>
          <dd>
            from step {job.result.resumedFrom.step}
            {job.result.resumedFrom.redone
              ? `, ${job.result.resumedFrom.redone.steps} steps redone (${duration(job.result.resumedFrom.redone.seconds)})`
              : ''}
          </dd>
        </>
      ) : null}
      {job.result?.metrics
        ? Object.entries(job.result.metrics).map(([k, v]) => (
            <>
              <dt>{k}</dt>
              <dd>{v.toPrecision(5)}</dd>
            </>
          ))
        : null}
    </dl>
  );
}

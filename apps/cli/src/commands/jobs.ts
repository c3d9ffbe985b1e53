/**
 * `ddpm jobs submit|status|cancel|list|logs|samples`: talks to a running API (--api, default
 * $DDPM_API_URL or http://127.0.0.1:8080; token from $DDPM_API_TOKEN). `submit` takes the same
 * flags as the local commands, derived from the same settings tables (@ddpm/settings).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import {
  EVAL_JOB_SETTINGS,
  SAMPLE_JOB_SETTINGS,
  type SettingTable,
  TRAIN_SETTINGS,
  assertRequest,
} from '@ddpm/settings';

import { ApiClient, FINAL_STATES, type JobView, type ListQuery, type Submission } from '@ddpm/api-client';
import { type OptionSpec, parseChoice, parseCommandArgs, parseInteger } from '../args';
import { CliInterrupted, type CliIo, CliUsageError } from '../cli-io';
import { ProgressBar, formatDuration } from '../progress';
import { flagOptions, flagUsage, requestFromFlags } from '../settings-flags';

const JOBS = { jobs: true } as const;
const TABLES = {
  train: TRAIN_SETTINGS,
  sample: SAMPLE_JOB_SETTINGS,
  eval: EVAL_JOB_SETTINGS,
} as const satisfies Record<string, SettingTable>;
type SubmitType = keyof typeof TABLES;

const CONNECTION: OptionSpec = { api: { type: 'string' } };
const CONNECTION_HELP =
  '  --api URL                 the API (default $DDPM_API_URL or http://127.0.0.1:8080); token: $DDPM_API_TOKEN';

export const JOBS_USAGE = `Usage: ddpm jobs <submit|status|cancel|list|logs|samples> ... [--api URL]

  ddpm jobs submit train  --dataset SPEC --preset NAME --steps N [options] [--wait]   (the flags of ddpm train, and --workers)
  ddpm jobs submit sample --train-job ID [options] [--wait]                           (the flags of ddpm sample)
  ddpm jobs submit eval   --train-job ID --metrics nll[,fid,is] [options] [--wait]
  ddpm jobs status ID [--wait]      state, progress, request and effective config (--wait: a progress bar until it ends)
  ddpm jobs cancel ID               cancel (a running train job checkpoints first)
  ddpm jobs list [--type T] [--state S] [--limit N] [--offset N]
  ddpm jobs logs ID                 the job's log lines
  ddpm jobs samples ID [--out FILE.png]   download a job's (first) sample picture

${CONNECTION_HELP}
  "ddpm jobs submit <type> --help" lists that job's settings.
`;

export function submitUsage(type: SubmitType): string {
  return `Usage: ddpm jobs submit ${type} [options] [--wait] [--idempotency-key K] [--api URL]

${CONNECTION_HELP}
  --wait                    show progress until the job ends; exit 0 only if it completed
  --idempotency-key K       repeat-safe submission: the same key and body return the same job
${flagUsage(TABLES[type], JOBS)}
`;
}

function isSubmitType(value: string | undefined): value is SubmitType {
  return value !== undefined && Object.prototype.hasOwnProperty.call(TABLES, value);
}

/** The submission the flags describe, checked against its table before anything is sent. */
function submissionOf(type: SubmitType, values: Readonly<Record<string, string | boolean | undefined>>): Submission {
  switch (type) {
    case 'train': {
      const body = requestFromFlags(TRAIN_SETTINGS, values, JOBS);
      assertRequest(TRAIN_SETTINGS, body, 'train');
      return { type, body };
    }
    case 'sample': {
      const body = requestFromFlags(SAMPLE_JOB_SETTINGS, values, JOBS);
      assertRequest(SAMPLE_JOB_SETTINGS, body, 'sample');
      return { type, body };
    }
    case 'eval': {
      const body = requestFromFlags(EVAL_JOB_SETTINGS, values, JOBS);
      assertRequest(EVAL_JOB_SETTINGS, body, 'eval');
      return { type, body };
    }
    default: {
      const unreachable: never = type;
      throw new CliUsageError(`unknown job type ${String(unreachable)}`);
    }
  }
}

export async function waitForJob(
  client: ApiClient,
  id: string,
  io: CliIo,
  tty: boolean,
  label = 'job',
  signal?: AbortSignal,
): Promise<JobView> {
  let bar: ProgressBar | undefined;
  let phase = '';
  for (;;) {
    // Ctrl-C: stop waiting (the caller stops what it started; the job itself goes on or is handed back).
    if (signal?.aborted)
      throw new CliInterrupted(
        `stopped waiting for ${id}: ${signal.reason instanceof Error ? signal.reason.message : 'interrupted'}`,
      );
    const view = await client.job(id);
    const p = view.progress;
    if (p && p.totalSteps > 0) {
      // A run with a time budget shows its training time against the budget (its `steps` may be far off).
      const budget =
        p.phase === 'training' && p.budgetSeconds !== undefined && p.trainSeconds !== undefined
          ? { total: p.budgetSeconds, spent: p.trainSeconds }
          : undefined;
      const kind = budget ? `${p.phase} (time budget)` : p.phase;
      if (!bar || phase !== kind) {
        bar?.finish();
        phase = kind;
        bar = budget
          ? new ProgressBar(`${label} ${kind}`, budget.total, io.stderr, tty, budget.spent, formatDuration)
          : new ProgressBar(`${label} ${kind}`, p.totalSteps, io.stderr, tty, p.step);
      }
      bar.update(budget ? Math.min(budget.spent, budget.total) : p.step, {
        ...(budget ? { step: String(p.step) } : {}),
        ...(p.imagesPerSecond ? { 'img/s': p.imagesPerSecond.toFixed(1) } : {}),
        ...(p.loss !== undefined ? { loss: p.loss.toFixed(4) } : {}),
        state: view.state,
      });
    }
    if (FINAL_STATES.has(view.state)) {
      bar?.finish();
      return view;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function clientOf(values: Readonly<Record<string, string | boolean | undefined>>): ApiClient {
  const baseUrl = String(values['api'] ?? process.env['DDPM_API_URL'] ?? 'http://127.0.0.1:8080');
  // Said as the flag the user gave, with the usage (the client would say "the API's address").
  if (!URL.canParse(baseUrl))
    throw new CliUsageError(`--api must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(baseUrl)}`);
  return new ApiClient({
    baseUrl,
    ...(process.env['DDPM_API_TOKEN'] ? { token: process.env['DDPM_API_TOKEN'] } : {}),
  });
}

/** `ddpm jobs submit <type> --help` shows that job's settings; every other --help the overview. */
export function jobsUsage(argv: readonly string[]): string {
  return argv[0] === 'submit' && isSubmitType(argv[1]) ? submitUsage(argv[1]) : JOBS_USAGE;
}

type JobsEnv = { tty: boolean; signal?: AbortSignal };

function print(io: CliIo, value: unknown): void {
  io.stdout(JSON.stringify(value, null, 2) + '\n');
}

export async function jobsCommand(argv: readonly string[], io: CliIo, env: JobsEnv = { tty: false }): Promise<number> {
  const [verb, arg] = argv;
  if (verb === undefined) throw new CliUsageError('ddpm jobs needs a command');
  switch (verb) {
    case 'submit':
      if (!isSubmitType(arg))
        throw new CliUsageError(
          `expected "ddpm jobs submit train", "... sample" or "... eval", got ${JSON.stringify(arg)}`,
        );
      return submitJob(arg, argv.slice(2), io, env);
    case 'status':
    case 'cancel':
    case 'logs':
    case 'samples':
      return onJob(verb, argv.slice(1), io, env);
    case 'list':
      return listJobs(argv.slice(1), io);
    default:
      throw new CliUsageError(
        `unknown jobs command ${JSON.stringify(verb)}; expected submit, status, cancel, list, logs or samples`,
      );
  }
}

/** `ddpm jobs submit <type>`: the job's id at once, or (--wait) the job once it ended. */
async function submitJob(type: SubmitType, argv: readonly string[], io: CliIo, env: JobsEnv): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    ...CONNECTION,
    ...flagOptions(TABLES[type], JOBS),
    wait: { type: 'boolean' },
    'idempotency-key': { type: 'string' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const submission = submissionOf(type, values);
  const client = clientOf(values);
  const key = values['idempotency-key'];
  const submitted = await client.submit(submission, typeof key === 'string' ? key : undefined);
  if (values['wait'] !== true) {
    print(io, submitted);
    return 0;
  }
  io.stderr(`submitted ${submitted.id}\n`);
  const done = await waitForJob(client, submitted.id, io, env.tty, type, env.signal);
  print(io, done);
  return done.state === 'completed' ? 0 : 1;
}

/** `ddpm jobs status|cancel|logs|samples ID`. */
async function onJob(
  verb: 'status' | 'cancel' | 'logs' | 'samples',
  argv: readonly string[],
  io: CliIo,
  env: JobsEnv,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    ...CONNECTION,
    wait: { type: 'boolean' },
    out: { type: 'string' },
  });
  const id = positionals[0];
  if (!id) throw new CliUsageError(`ddpm jobs ${verb} needs a job id`);
  const client = clientOf(values);
  if (verb === 'status') {
    print(
      io,
      values['wait'] === true ? await waitForJob(client, id, io, env.tty, 'job', env.signal) : await client.job(id),
    );
  } else if (verb === 'cancel') {
    print(io, await client.cancel(id));
  } else if (verb === 'logs') {
    io.stdout(await client.logs(id));
  } else {
    const view = await client.job(id);
    const link = view.links.samples?.[0];
    if (!link) throw new CliUsageError(`job ${id} has no samples (state ${view.state})`);
    const sampleUrl = client.absolute(link);
    const out = path.resolve(String(values['out'] ?? `${id}.png`));
    await fs.writeFile(out, await client.sample(new URL(sampleUrl).pathname.replace(/^\/samples\//, '')));
    print(io, { png: out, url: sampleUrl });
  }
  return 0;
}

/** `ddpm jobs list`: a page of jobs, filtered by type and state. */
async function listJobs(argv: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    ...CONNECTION,
    type: { type: 'string' },
    state: { type: 'string' },
    limit: { type: 'string' },
    offset: { type: 'string' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const query: ListQuery = {
    ...(values['type'] !== undefined
      ? { type: parseChoice('type', values['type'], ['train', 'sample', 'eval'] as const, 'train') }
      : {}),
    ...(values['state'] !== undefined
      ? {
          state: parseChoice(
            'state',
            values['state'],
            ['queued', 'delayed', 'active', 'completed', 'cancelled', 'failed'] as const,
            'queued',
          ),
        }
      : {}),
    ...(values['limit'] !== undefined
      ? { limit: String(parseInteger('limit', values['limit'], 20, { min: 1, max: 100 })) }
      : {}),
    ...(values['offset'] !== undefined
      ? { offset: String(parseInteger('offset', values['offset'], 0, { min: 0, max: 999_999 })) }
      : {}),
  };
  print(io, await clientOf(values).list(query));
  return 0;
}

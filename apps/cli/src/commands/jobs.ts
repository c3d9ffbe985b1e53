/**
 * `ddpm jobs submit|status|cancel|list|samples`: talks to a running API (--api, default
 * $DDPM_API_URL or http://127.0.0.1:8080; token from $DDPM_API_TOKEN).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { ApiClient, FINAL_STATES, type JobViewLite } from '../api-client';
import { parseChoice, parseCommandArgs, parseInteger, parseNumber } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { ProgressBar } from '../progress';

export const JOBS_USAGE = `Usage: ddpm jobs <submit|status|cancel|list|samples> ... [--api URL]

  ddpm jobs submit train --dataset SPEC --preset NAME --steps N [--batch B] [--lr X] [--warmup N]
                         [--ema-decay D] [--ema-warmup] [--sample-count N] [--sample-steps S] [--wait]
  ddpm jobs submit sample --train-job ID --count N [--steps S] [--sampler ancestral|ddim] [--seed S] [--wait]
  ddpm jobs status ID [--wait]      state and progress (--wait: a progress bar until it ends)
  ddpm jobs cancel ID               cancel (a running train job checkpoints first)
  ddpm jobs list [--type T] [--state S] [--limit N]
  ddpm jobs samples ID [--out FILE.png]   download a job's sample grid

  --api URL          the API (default $DDPM_API_URL or http://127.0.0.1:8080); token: $DDPM_API_TOKEN
  --idempotency-key K   with submit: repeat-safe submission
`;

export async function waitForJob(client: ApiClient, id: string, io: CliIo, tty: boolean, label = 'job'): Promise<JobViewLite> {
  let bar: ProgressBar | undefined;
  let total = 0;
  for (;;) {
    const view = await client.json<JobViewLite>('GET', `/jobs/${id}`);
    const p = view.progress;
    if (p && p.totalSteps > 0) {
      if (!bar || total !== p.totalSteps) {
        total = p.totalSteps;
        bar = new ProgressBar(`${label} ${p.phase}`, p.totalSteps, io.stderr, tty, p.step);
      }
      bar.update(p.step, {
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

export async function jobsCommand(argv: readonly string[], io: CliIo, env: { tty: boolean } = { tty: false }): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    api: { type: 'string' },
    wait: { type: 'boolean' },
    dataset: { type: 'string' },
    preset: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    lr: { type: 'string' },
    warmup: { type: 'string' },
    'ema-decay': { type: 'string' },
    'ema-warmup': { type: 'boolean' },
    'sample-count': { type: 'string' },
    'sample-steps': { type: 'string' },
    'train-job': { type: 'string' },
    count: { type: 'string' },
    sampler: { type: 'string' },
    seed: { type: 'string' },
    type: { type: 'string' },
    state: { type: 'string' },
    limit: { type: 'string' },
    out: { type: 'string' },
    'idempotency-key': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values['help'] === true || positionals.length === 0) {
    io.stdout(JOBS_USAGE);
    return values['help'] === true ? 0 : 2;
  }
  const client = new ApiClient({
    baseUrl: String(values['api'] ?? process.env['DDPM_API_URL'] ?? 'http://127.0.0.1:8080'),
    ...(process.env['DDPM_API_TOKEN'] ? { token: process.env['DDPM_API_TOKEN'] } : {}),
  });
  const [verb, arg] = positionals;
  const print = (value: unknown): void => io.stdout(JSON.stringify(value, null, 2) + '\n');
  const optional = (flag: string, parse: (raw: string | boolean | undefined) => unknown): Record<string, unknown> =>
    values[flag] === undefined ? {} : { [flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())]: parse(values[flag]) };
  switch (verb) {
    case 'submit': {
      let body: Record<string, unknown>;
      if (arg === 'train') {
        for (const f of ['dataset', 'preset', 'steps']) if (values[f] === undefined) throw new CliUsageError(`--${f} is required`);
        body = {
          dataset: String(values['dataset']),
          preset: String(values['preset']),
          steps: parseInteger('steps', values['steps'], 1, { min: 1 }),
          ...(values['batch'] !== undefined ? { batchSize: parseInteger('batch', values['batch'], 16, { min: 1 }) } : {}),
          ...(values['lr'] !== undefined ? { learningRate: parseNumber('lr', values['lr'], 2e-4) } : {}),
          ...(values['warmup'] !== undefined ? { warmupSteps: parseInteger('warmup', values['warmup'], 0, { min: 0 }) } : {}),
          ...(values['ema-decay'] !== undefined ? { emaDecay: parseNumber('ema-decay', values['ema-decay'], 0.9999) } : {}),
          ...(values['ema-warmup'] === true ? { emaWarmup: true } : {}),
          ...(values['sample-count'] !== undefined ? { sampleCount: parseInteger('sample-count', values['sample-count'], 0, { min: 0 }) } : {}),
          ...(values['sample-steps'] !== undefined ? { sampleSteps: parseInteger('sample-steps', values['sample-steps'], 1, { min: 1 }) } : {}),
        };
      } else if (arg === 'sample') {
        if (values['train-job'] === undefined) throw new CliUsageError('--train-job is required');
        body = {
          trainJobId: String(values['train-job']),
          count: parseInteger('count', values['count'], 16, { min: 1 }),
          ...optional('steps', (v) => parseInteger('steps', v, 1, { min: 1 })),
          ...optional('seed', (v) => parseInteger('seed', v, 0, { min: 0 })),
          ...(values['sampler'] !== undefined ? { sampler: parseChoice('sampler', values['sampler'], ['ancestral', 'ddim'] as const, 'ancestral') } : {}),
        };
      } else {
        throw new CliUsageError(`expected "ddpm jobs submit train" or "ddpm jobs submit sample", got ${JSON.stringify(arg)}`);
      }
      const key = values['idempotency-key'];
      const submitted = await client.json<JobViewLite>('POST', `/jobs/${arg}`, body, key === undefined ? {} : { 'idempotency-key': String(key) });
      if (values['wait'] !== true) {
        print(submitted);
        return 0;
      }
      io.stderr(`submitted ${submitted.id}\n`);
      const done = await waitForJob(client, submitted.id, io, env.tty, arg);
      print(done);
      return done.state === 'completed' ? 0 : 1;
    }
    case 'status': {
      if (!arg) throw new CliUsageError('ddpm jobs status needs a job id');
      const view = values['wait'] === true ? await waitForJob(client, arg, io, env.tty) : await client.json<JobViewLite>('GET', `/jobs/${arg}`);
      print(view);
      return 0;
    }
    case 'cancel': {
      if (!arg) throw new CliUsageError('ddpm jobs cancel needs a job id');
      print(await client.json('DELETE', `/jobs/${arg}`));
      return 0;
    }
    case 'list': {
      const query = new URLSearchParams();
      for (const k of ['type', 'state', 'limit']) if (values[k] !== undefined) query.set(k, String(values[k]));
      print(await client.json('GET', `/jobs${query.size > 0 ? `?${query}` : ''}`));
      return 0;
    }
    case 'samples': {
      if (!arg) throw new CliUsageError('ddpm jobs samples needs a job id');
      const view = await client.json<JobViewLite>('GET', `/jobs/${arg}`);
      const sampleUrl = view.links.samples?.[0];
      if (!sampleUrl) throw new CliUsageError(`job ${arg} has no samples (state ${view.state})`);
      const out = path.resolve(String(values['out'] ?? `${arg}.png`));
      await fs.writeFile(out, await client.bytes(new URL(sampleUrl).pathname));
      print({ png: out, url: sampleUrl });
      return 0;
    }
    default:
      throw new CliUsageError(`unknown jobs command ${JSON.stringify(verb)}; expected submit, status, cancel, list or samples`);
  }
}

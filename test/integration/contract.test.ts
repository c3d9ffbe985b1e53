/**
 * The contract, derived from one table and checked against every place it shows: the settings
 * tables of docs/settings.md (and the budgets of docs/configuration.md), the CLI's flags and
 * usage, the request schemas of the served OpenAPI document, the document itself (a real
 * validator, zero errors; identical to the committed apps/api/openapi.json) and the CLI client's
 * types generated from it.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020';
import * as config from '@ddpm/config';
import { runCli } from '@ddpm/cli';

import { type Stack, ROOT, startStack } from './service-support';

const docsTables = require(path.join(ROOT, 'scripts', 'docs-tables.cjs')) as { TARGETS: { file: string; withTables: (text: string, c: unknown) => string }[] };
const apiContract = require(path.join(ROOT, 'scripts', 'api-contract.cjs')) as { DOCUMENT: string; TYPES: string; documentText: (d: unknown) => string };

const TABLES = { train: config.TRAIN_SETTINGS, sample: config.SAMPLE_JOB_SETTINGS, eval: config.EVAL_JOB_SETTINGS } as const;

async function cli(...argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { status, stdout, stderr };
}

/** The flags a usage text documents, in order. */
function documentedFlags(usage: string): string[] {
  return [...usage.matchAll(/^\s+(?:-\w, )?--(?:\[no-\])?([a-z0-9-]+)/gm)].map((m) => m[1]!);
}

describe('the settings tables and the places they show', () => {
  it.each(docsTables.TARGETS.map((t) => [path.relative(ROOT, t.file), t] as const))('%s shows exactly the generated tables', async (_name, target) => {
    const text = await fs.readFile(target.file, 'utf8');
    // On failure: node scripts/docs-tables.cjs rewrites the pages' tables.
    expect(text).toBe(target.withTables(text, config));
  });

  it.each([
    ['train', ['train', '--help'], ['jobs', 'submit', 'train', '--help']],
    ['sample', ['sample', '--help'], ['jobs', 'submit', 'sample', '--help']],
    ['eval', undefined, ['jobs', 'submit', 'eval', '--help']],
  ] as const)('%s: the local command and "ddpm jobs submit" take the table’s flags, no others, each documented once', async (name, local, submit) => {
    const table = TABLES[name];
    const all = Object.values(table).map((s) => s.flag);
    const localOnly = Object.values(table).filter((s) => s.scope !== 'job').map((s) => s.flag);
    const submitted = documentedFlags((await cli(...submit)).stdout);
    expect(submitted.filter((f) => !['api', 'wait', 'idempotency-key'].includes(f))).toEqual(all);
    if (local) {
      const own = ['out', 'resume', 'checkpoint', 'pretrained', 'scale', 'batch'];
      // A local flag named as a job-only setting stands for it locally (ddpm sample --pretrained): listed before the table's.
      const mirrored = own.filter((f) => all.includes(f) && !localOnly.includes(f));
      expect(documentedFlags((await cli(...local)).stdout).filter((f) => !own.includes(f) || all.includes(f))).toEqual([...mirrored, ...localOnly]);
    }
  });

  it('a flag refused by the CLI names the flag; the same value in a request names the field', async () => {
    const bad = await cli('train', '--dataset', 'fashion-mnist', '--preset', 'micro32', '--steps', '5', '--batch', '5000', '--out', '/tmp/never');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--batch must be an integer in [1, 4096], got 5000');
    expect(() => config.resolveTrainJob({ dataset: 'fashion-mnist', preset: 'micro32', steps: 5, batchSize: 5000 })).toThrow('batchSize must be an integer in [1, 4096], got 5000');
  });
});

describe('the served OpenAPI document', () => {
  let stack: Stack;
  let served: Record<string, unknown> & { components: { schemas: Record<string, { properties: Record<string, Record<string, unknown>>; required?: string[] }> } };
  beforeAll(async () => {
    stack = await startStack({ workers: 0 });
    const address = await stack.app.listen({ port: 0, host: '127.0.0.1' });
    served = (await (await fetch(`${address}/docs/json`)).json()) as typeof served;
  });
  afterAll(async () => {
    await stack.close();
  });

  it('validates with @apidevtools/swagger-parser: OpenAPI 3.1, zero errors', async () => {
    expect(served['openapi']).toBe('3.1.0');
    await expect(SwaggerParser.validate(JSON.parse(JSON.stringify(served)))).resolves.toBeDefined();
  });

  it('holds schemas valid in OpenAPI 3.1’s dialect, JSON Schema 2020-12 (which swagger-parser does not check inside schemas)', () => {
    const ajv = new Ajv2020({ strict: true, validateFormats: false });
    const schemas: [string, unknown][] = Object.entries(served.components.schemas);
    const walk = (node: unknown, at: string): void => {
      if (typeof node !== 'object' || node === null) return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'schema') schemas.push([`${at}/schema`, value]);
        else walk(value, `${at}/${key}`);
      }
    };
    walk(served['paths'], '#/paths');
    expect(schemas.length).toBeGreaterThan(40);
    for (const [at, schema] of schemas) {
      const valid = ajv.validateSchema(schema as object);
      expect([at, valid ? 'valid' : ajv.errorsText()]).toEqual([at, 'valid']);
    }
    // The check has teeth: a bound of the wrong type is caught.
    const broken = JSON.parse(JSON.stringify(served.components.schemas['TrainRequest'])) as { properties: Record<string, Record<string, unknown>> };
    broken.properties['steps']!['minimum'] = 'one';
    expect(ajv.validateSchema(broken)).toBe(false);
  });

  it('documents every route with its responses and error bodies', () => {
    const paths = served['paths'] as Record<string, Record<string, { responses: Record<string, unknown>; summary?: string }>>;
    const routes = stack.app.printRoutes({ commonPrefix: false });
    for (const route of ['/jobs/train', '/jobs/sample', '/jobs/eval', '/jobs', '/jobs/{id}', '/jobs/{id}/cancel', '/jobs/{id}/checkpoints', '/jobs/{id}/logs', '/samples/{file}', '/healthz', '/readyz', '/metrics']) {
      expect([route, paths[route] !== undefined]).toEqual([route, true]);
      for (const [method, operation] of Object.entries(paths[route]!)) {
        expect([route, method, typeof operation.summary]).toEqual([route, method, 'string']);
        expect(Object.keys(operation.responses).length).toBeGreaterThan(0);
      }
    }
    expect(routes).toMatch(/jobs/);
    expect(Object.keys(paths['/jobs/train']!['post']!.responses).sort()).toEqual(['200', '202', '400', '401', '409', '413', '415', '500']);
  });

  it.each([
    ['TrainRequest', 'train'],
    ['SampleRequest', 'sample'],
    ['EvalRequest', 'eval'],
  ] as const)('%s is the %s table: every field, its bounds, required exactly when the table says so', (schema, name) => {
    const table = TABLES[name];
    const body = served.components.schemas[schema]!;
    expect(Object.keys(body.properties).sort()).toEqual(Object.keys(table).sort());
    for (const [field, setting] of Object.entries(table)) {
      for (const bound of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'minLength', 'maxLength', 'pattern'] as const) {
        expect([field, bound, body.properties[field]![bound]]).toEqual([field, bound, (setting.schema as Record<string, unknown>)[bound]]);
      }
      if (setting.presence === 'default') expect([field, body.properties[field]!['default']]).toEqual([field, setting.default]);
    }
    expect([...(body.required ?? [])].sort()).toEqual(Object.entries(table).filter(([, s]) => s.presence === 'required').map(([f]) => f).sort());
  });

  it('is the committed apps/api/openapi.json, and the CLI client types are generated from it', async () => {
    // On failure: npx tsc -b apps/api && node scripts/api-contract.cjs
    expect(apiContract.documentText(served)).toBe(await fs.readFile(apiContract.DOCUMENT, 'utf8'));
    const file = path.join(os.tmpdir(), `ddpm-openapi-${process.pid}.json`);
    await fs.writeFile(file, JSON.stringify(served));
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'scripts', 'api-contract.cjs'), 'types', file], { maxBuffer: 16 * 1024 * 1024 });
      expect(stdout).toBe(await fs.readFile(apiContract.TYPES, 'utf8'));
    } finally {
      await fs.rm(file, { force: true });
    }
  }, 60_000);
});

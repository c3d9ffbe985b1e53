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
import * as config from '@ddpm/settings';
import { runCli } from '@ddpm/cli';

import { type Stack, ROOT, startStack } from './service-support';

const docsTables = require(path.join(ROOT, 'scripts', 'docs-tables.cjs')) as {
  TARGETS: { file: string; withTables: (text: string, c: unknown) => string }[];
  routesOf: (document: unknown) => { route: string; summary: string }[];
};
const apiContract = require(path.join(ROOT, 'scripts', 'api-contract.cjs')) as {
  DOCUMENT: string;
  TYPES: string;
  documentText: (d: unknown) => string;
};

const TABLES = {
  train: config.TRAIN_SETTINGS,
  sample: config.SAMPLE_JOB_SETTINGS,
  eval: config.EVAL_JOB_SETTINGS,
} as const;

async function cli(...argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { status, stdout, stderr };
}

/**
 * `METHOD /path` of every route in fastify's printed route tree (each line a path segment under its
 * parent's, indented four characters a level, with its methods in brackets).
 */
function servedRoutes(tree: string): string[] {
  const parents: string[] = [];
  const routes: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:[│ ] {3})*)[├└]── (\S+) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    const route = (parents[depth - 1] ?? '') + m[2]!;
    parents[depth] = route;
    parents.length = depth + 1;
    for (const method of m[3]!.split(', ')) routes.push(`${method} ${route}`);
  }
  return routes;
}

/** The flags a usage text documents, in order. */
function documentedFlags(usage: string): string[] {
  return [...usage.matchAll(/^\s+(?:-\w, )?--(?:\[no-\])?([a-z0-9-]+)/gm)].map((m) => m[1]!);
}

describe('the settings tables and the places they show', () => {
  it.each(docsTables.TARGETS.map((t) => [path.relative(ROOT, t.file), t] as const))(
    '%s shows exactly the generated tables',
    async (_name, target) => {
      const text = await fs.readFile(target.file, 'utf8');
      // On failure: node scripts/docs-tables.cjs rewrites the pages' tables.
      expect(text).toBe(target.withTables(text, config));
    },
  );

  it.each([
    ['train', ['train', '--help'], ['jobs', 'submit', 'train', '--help']],
    ['sample', ['sample', '--help'], ['jobs', 'submit', 'sample', '--help']],
    ['eval', undefined, ['jobs', 'submit', 'eval', '--help']],
  ] as const)(
    '%s: the local command and "ddpm jobs submit" take the table’s flags, no others, each documented once',
    async (name, local, submit) => {
      const table = TABLES[name];
      const all = Object.values(table).map((s) => s.flag);
      const localOnly = Object.values(table)
        .filter((s) => s.scope !== 'job')
        .map((s) => s.flag);
      const submitted = documentedFlags((await cli(...submit)).stdout);
      expect(submitted.filter((f) => !['api', 'wait', 'idempotency-key'].includes(f))).toEqual(all);
      if (local) {
        const own = ['out', 'resume', 'checkpoint', 'pretrained', 'scale', 'batch'];
        // A local flag named as a job-only setting stands for it locally (ddpm sample --pretrained): listed before the table's.
        const mirrored = own.filter((f) => all.includes(f) && !localOnly.includes(f));
        expect(
          documentedFlags((await cli(...local)).stdout).filter((f) => !own.includes(f) || all.includes(f)),
        ).toEqual([...mirrored, ...localOnly]);
      }
    },
  );

  it('a flag refused by the CLI names the flag; the same value in a request names the field', async () => {
    const bad = await cli(
      'train',
      '--dataset',
      'fashion-mnist',
      '--preset',
      'micro32',
      '--steps',
      '5',
      '--batch',
      '5000',
      '--out',
      '/tmp/never',
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--batch must be an integer in [1, 4096], got 5000');
    expect(() =>
      config.resolveTrainJob({ dataset: 'fashion-mnist', preset: 'micro32', steps: 5, batchSize: 5000 }),
    ).toThrow('batchSize must be an integer in [1, 4096], got 5000');
  });
});

describe('the served OpenAPI document', () => {
  let stack: Stack;
  let served: Record<string, unknown> & {
    components: {
      schemas: Record<string, { properties: Record<string, Record<string, unknown>>; required?: string[] }>;
    };
  };
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
    const broken = JSON.parse(JSON.stringify(served.components.schemas['TrainRequest'])) as {
      properties: Record<string, Record<string, unknown>>;
    };
    broken.properties['steps']!['minimum'] = 'one';
    expect(ajv.validateSchema(broken)).toBe(false);
  });

  it('documents every route with its responses and error bodies', () => {
    const paths = served['paths'] as Record<
      string,
      Record<string, { responses: Record<string, unknown>; summary?: string }>
    >;
    const routes = stack.app.printRoutes({ commonPrefix: false });
    for (const route of [
      '/jobs/train',
      '/jobs/sample',
      '/jobs/eval',
      '/jobs',
      '/jobs/{id}',
      '/jobs/{id}/cancel',
      '/jobs/{id}/checkpoints',
      '/jobs/{id}/loss',
      '/jobs/{id}/grids',
      '/jobs/{id}/logs',
      '/samples/{file}',
      '/healthz',
      '/readyz',
      '/metrics',
    ]) {
      expect([route, paths[route] !== undefined]).toEqual([route, true]);
      for (const [method, operation] of Object.entries(paths[route]!)) {
        expect([route, method, typeof operation.summary]).toEqual([route, method, 'string']);
        expect(Object.keys(operation.responses).length).toBeGreaterThan(0);
      }
    }
    expect(routes).toMatch(/jobs/);
    expect(Object.keys(paths['/jobs/train']!['post']!.responses).sort()).toEqual([
      '200',
      '202',
      '400',
      '401',
      '403',
      '409',
      '413',
      '415',
      '500',
      '503',
    ]);
  });

  it('is what the API serves, route for route, and the README’s route table says what its summaries say', async () => {
    const listed = docsTables.routesOf(served);
    // Every documented operation is served (fastify's own route table)...
    for (const { route } of listed) {
      const [method, url] = route.split(' ') as [string, string];
      expect([route, stack.app.hasRoute({ method: method, url })]).toEqual([route, true]);
    }
    // ...and every served route is documented, but Swagger UI's own, the web console's pages and
    // assets (console.test.ts), and the HEAD twins of GETs.
    expect(
      servedRoutes(stack.app.printRoutes({ commonPrefix: false }))
        .filter((r) => !r.startsWith('HEAD ') && !/^GET \/(docs(\/|$)|ui(\/|$)|$)/.test(r))
        .sort(),
    ).toEqual(listed.map((r) => r.route).sort());
    // The README's table holds exactly these rows (node scripts/docs-tables.cjs writes it).
    const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('<!-- routes -->'), readme.indexOf('<!-- /routes -->'));
    expect(table.split('\n').filter((line) => line.startsWith('| `'))).toEqual(
      listed.map((r) => `| \`${r.route}\` | ${r.summary} |`),
    );
    // No summary promises what is not so: eval jobs run (they once said they would "once evaluation lands").
    for (const { route, summary } of listed)
      expect([route, summary]).not.toEqual([route, expect.stringMatching(/once .* lands|not yet|TODO/i)]);
  });

  it.each([
    ['TrainRequest', 'train'],
    ['SampleRequest', 'sample'],
    ['EvalRequest', 'eval'],
  ] as const)(
    '%s is the %s table: every field, its bounds, required exactly when the table says so',
    (schema, name) => {
      const table = TABLES[name];
      const body = served.components.schemas[schema]!;
      expect(Object.keys(body.properties).sort()).toEqual(Object.keys(table).sort());
      for (const [field, setting] of Object.entries(table)) {
        for (const bound of [
          'minimum',
          'maximum',
          'exclusiveMinimum',
          'exclusiveMaximum',
          'minLength',
          'maxLength',
          'pattern',
        ] as const) {
          expect([field, bound, body.properties[field]![bound]]).toEqual([
            field,
            bound,
            (setting.schema as Record<string, unknown>)[bound],
          ]);
        }
        if (setting.presence === 'default')
          expect([field, body.properties[field]!['default']]).toEqual([field, setting.default]);
      }
      expect([...(body.required ?? [])].sort()).toEqual(
        Object.entries(table)
          .filter(([, s]) => s.presence === 'required')
          .map(([f]) => f)
          .sort(),
      );
    },
  );

  it('is the committed apps/api/openapi.json, and the CLI client types are generated from it', async () => {
    // On failure: npx tsc -b apps/api && node scripts/api-contract.cjs
    expect(apiContract.documentText(served)).toBe(await fs.readFile(apiContract.DOCUMENT, 'utf8'));
    const file = path.join(os.tmpdir(), `ddpm-openapi-${process.pid}.json`);
    await fs.writeFile(file, JSON.stringify(served));
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [path.join(ROOT, 'scripts', 'api-contract.cjs'), 'types', file],
        { maxBuffer: 16 * 1024 * 1024 },
      );
      expect(stdout).toBe(await fs.readFile(apiContract.TYPES, 'utf8'));
    } finally {
      await fs.rm(file, { force: true });
    }
  }, 60_000);
});

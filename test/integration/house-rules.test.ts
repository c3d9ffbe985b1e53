/**
 * The rules of the house (docs/architecture.md), read from the code itself: every workspace's
 * package.json and the imports of its source files. Packages never import apps or tools, and apps
 * never import tools; no package
 * reaches into another one's `src/` or `dist/` by path; the workspaces' dependencies and imports
 * form no circle; no file imports another package's `/internal`, and no test reaches into another
 * workspace by path; every `@ddpm/*` import is declared in the importer's package.json; the API
 * depends on no tensor package (that it loads none at run time is api-process.test.ts); and every
 * Redis key (control plane, data plane) and top-level store key is built in its plane's module.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

interface Workspace {
  readonly name: string;
  readonly dir: string;
  readonly kind: 'package' | 'app' | 'tool';
  readonly deps: ReadonlySet<string>;
  /** Its devDependencies: enough for a type-only import (`import type`), which leaves nothing at run time. */
  readonly devDeps: ReadonlySet<string>;
  /** Every module each non-test source file imports. */
  readonly imports: ReadonlyMap<string, readonly string[]>;
  /** The modules each non-test source file imports with `import type` only. */
  readonly typeImports: ReadonlyMap<string, ReadonlySet<string>>;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const file = path.join(dir, entry);
    if (statSync(file).isDirectory()) {
      if (entry !== 'node_modules' && entry !== 'dist' && entry !== 'e2e') out.push(...sourceFiles(file));
    } else if (/\.tsx?$/.test(entry) && !/\.test\.tsx?$|test-support\.ts$|\.d\.ts$/.test(entry)) out.push(file);
  }
  return out;
}

const TYPE_IMPORT = /(?:^|\n)\s*import\s+type\s[^'";]*?from\s+['"]([^'"]+)['"]/g;
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]\s*\)|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function workspaces(): Workspace[] {
  const out: Workspace[] = [];
  for (const kind of ['package', 'app', 'tool'] as const) {
    const group = path.join(ROOT, `${kind}s`);
    for (const name of readdirSync(group)) {
      const dir = path.join(group, name);
      let pkg: {
        name: string;
        dependencies?: Record<string, string>;
        peerDependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      try {
        pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
      } catch {
        continue;
      }
      const imports = new Map<string, string[]>();
      const typeImports = new Map<string, Set<string>>();
      for (const file of sourceFiles(path.join(dir, 'src'))) {
        const text = readFileSync(file, 'utf8');
        const specs = [...text.matchAll(IMPORT)].map((m) => (m[1] ?? m[2] ?? m[3])!);
        imports.set(path.relative(ROOT, file), specs);
        const typeOnly = new Set([...text.matchAll(TYPE_IMPORT)].map((m) => m[1]!));
        // Type-only when every import of the module is `import type`.
        const count = (s: string): number => specs.filter((a) => a === s).length;
        const countType = (s: string): number => [...text.matchAll(TYPE_IMPORT)].filter((m) => m[1] === s).length;
        typeImports.set(path.relative(ROOT, file), new Set([...typeOnly].filter((s) => count(s) === countType(s))));
      }
      out.push({
        name: pkg.name,
        dir,
        kind,
        deps: new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]),
        devDeps: new Set(Object.keys(pkg.devDependencies ?? {})),
        imports,
        typeImports,
      });
    }
  }
  return out;
}

const all = workspaces();
const byName = new Map(all.map((w) => [w.name, w]));
/** `@ddpm/storage/layout` → `@ddpm/storage`. */
const packageOf = (specifier: string): string => specifier.split('/').slice(0, 2).join('/');

it('reads every workspace and its sources', () => {
  expect(all.filter((w) => w.kind === 'package').length).toBeGreaterThanOrEqual(10);
  expect(all.filter((w) => w.kind === 'app').length).toBeGreaterThanOrEqual(3);
  expect(all.filter((w) => w.kind === 'tool').map((w) => w.name)).toContain('@ddpm/lab');
  expect(byName.get('@ddpm/api')!.imports.size).toBeGreaterThan(5);
});

it('packages never import apps or tools, and apps never import tools', () => {
  const above = (kind: Workspace['kind']): Set<string> =>
    new Set(all.filter((w) => (kind === 'package' ? w.kind !== 'package' : w.kind === 'tool')).map((w) => w.name));
  const found = all
    .filter((w) => w.kind !== 'tool')
    .flatMap((w) =>
      [...w.imports].flatMap(([file, specs]) =>
        specs
          .filter(
            (s) =>
              above(w.kind).has(packageOf(s)) ||
              (w.kind === 'package' && /(^|\/)apps\//.test(s)) ||
              /(^|\/)tools\//.test(s),
          )
          .map((s) => `${file} → ${s}`),
      ),
    );
  expect(found).toEqual([]);
  // The CLI runs the lab's commands where the lab is installed, by a name computed at run time.
  expect(byName.get('@ddpm/cli')?.deps.has('@ddpm/lab')).toBe(false);
});

it("no workspace reaches into another one's files by path", () => {
  const found = all.flatMap((w) =>
    [...w.imports].flatMap(([file, specs]) =>
      specs
        .filter((s) => s.startsWith('.'))
        .filter((s) => {
          const target = path.resolve(ROOT, path.dirname(file), s);
          return !target.startsWith(w.dir + path.sep);
        })
        .map((s) => `${file} → ${s}`),
    ),
  );
  expect(found).toEqual([]);
});

/** Every TypeScript file of the repository, tests included, with the modules it imports. */
function everyImport(): [string, string[]][] {
  const out: [string, string[]][] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir)) {
      const file = path.join(dir, entry);
      if (statSync(file).isDirectory()) {
        if (!['node_modules', 'dist', '.git'].includes(entry)) walk(file);
      } else if (/\.tsx?$/.test(entry) && !entry.endsWith('.d.ts')) {
        out.push([
          path.relative(ROOT, file),
          [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => (m[1] ?? m[2] ?? m[3])!),
        ]);
      }
    }
  };
  for (const top of ['packages', 'apps', 'test', 'scripts']) walk(path.join(ROOT, top));
  return out;
}

it("no file, test or not, imports another package's /internal", () => {
  const owner = (file: string): string | undefined =>
    all.find((w) => (path.join(ROOT, file) + path.sep).startsWith(w.dir + path.sep))?.name;
  const files = everyImport();
  expect(files.length).toBeGreaterThan(200);
  const found = files.flatMap(([file, specs]) =>
    specs
      .filter((s) => /^@ddpm\/[^/]+\/internal(\/|$)/.test(s) && packageOf(s) !== owner(file))
      .map((s) => `${file} → ${s}`),
  );
  expect(found).toEqual([]);
});

it("no test reaches into a workspace's files by path (shared test helpers are in test/support)", () => {
  const owner = (file: string): string | undefined =>
    all.find((w) => (path.join(ROOT, file) + path.sep).startsWith(w.dir + path.sep))?.dir;
  const found = everyImport().flatMap(([file, specs]) =>
    specs
      .filter((s) => s.startsWith('.'))
      .filter((s) => {
        const target = path.resolve(ROOT, path.dirname(file), s);
        const into = all.find((w) => (target + path.sep).startsWith(w.dir + path.sep))?.dir;
        return into !== undefined && into !== owner(file);
      })
      .map((s) => `${file} → ${s}`),
  );
  expect(found).toEqual([]);
});

it('declares every workspace it imports in its package.json (a type-only import in devDependencies)', () => {
  const found = all.flatMap((w) =>
    [...w.imports].flatMap(([file, specs]) =>
      specs
        .filter((s) => s.startsWith('@ddpm/'))
        .filter((s) => packageOf(s) !== w.name && !w.deps.has(packageOf(s)))
        .filter((s) => !(w.typeImports.get(file)?.has(s) === true && w.devDeps.has(packageOf(s))))
        .map((s) => `${file} → ${s} (not in ${w.name}'s dependencies)`),
    ),
  );
  expect(found).toEqual([]);
});

it('has no circle among the workspaces, by dependencies or by imports', () => {
  const edges = new Map<string, Set<string>>();
  for (const w of all) {
    const to = new Set([...w.deps].filter((d) => byName.has(d)));
    for (const specs of w.imports.values())
      for (const s of specs) if (byName.has(packageOf(s)) && packageOf(s) !== w.name) to.add(packageOf(s));
    edges.set(w.name, to);
  }
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'open') {
      circles.push([...trail.slice(trail.indexOf(name)), name].join(' → '));
      return;
    }
    state.set(name, 'open');
    for (const next of edges.get(name) ?? []) visit(next, [...trail, name]);
    state.set(name, 'done');
  };
  for (const w of all) visit(w.name, []);
  expect(circles).toEqual([]);
});

/** Runtime dependencies only: a peer dependency is the app's to supply (infra/docker/assemble.cjs). */
function runtimeDeps(name: string): string[] {
  const workspace = byName.get(name);
  const file = workspace
    ? path.join(workspace.dir, 'package.json')
    : path.join(ROOT, 'node_modules', ...name.split('/'), 'package.json');
  return Object.keys(JSON.parse(readFileSync(file, 'utf8')).dependencies ?? {});
}

/** Every package `name` brings in at run time, by its and its dependencies' package.json. */
function closure(name: string): Set<string> {
  const seen = new Set<string>();
  const todo = runtimeDeps(name);
  for (let next = todo.pop(); next !== undefined; next = todo.pop()) {
    if (seen.has(next)) continue;
    seen.add(next);
    todo.push(...runtimeDeps(next));
  }
  return seen;
}

it('the API depends on no tensor package, directly or through another package', () => {
  const TENSOR = ['@ddpm/engine', '@ddpm/unet', '@ddpm/diffusion', '@ddpm/kernels', '@ddpm/eval'];
  const tensor = (d: string): boolean => TENSOR.includes(d) || d.startsWith('@tensorflow/');
  const api = byName.get('@ddpm/api')!;
  expect([...api.deps].filter((d) => tensor(d) || d === 'sharp')).toEqual([]);
  const imported = [...api.imports.values()].flat().map(packageOf);
  expect(imported.filter((d) => tensor(d) || d === 'sharp')).toEqual([]);
  const reached = closure('@ddpm/api');
  expect(reached.has('@ddpm/settings') && reached.has('@ddpm/unet-config') && reached.has('fastify')).toBe(true);
  expect([...reached].filter(tensor)).toEqual([]);
  // The check can fail: the worker reaches TensorFlow.js the same way.
  expect([...closure('@ddpm/worker')].filter(tensor)).toContain('@tensorflow/tfjs-core');
});

it('builds every Redis key (control and data planes) and every top-level store key in its one module', () => {
  const HOMES = new Set([
    'packages/service/src/control-keys.ts',
    'packages/allreduce/src/data-keys.ts',
    'packages/storage/src/layout.ts',
  ]);
  // A template that puts a key part after the deployment's prefix, a generation's namespace or
  // another key, or a literal top-level store prefix.
  const KEY =
    /\$\{[\w.]*(prefix|PREFIX|ns|namespace|Namespace|key|Key)\}:[\w$]|['"`](runs|samples|evals|extractors|reference-stats|datasets)\/[$'"`\w]/;
  const found = all.flatMap((w) =>
    [...w.imports.keys()]
      .filter((file) => !HOMES.has(file))
      .flatMap((file) =>
        readFileSync(path.join(ROOT, file), 'utf8')
          .split('\n')
          .map((line, i) => [line, i + 1] as const)
          .filter(([line]) => !/^\s*(\*|\/\/|\/\*)/.test(line) && KEY.test(line))
          .map(([line, n]) => `${file}:${n}: ${line.trim()}`),
      ),
  );
  expect(found).toEqual([]);
});

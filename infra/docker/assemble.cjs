#!/usr/bin/env node
/*
 * Assembles one app of the monorepo into a folder that runs on its own (the final image's /app):
 * the root package.json, the app and every workspace package it reaches (package.json, dist/
 * and the data its manifest's "files" lists), and exactly the installed packages it reaches in node_modules, laid out where Node's
 * resolution finds them. Run after `npm ci --omit=dev` and `tsc -b` in the build stage:
 *
 *   node infra/docker/assemble.cjs apps/api /out [--omit NAME]...
 *
 * What is reached: `dependencies`, `optionalDependencies` that are installed, and
 * `peerDependencies`, followed through node_modules as Node resolves them. A workspace package's
 * peer dependencies are the app's to supply (`@tensorflow/tfjs-core` for the tensor packages):
 * they are followed only when the app itself depends on them, so the API, which loads no tensor
 * code, ships none. `--omit NAME` leaves out an optional package (and what only it reaches), e.g.
 * the native TensorFlow bindings a given image does not use.
 *
 * `npm ci --workspace` cannot do this: it installs every workspace's production dependencies.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

function usage(message) {
  process.stderr.write(
    `assemble: ${message}\nusage: node infra/docker/assemble.cjs APP_DIR OUT_DIR [--omit NAME]...\n`,
  );
  process.exit(2);
}

const args = process.argv.slice(2);
const omit = new Set();
const positional = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--omit') {
    if (args[i + 1] === undefined) usage('--omit needs a package name');
    omit.add(args[++i]);
  } else positional.push(args[i]);
}
if (positional.length !== 2) usage('expected APP_DIR and OUT_DIR');

const root = process.cwd();
const appDir = path.resolve(positional[0]);
const outDir = path.resolve(positional[1]);
if (!fs.existsSync(path.join(root, 'package-lock.json')))
  usage(`run it from the repository root (no package-lock.json in ${root})`);
if (!fs.existsSync(path.join(appDir, 'package.json'))) usage(`${positional[0]} has no package.json`);
if (!fs.existsSync(path.join(root, 'node_modules'))) usage('node_modules is missing: run npm ci --omit=dev first');

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const isWorkspace = (dir) => !path.relative(root, dir).split(path.sep).includes('node_modules');

/** Node's lookup of `name` from a package folder: node_modules of it and of each folder above. */
function resolvePackage(name, fromDir) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === path.dirname(dir)) return undefined;
  }
}

const appManifest = readJson(path.join(appDir, 'package.json'));
const appDeps = new Set([
  ...Object.keys(appManifest.dependencies ?? {}),
  ...Object.keys(appManifest.optionalDependencies ?? {}),
]);

/** Package folders reached (as found, not realpath'd: workspace links stay links in node_modules). */
const reached = new Map(); // real path -> { found: path as resolved, workspace: boolean }
const missing = [];
function visit(dir) {
  const real = fs.realpathSync(dir);
  if (reached.has(real)) return;
  const workspace = isWorkspace(real);
  reached.set(real, { found: dir, workspace });
  const manifest = readJson(path.join(real, 'package.json'));
  const required = Object.keys(manifest.dependencies ?? {});
  const optional = Object.keys(manifest.optionalDependencies ?? {});
  const peers = Object.keys(manifest.peerDependencies ?? {}).filter(
    (name) => !workspace || real === appDir || appDeps.has(name),
  );
  const peerOptional = new Set(
    Object.entries(manifest.peerDependenciesMeta ?? {})
      .filter(([, meta]) => meta.optional)
      .map(([name]) => name),
  );
  for (const name of [...required, ...optional, ...peers]) {
    if (omit.has(name)) continue;
    // Resolve from where the package really lives (a workspace's own node_modules, then the root's).
    const found = resolvePackage(name, real) ?? (workspace ? resolvePackage(name, root) : undefined);
    if (found === undefined) {
      if (required.includes(name) && !optional.includes(name)) missing.push(`${manifest.name} needs ${name}`);
      else if (peers.includes(name) && !peerOptional.has(name) && !optional.includes(name))
        missing.push(`${manifest.name} needs its peer ${name}`);
      continue;
    }
    visit(found);
  }
}
visit(appDir);
if (missing.length > 0) {
  process.stderr.write(`assemble: not installed (npm ci --omit=dev first?):\n  ${missing.join('\n  ')}\n`);
  process.exit(1);
}

fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });
const copy = (from, to, filter) => fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true, filter });
copy(path.join(root, 'package.json'), path.join(outDir, 'package.json'));

let packages = 0;
const workspaces = [];
for (const [real, { workspace }] of reached) {
  const rel = path.relative(root, real);
  if (workspace) {
    // Workspace packages: their manifest and build output (no sources, tests or tsconfig).
    workspaces.push(rel);
    fs.mkdirSync(path.join(outDir, rel), { recursive: true });
    copy(path.join(real, 'package.json'), path.join(outDir, rel, 'package.json'));
    const dist = path.join(real, 'dist');
    if (!fs.existsSync(dist)) usage(`${rel} has no dist/: run tsc -b first`);
    copy(
      dist,
      path.join(outDir, rel, 'dist'),
      (src) => !/\.(test|spec)\.(js|d\.ts)(\.map)?$/.test(src) && !src.endsWith('.tsbuildinfo'),
    );
    // Data a package ships beside its code (its manifest's "files", e.g. @ddpm/pretrained's models/).
    for (const entry of readJson(path.join(real, 'package.json')).files ?? []) {
      if (entry === 'dist') continue;
      if (!fs.existsSync(path.join(real, entry)))
        usage(`${rel}/package.json lists ${entry} in "files", which does not exist`);
      copy(path.join(real, entry), path.join(outDir, rel, entry));
    }
  } else {
    // An installed package, without its own nested node_modules (those reached are copied in turn).
    copy(
      real,
      path.join(outDir, rel),
      (src) => src === real || !path.relative(real, src).split(path.sep).includes('node_modules'),
    );
    packages++;
  }
}
// The workspace links npm made (node_modules/@ddpm/x -> ../../packages/x), for the reached ones.
for (const [, { found, workspace }] of reached) {
  if (!workspace) continue;
  const rel = path.relative(root, found);
  if (!rel.split(path.sep).includes('node_modules')) continue;
  fs.mkdirSync(path.dirname(path.join(outDir, rel)), { recursive: true });
  fs.symlinkSync(fs.readlinkSync(found), path.join(outDir, rel));
}
process.stdout.write(
  `assembled ${path.relative(root, appDir)}: ${workspaces.length} workspace packages (${workspaces.sort().join(', ')}), ${packages} installed packages -> ${outDir}\n`,
);

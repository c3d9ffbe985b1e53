#!/usr/bin/env node
/**
 * The generated tables of the docs, written from the one table in @ddpm/settings (built first:
 * `npx tsc -b packages/settings`): the job-settings tables of docs/settings.md (between the
 * `<!-- settings:NAME -->` markers) and the budget rows of docs/configuration.md (between the
 * `<!-- limits -->` markers), and the README's table of HTTP routes (between `<!-- routes -->`
 * markers) from the committed OpenAPI document's paths and summaries (apps/api/openapi.json, which
 * a test keeps identical to what the API serves). `node scripts/docs-tables.cjs` rewrites them; a
 * test fails when a page and the tables differ.
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** @ddpm/settings as built (the test passes the source instead). */
const builtConfig = () => require(path.join(ROOT, 'packages', 'settings', 'dist', 'index.js'));
const builtService = () => require(path.join(ROOT, 'packages', 'service', 'dist', 'index.js'));

/** `text` with the part between `begin` and `end` replaced by `body` (the markers kept). */
function between(text, file, begin, end, body) {
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${file} lacks the markers ${begin} … ${end}`);
  return `${text.slice(0, from + begin.length)}\n${body}${text.slice(to)}`;
}

/** docs/settings.md with each job type's settings table regenerated. */
function withSettingsTables(text, config = builtConfig()) {
  const tables = { train: config.TRAIN_SETTINGS, sample: config.SAMPLE_JOB_SETTINGS, eval: config.EVAL_JOB_SETTINGS };
  let out = text;
  for (const [name, table] of Object.entries(tables)) {
    out = between(
      out,
      'docs/settings.md',
      `<!-- settings:${name} -->`,
      `<!-- /settings:${name} -->`,
      config.settingsMarkdown(table),
    );
  }
  return out;
}

/** docs/configuration.md with the server's budgets (the rows of the table the markers hold) regenerated. */
function withLimitsTable(text, _config, service = builtService()) {
  const rows = Object.values(service.LIMIT_VARIABLES).map((v) => `| \`${v.env}\` | ${v.default} | ${v.help} |\n`);
  return between(
    text,
    'docs/configuration.md',
    '<!-- limits -->',
    '<!-- /limits -->',
    `| variable | default | bound |\n| --- | --- | --- |\n${rows.join('')}`,
  );
}

const OPENAPI = path.join(ROOT, 'apps', 'api', 'openapi.json');

/** Every operation of an OpenAPI document, in its order: `METHOD /path/:param` and its summary. */
function routesOf(document) {
  const routes = [];
  for (const [route, operations] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      routes.push({
        route: `${method.toUpperCase()} ${route.replace(/\{(\w+)\}/g, ':$1')}`,
        summary: operation.summary,
      });
    }
  }
  return routes;
}

/** README.md with its table of HTTP routes regenerated from the OpenAPI document. */
function withRoutesTable(text, _config, document = JSON.parse(fs.readFileSync(OPENAPI, 'utf8'))) {
  const rows = routesOf(document).map((r) => `| \`${r.route}\` | ${r.summary.replace(/\|/g, '\\|')} |\n`);
  return between(
    text,
    'README.md',
    '<!-- routes -->',
    '<!-- /routes -->',
    `| route | what |\n| --- | --- |\n${rows.join('')}`,
  );
}

/** Every page with generated tables, and how to regenerate it. */
const TARGETS = [
  { file: path.join(ROOT, 'docs', 'settings.md'), withTables: withSettingsTables },
  { file: path.join(ROOT, 'docs', 'configuration.md'), withTables: withLimitsTable },
  { file: path.join(ROOT, 'README.md'), withTables: withRoutesTable },
];

module.exports = { TARGETS, routesOf, withSettingsTables, withLimitsTable, withRoutesTable };

if (require.main === module) {
  const config = builtConfig();
  for (const { file, withTables } of TARGETS) {
    fs.writeFileSync(file, withTables(fs.readFileSync(file, 'utf8'), config));
    process.stdout.write(`${path.relative(ROOT, file)}: tables regenerated\n`);
  }
}

#!/usr/bin/env node
/**
 * The generated tables of the docs, written from the one table in @ddpm/config (built first:
 * `npx tsc -b packages/config`): the job-settings tables of docs/settings.md (between the
 * `<!-- settings:NAME -->` markers) and the budget rows of docs/configuration.md (between the
 * `<!-- limits -->` markers). `node scripts/docs-tables.cjs` rewrites them; a test fails when a
 * page and the tables differ.
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** @ddpm/config as built (the test passes the source instead). */
const builtConfig = () => require(path.join(ROOT, 'packages', 'config', 'dist', 'index.js'));

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
    out = between(out, 'docs/settings.md', `<!-- settings:${name} -->`, `<!-- /settings:${name} -->`, config.settingsMarkdown(table));
  }
  return out;
}

/** docs/configuration.md with the server's budgets (the rows of the table the markers hold) regenerated. */
function withLimitsTable(text, config = builtConfig()) {
  const rows = Object.values(config.LIMIT_VARIABLES).map((v) => `| \`${v.env}\` | ${v.default} | ${v.help} |\n`);
  return between(text, 'docs/configuration.md', '<!-- limits -->', '<!-- /limits -->', `| variable | default | bound |\n| --- | --- | --- |\n${rows.join('')}`);
}

/** Every page with generated tables, and how to regenerate it. */
const TARGETS = [
  { file: path.join(ROOT, 'docs', 'settings.md'), withTables: withSettingsTables },
  { file: path.join(ROOT, 'docs', 'configuration.md'), withTables: withLimitsTable },
];

module.exports = { TARGETS, withSettingsTables, withLimitsTable };

if (require.main === module) {
  const config = builtConfig();
  for (const { file, withTables } of TARGETS) {
    fs.writeFileSync(file, withTables(fs.readFileSync(file, 'utf8'), config));
    process.stdout.write(`${path.relative(ROOT, file)}: tables regenerated\n`);
  }
}

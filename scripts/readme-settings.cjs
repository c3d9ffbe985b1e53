#!/usr/bin/env node
/**
 * The README's job-settings tables, generated from the one table in @ddpm/config (built first:
 * `npx tsc -b packages/config`). `node scripts/readme-settings.cjs` rewrites the sections between
 * the `<!-- settings:NAME -->` markers; a test fails when the README and the tables differ.
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const README = path.join(ROOT, 'README.md');

/**
 * The README with every marked section replaced by its generated table; `config` is @ddpm/config
 * (its build by default; the test passes the source).
 */
function withTables(readme, config = require(path.join(ROOT, 'packages', 'config', 'dist', 'index.js'))) {
  const tables = { train: config.TRAIN_SETTINGS, sample: config.SAMPLE_JOB_SETTINGS, eval: config.EVAL_JOB_SETTINGS };
  let text = readme;
  for (const [name, table] of Object.entries(tables)) {
    const begin = `<!-- settings:${name} -->`;
    const end = `<!-- /settings:${name} -->`;
    const from = text.indexOf(begin);
    const to = text.indexOf(end);
    if (from < 0 || to < from) throw new Error(`README.md lacks the markers ${begin} … ${end}`);
    text = `${text.slice(0, from + begin.length)}\n${config.settingsMarkdown(table)}${text.slice(to)}`;
  }
  // The server's budgets (the rows of a table whose header the README holds).
  const begin = '<!-- limits -->';
  const end = '<!-- /limits -->';
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`README.md lacks the markers ${begin} … ${end}`);
  const rows = Object.values(config.LIMIT_VARIABLES).map((v) => `| \`${v.env}\` | ${v.default} | ${v.help} |\n`);
  text = `${text.slice(0, from + begin.length)}\n| variable | default | bound |\n| --- | --- | --- |\n${rows.join('')}${text.slice(to)}`;
  return text;
}

module.exports = { README, withTables };

if (require.main === module) {
  fs.writeFileSync(README, withTables(fs.readFileSync(README, 'utf8')));
  process.stdout.write('README.md: settings tables regenerated\n');
}

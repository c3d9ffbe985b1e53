#!/usr/bin/env node
/**
 * Each test file's wall time from a jest run's JSON report, slowest first:
 *
 *   node scripts/jest.cjs --json --outputFile=/tmp/jest.json   (or npm test -- --json --outputFile=…)
 *   node scripts/test-times.cjs /tmp/jest.json [--top N] [--markdown]
 *
 * With --markdown it prints a table for docs/testing.md.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

function usage(message) {
  if (message) process.stderr.write(`${message}\n`);
  process.stderr.write('Usage: node scripts/test-times.cjs REPORT.json [--top N] [--markdown]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { report: undefined, top: Infinity, markdown: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--markdown') options.markdown = true;
    else if (arg === '--top') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) usage(`--top takes a positive integer, got ${JSON.stringify(argv[i])}`);
      options.top = n;
    } else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
    else if (options.report === undefined) options.report = arg;
    else usage(`unexpected argument ${JSON.stringify(arg)}`);
  }
  if (options.report === undefined) usage('give the path of a jest --json report');
  return options;
}

/** `file` relative to the checkout it belongs to (the folder above it that holds jest.config.js). */
function inCheckout(file) {
  for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'jest.config.js'))) return path.relative(dir, file);
  }
  return file;
}

/** [{ file, seconds, tests, status }] of a jest JSON report, slowest first. */
function fileTimes(report) {
  if (!Array.isArray(report.testResults)) throw new Error('not a jest --json report: no testResults array');
  return report.testResults
    .map((r) => ({
      file: inCheckout(r.name),
      seconds: (r.endTime - r.startTime) / 1000,
      tests: r.assertionResults.length,
      status: r.status,
    }))
    .sort((a, b) => b.seconds - a.seconds);
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  let report;
  try {
    report = JSON.parse(fs.readFileSync(options.report, 'utf8'));
  } catch (err) {
    usage(`cannot read ${options.report}: ${err.message}`);
  }
  const times = fileTimes(report);
  const total = times.reduce((s, t) => s + t.seconds, 0);
  const shown = times.slice(0, options.top);
  if (options.markdown) {
    process.stdout.write('| file | seconds | tests |\n| --- | ---: | ---: |\n');
    for (const t of shown) process.stdout.write(`| \`${t.file}\` | ${t.seconds.toFixed(1)} | ${t.tests} |\n`);
    process.stdout.write(`\n${times.length} files, ${total.toFixed(0)} s of test time in all.\n`);
  } else {
    for (const t of shown)
      process.stdout.write(
        `${t.seconds.toFixed(1).padStart(8)} s  ${String(t.tests).padStart(3)} tests  ${t.status === 'passed' ? '' : `${t.status.toUpperCase()}  `}${t.file}\n`,
      );
    process.stdout.write(`${times.length} files, ${total.toFixed(1)} s in all\n`);
  }
}

module.exports = { fileTimes };
if (require.main === module) main();

#!/usr/bin/env node
/**
 * Writes the generated dashboard JSON where compose and kustomize read it:
 *
 *   npm run dashboards            write infra/k8s/components/monitoring/dashboards/ddpm-training.json
 *   npm run dashboards -- --check exit 1 if the committed JSON differs from the code
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { dashboardJson } from './index';

export const DASHBOARD_FILE = path.resolve(
  __dirname,
  '..',
  '..',
  '..',
  'infra',
  'k8s',
  'components',
  'monitoring',
  'dashboards',
  'ddpm-training.json',
);

async function main(): Promise<void> {
  const json = dashboardJson();
  const check = process.argv.includes('--check');
  const current = await fs.readFile(DASHBOARD_FILE, 'utf8').catch(() => undefined);
  if (check) {
    if (current !== json) {
      process.stderr.write(
        `${path.relative(process.cwd(), DASHBOARD_FILE)} is not what packages/dashboards generates: run npm run dashboards\n`,
      );
      process.exit(1);
    }
    return;
  }
  await fs.mkdir(path.dirname(DASHBOARD_FILE), { recursive: true });
  await fs.writeFile(DASHBOARD_FILE, json);
  process.stdout.write(`wrote ${path.relative(process.cwd(), DASHBOARD_FILE)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

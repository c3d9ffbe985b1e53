/**
 * `ddpm settings [train|sample|eval] [--markdown|--json]`: the settings tables of @ddpm/settings,
 * as docs/settings.md shows them (--markdown), as data (--json), or as flags (the default).
 */
import {
  EVAL_JOB_SETTINGS,
  SAMPLE_JOB_SETTINGS,
  type SettingTable,
  TRAIN_SETTINGS,
  defaultText,
  settingsMarkdown,
} from '@ddpm/settings';

import { parseCommandArgs } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { flagUsage } from '../settings-flags';

const TABLE_NAMES = ['train', 'sample', 'eval'] as const;
type TableName = (typeof TABLE_NAMES)[number];
export const SETTINGS_TABLES: Readonly<Record<TableName, SettingTable>> = {
  train: TRAIN_SETTINGS,
  sample: SAMPLE_JOB_SETTINGS,
  eval: EVAL_JOB_SETTINGS,
};

export const SETTINGS_USAGE = `Usage: ddpm settings [train|sample|eval] [--markdown | --json]

Every setting of a job: its request field, CLI flag, default (and the paper's value), meaning and
where it lands in the effective config. One table serves the HTTP API, ddpm train / sample and
ddpm jobs submit. --markdown prints the tables of docs/settings.md; --json the settings as data.
`;

export function settingsCommand(argv: readonly string[], io: CliIo): number {
  const { values, positionals } = parseCommandArgs(argv, { markdown: { type: 'boolean' }, json: { type: 'boolean' } });
  const isName = (name: string): name is TableName => (TABLE_NAMES as readonly string[]).includes(name);
  const names =
    positionals.length === 0
      ? [...TABLE_NAMES]
      : positionals.map((name) => {
          if (!isName(name))
            throw new CliUsageError(
              `unknown settings table ${JSON.stringify(name)}; expected ${TABLE_NAMES.join(', ')}`,
            );
          return name;
        });
  const tables = names.map((name) => [name, SETTINGS_TABLES[name]] as const);
  if (values['json'] === true) {
    const data = Object.fromEntries(
      tables.map(([name, table]) => [
        name,
        Object.entries(table).map(([field, s]) => ({
          field,
          flag: `--${s.flag}`,
          path: s.path,
          presence: s.presence,
          ...(s.presence === 'default' ? { default: s.default } : {}),
          ...(s.paper ? { paper: s.paper } : {}),
          ...(s.differsFromPaper ? { differsFromPaper: s.differsFromPaper } : {}),
          ...(s.whenAbsent ? { whenAbsent: s.whenAbsent } : {}),
          help: s.help,
          defaultText: defaultText(s),
          schema: s.schema,
          ...(s.scope ? { scope: s.scope } : {}),
        })),
      ]),
    );
    io.stdout(JSON.stringify(data, null, 2) + '\n');
  } else if (values['markdown'] === true) {
    io.stdout(tables.map(([, table]) => settingsMarkdown(table)).join('\n'));
  } else {
    io.stdout(tables.map(([name, table]) => `${name}:\n${flagUsage(table, { jobs: true })}\n`).join('\n'));
  }
  return 0;
}

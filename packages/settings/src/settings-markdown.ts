/** A settings table as docs/settings.md and usage text show it (a test keeps docs/settings.md's copy identical). */
import { KindGuard } from '@sinclair/typebox';

import { type Setting, type SettingTable } from './setting';

const code = (s: string): string => `\`${s}\``;
const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));
const cell = (s: string): string => s.replace(/\|/g, '\\|');

/** A setting's flag as usage text shows it: `--[no-]flip`, `-n, --count N`. */
export function flagText(setting: Setting): string {
  if (KindGuard.IsBoolean(setting.schema)) return `--[no-]${setting.flag}`;
  return `${setting.short ? `-${setting.short}, ` : ''}--${setting.flag} ${setting.placeholder ?? 'VALUE'}`;
}

function defaultCell(setting: Setting): string {
  switch (setting.presence) {
    case 'required':
      return 'required';
    case 'default':
      return setting.differsFromPaper
        ? `${code(show(setting.default))} (service default: ${setting.differsFromPaper})`
        : code(show(setting.default));
    case 'optional':
      return setting.whenAbsent ?? '';
    default: {
      const unreachable: never = setting.presence;
      return String(unreachable);
    }
  }
}

export function settingsMarkdown(table: SettingTable): string {
  const rows = Object.entries(table).map(([name, s]) =>
    [
      code(name),
      code(flagText(s)) + (s.scope === 'job' ? ' (jobs only)' : ''),
      defaultCell(s),
      s.paper ? `${code(show(s.paper.value))} (${s.paper.source})` : '',
      s.help,
      code(s.path),
    ]
      .map(cell)
      .join(' | '),
  );
  return (
    [
      '| field | CLI flag | default | paper | meaning | resolved at |',
      '| --- | --- | --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r} |`),
    ].join('\n') + '\n'
  );
}

/**
 * CLI flags derived from a settings table (@ddpm/settings): the parseArgs options, the conversion
 * of flag values into a request (errors name the flag), and the usage lines. `ddpm train` and
 * `ddpm jobs submit train` (and the sample commands) take the same flags because both read them here.
 */
import { type Setting, type SettingTable, defaultText, flagText, literalsOf, problemWith } from '@ddpm/settings';
import { withAbsoluteLocation } from '@ddpm/data/spec';
import { KindGuard } from '@sinclair/typebox';

import { type OptionSpec } from './args';
import { CliUsageError } from './cli-io';

export type FlagValues = Readonly<Record<string, string | boolean | undefined>>;

/** Which rows a command takes: a local command leaves out the job-only ones (`workers`, `trainJobId`). */
export interface FlagScope {
  readonly jobs: boolean;
  /** Only these settings (by request name), e.g. the seed and EMA choice of `ddpm interpolate`. */
  readonly only?: readonly string[];
}

function rows(table: SettingTable, scope: FlagScope): [string, Setting][] {
  return Object.entries(table).filter(
    ([name, s]) => (scope.jobs || s.scope !== 'job') && (scope.only === undefined || scope.only.includes(name)),
  );
}

export function flagOptions(table: SettingTable, scope: FlagScope): OptionSpec {
  const options: OptionSpec = {};
  for (const [, s] of rows(table, scope)) {
    if (KindGuard.IsBoolean(s.schema)) {
      options[s.flag] = { type: 'boolean' };
      options[`no-${s.flag}`] = { type: 'boolean' };
    } else {
      options[s.flag] = { type: 'string', ...(s.short ? { short: s.short } : {}) };
    }
  }
  return options;
}

/** The flag's raw text as the setting's type (a number, a list...); the bounds are checked after. */
function convert(setting: Setting, raw: string): unknown {
  if (KindGuard.IsInteger(setting.schema) || KindGuard.IsNumber(setting.schema))
    return raw.trim() === '' ? raw : Number(raw);
  if (KindGuard.IsArray(setting.schema)) return raw.split(',').map((part) => part.trim());
  return raw;
}

/**
 * The request the flags describe: only the settings given (the resolver fills the defaults).
 * Each value is checked against its setting with an error naming the flag. A local command's
 * dataset location may be relative (to the working directory, made absolute here); a job's is a
 * path on the service's workers and goes as written.
 */
export function requestFromFlags(table: SettingTable, values: FlagValues, scope: FlagScope): Record<string, unknown> {
  const request: Record<string, unknown> = {};
  for (const [name, s] of rows(table, scope)) {
    const flag = `--${s.flag}`;
    let value: unknown;
    if (KindGuard.IsBoolean(s.schema)) {
      if (values[s.flag] === true && values[`no-${s.flag}`] === true)
        throw new CliUsageError(`${flag} and --no-${s.flag} contradict each other`);
      value = values[s.flag] === true ? true : values[`no-${s.flag}`] === true ? false : undefined;
    } else {
      const raw = values[s.flag];
      value = typeof raw === 'string' ? convert(s, raw) : undefined;
    }
    if (value === undefined) {
      if (s.presence === 'required') throw new CliUsageError(`${flag} is required: ${s.help}`);
      continue;
    }
    const problem = problemWith(flag, s, value);
    if (problem) throw new CliUsageError(problem);
    request[name] = !scope.jobs && name === 'dataset' && typeof value === 'string' ? absoluteDataset(value) : value;
  }
  return request;
}

function absoluteDataset(spec: string): string {
  try {
    return withAbsoluteLocation(spec, process.cwd());
  } catch {
    // A malformed spec goes on as written: the resolver names its problem with the others'.
    return spec;
  }
}

/** Usage lines for the flags, with each default (and the paper's value where it differs). */
export function flagUsage(table: SettingTable, scope: FlagScope): string {
  return rows(table, scope)
    .map(([, s]) => {
      const head = flagText(s);
      const choices = literalsOf(s.schema);
      const help =
        choices.length > 0 && !choices.every((c) => s.help.includes(c)) ? `${s.help}: ${choices.join(' | ')}` : s.help;
      return `  ${head.padEnd(26)}${help} (${defaultText(s)})`;
    })
    .join('\n');
}

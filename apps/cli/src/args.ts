/**
 * Argument parsing on node:util's parseArgs, with the conversions every command needs and errors
 * that name the flag and the bad value.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { CliUsageError } from './cli-io';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export function parseCommandArgs(
  argv: readonly string[],
  options: OptionSpec,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    return { values: values as Record<string, string | boolean | undefined>, positionals };
  } catch (err) {
    throw new CliUsageError((err as Error).message);
  }
}

export function parseNumber(flag: string, raw: string | boolean | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value)) throw new CliUsageError(`--${flag} must be a number, got ${JSON.stringify(raw)}`);
  return value;
}

export function parseInteger(
  flag: string,
  raw: string | boolean | undefined,
  fallback: number,
  { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  const value = parseNumber(flag, raw, fallback);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new CliUsageError(`--${flag} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function parseIntegerList(flag: string, raw: string | boolean | undefined): number[] | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw new CliUsageError(`--${flag} needs a comma-separated list of integers`);
  }
  return raw.split(',').map((part) => {
    const value = Number(part.trim());
    if (part.trim() === '' || !Number.isInteger(value)) {
      throw new CliUsageError(`--${flag}: ${JSON.stringify(part)} is not an integer`);
    }
    return value;
  });
}

export function parseChoice<T extends string>(
  flag: string,
  raw: string | boolean | undefined,
  choices: readonly T[],
  fallback: T,
): T {
  if (raw === undefined) return fallback;
  if (typeof raw === 'string' && (choices as readonly string[]).includes(raw)) return raw as T;
  throw new CliUsageError(`--${flag} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
}

/**
 * Reading one environment variable: the error every bad value raises (naming the variable and
 * what it takes), integers in a range, and on/off switches.
 */
import { CodedError } from '@ddpm/core';

/** A bad environment variable: the process cannot start until someone fixes it. */
export const configError = (message: string): CodedError => new CodedError('DDPM_SERVICE_CONFIG', 'invalid', message);

/** How a caller reports a bad environment variable (its own error code); a config error by default. */
export type EnvError = (message: string) => Error;

/**
 * An integer setting from the environment: `fallback` when unset or empty, else an integer in
 * [min, max], or `fail` with a message naming the variable.
 */
export function envInteger(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  fail: EnvError = configError,
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw fail(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** An on/off switch: `fallback` when unset or empty, `1` on, `0` off, anything else `fail`s. */
export function envSwitch(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: boolean,
  fail: EnvError = configError,
): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === '1') return true;
  if (raw === '0') return false;
  throw fail(`${name} must be 1 or 0, got ${JSON.stringify(raw)}`);
}

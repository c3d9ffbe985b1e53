/**
 * The service's environment (docs/configuration.md), validated once at start with
 * errors that name the variable and what was expected.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type ServiceLimits } from '@ddpm/settings';
import { hasCode } from '@ddpm/core';

import { configError, envInteger, envSwitch } from './env-values';
import { loadLimits } from './limits';
import { type TensorSettings, loadTensorSettings } from './tensor-settings';

/** The service's environment; a worker's job processes also take its `TensorSettings`. */
export interface ServiceConfig extends TensorSettings {
  readonly redisUrl: string;
  /** Gradient data plane (the data-parallel group); defaults to REDIS_URL. */
  readonly dataRedisUrl: string;
  /**
   * A shared-memory folder for the gradients of ranks that turn out to share one host
   * (DDPM_SHM_DIR; default /dev/shm where it exists, `off`: never): Redis then carries only the
   * all-reduce's signals.
   */
  readonly sharedMemoryDir?: string;
  /**
   * This worker's own data server, as the other workers reach it (DDPM_RANK_DATA_URL: a sidecar
   * Redis in its pod, a second redis-server on its host). When every rank of a generation has one
   * and reaches every other's, the gradients travel between them and no single server carries
   * more than about 2·S per all-reduce; otherwise through the hub (DDPM_DATA_REDIS_URL).
   */
  readonly rankDataUrl?: string;
  readonly storageUrl: string;
  readonly s3Endpoint?: string;
  readonly apiToken?: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** BullMQ key prefix (separates deployments; tests use one per test). */
  readonly queuePrefix: string;
  /** Address the API (PORT) and the worker's /metrics and /healthz (METRICS_PORT) listen on; default 127.0.0.1. */
  readonly host: string;
  /** DDPM_INSECURE=1: listen beyond loopback without a token (loudly warned about). */
  readonly insecure: boolean;
  /**
   * Host names (besides the loopback names and the listener's address) that requests may name in
   * their Host header when the API has no token, and whose origins may change state
   * (DDPM_ALLOWED_HOSTS, comma-separated). Guards a tokenless API against DNS rebinding.
   */
  readonly allowedHosts: readonly string[];
  /** The API's address as its clients reach it (DDPM_PUBLIC_URL): the base of every link it returns. */
  readonly publicUrl?: string;
  /** Folders every dataset path must lie in (DDPM_DATA_ROOTS, ':'-separated); `store:NAME` datasets are always allowed. */
  readonly dataRoots: readonly string[];
  /** Largest data file read and largest gunzipped content, bytes (DDPM_DATA_MAX_FILE_MB). */
  readonly dataMaxFileBytes: number;
  /** Largest dataset upload, bytes (DDPM_MAX_UPLOAD_MB). */
  readonly maxUploadBytes: number;
  /** Server-side budgets checked at submission (and the wall time, by the worker). */
  readonly limits: ServiceLimits;
  /** Finished jobs kept: at most `count` of each queue, none older than `seconds` (then removed). */
  readonly keepCompleted: { readonly count: number; readonly seconds: number };
  readonly keepFailed: { readonly count: number; readonly seconds: number };
  /** Log lines kept per job (DDPM_JOB_LOG_LINES); older lines are dropped. */
  readonly jobLogLines: number;
  /** Seconds a cancelled or shut-down job has to checkpoint and stop before its process is killed (DDPM_STOP_GRACE_SECONDS). */
  readonly stopGraceSeconds: number;
  /** A job process silent (no heartbeat) this long, or ten times its longest step if more, is wedged and killed; /healthz fails meanwhile. */
  readonly childStallSeconds: number;
  /**
   * How long a job process keeps trying a store operation that fails with an I/O error (an
   * endpoint away, a read-only volume) before the job fails over it (DDPM_STORAGE_PATIENCE_SECONDS).
   */
  readonly storagePatienceSeconds: number;
  /** Resident memory a job process may use, bytes (DDPM_JOB_MEMORY_MB; default 90% of the machine). */
  readonly jobMemoryBytes: number;
  /** Concurrent `logs?follow=true` streams (DDPM_LOG_FOLLOWERS) and how long one may last (DDPM_LOG_FOLLOW_SECONDS). */
  readonly logFollowers: number;
  readonly logFollowSeconds: number;
  /**
   * A worker's lock on a job (DDPM_LOCK_DURATION_MS) and how often stalled jobs are looked for
   * (DDPM_STALLED_INTERVAL_MS): together, how soon a dead worker's job is picked up by another.
   */
  readonly lockDurationMs: number;
  readonly stalledIntervalMs: number;
  /** The web console's build the API serves (DDPM_CONSOLE_DIR; default: apps/console/dist beside the API). */
  readonly consoleDir?: string;
}

/** The Debian packages' datasets folder (dataset-fashion-mnist installs under it). */
export const DEFAULT_DATA_ROOTS = ['/usr/share/datasets'] as const;

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function port(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535)
    throw configError(`${name} must be a port number 0-65535, got ${JSON.stringify(raw)}`);
  return value;
}

function redisUrl(name: string, raw: string): string {
  if (!/^rediss?:\/\//.test(raw))
    throw configError(`${name} must be a redis:// or rediss:// URL, got ${JSON.stringify(raw)}`);
  try {
    new URL(raw);
  } catch {
    throw configError(`${name} is not a valid URL: ${JSON.stringify(raw)}`);
  }
  return raw;
}

const MIB = 2 ** 20;

function dataRoots(raw: string | undefined): string[] {
  if (raw === undefined) return [...DEFAULT_DATA_ROOTS];
  const roots = raw.split(':').filter((r) => r !== '');
  for (const r of roots)
    if (!path.isAbsolute(r))
      throw configError(`DDPM_DATA_ROOTS must list absolute folders separated by ':', got ${JSON.stringify(r)}`);
  return roots.map((r) => path.resolve(r));
}

export function loadServiceConfig(
  env: NodeJS.ProcessEnv = process.env,
  defaults: { port?: number; metricsPort?: number } = {},
): ServiceConfig {
  const redis = redisUrl('REDIS_URL', env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
  const storageUrl = env['DDPM_STORAGE_URL'] ?? `file://${process.cwd()}/var/ddpm`;
  if (!/^(file:\/\/\/|s3:\/\/[^/]+)/.test(storageUrl)) {
    throw configError(
      `DDPM_STORAGE_URL must be file:///absolute/path or s3://bucket[/prefix], got ${JSON.stringify(storageUrl)}`,
    );
  }
  const level = env['LOG_LEVEL'] ?? 'info';
  if (!(LEVELS as readonly string[]).includes(level))
    throw configError(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const token = env['DDPM_API_TOKEN'];
  if (token !== undefined && token !== '' && token.length < 16)
    throw configError('DDPM_API_TOKEN must be at least 16 characters when set');
  const prefix = env['DDPM_QUEUE_PREFIX'] ?? 'ddpm';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(prefix))
    throw configError(`DDPM_QUEUE_PREFIX must be 1-64 letters, digits, _ or -, got ${JSON.stringify(prefix)}`);
  return {
    redisUrl: redis,
    dataRedisUrl: redisUrl('DDPM_DATA_REDIS_URL', env['DDPM_DATA_REDIS_URL'] ?? redis),
    ...sharedMemoryDir(env['DDPM_SHM_DIR']),
    ...(env['DDPM_RANK_DATA_URL'] ? { rankDataUrl: redisUrl('DDPM_RANK_DATA_URL', env['DDPM_RANK_DATA_URL']) } : {}),
    storageUrl,
    ...(env['S3_ENDPOINT'] ? { s3Endpoint: env['S3_ENDPOINT'] } : {}),
    ...loadTensorSettings(env),
    ...(token ? { apiToken: token } : {}),
    port: port('PORT', env['PORT'], defaults.port ?? 8080),
    metricsPort: port('METRICS_PORT', env['METRICS_PORT'], defaults.metricsPort ?? 9464),
    logLevel: level as ServiceConfig['logLevel'],
    queuePrefix: prefix,
    host: env['HOST'] || '127.0.0.1',
    insecure: envSwitch(env, 'DDPM_INSECURE', false),
    allowedHosts: allowedHosts(env['DDPM_ALLOWED_HOSTS']),
    ...publicUrl(env['DDPM_PUBLIC_URL']),
    dataRoots: dataRoots(env['DDPM_DATA_ROOTS']),
    dataMaxFileBytes: envInteger(env, 'DDPM_DATA_MAX_FILE_MB', 2048, 1) * MIB,
    maxUploadBytes: envInteger(env, 'DDPM_MAX_UPLOAD_MB', 1024, 1) * MIB,
    limits: loadLimits(env),
    keepCompleted: {
      count: envInteger(env, 'DDPM_KEEP_COMPLETED_JOBS', 1000, 0),
      seconds: envInteger(env, 'DDPM_KEEP_COMPLETED_SECONDS', 30 * 86400, 1),
    },
    keepFailed: {
      count: envInteger(env, 'DDPM_KEEP_FAILED_JOBS', 5000, 0),
      seconds: envInteger(env, 'DDPM_KEEP_FAILED_SECONDS', 90 * 86400, 1),
    },
    jobLogLines: envInteger(env, 'DDPM_JOB_LOG_LINES', 5000, 10),
    stopGraceSeconds: envInteger(env, 'DDPM_STOP_GRACE_SECONDS', 300, 1),
    childStallSeconds: envInteger(env, 'DDPM_CHILD_STALL_SECONDS', 900, 1),
    storagePatienceSeconds: envInteger(env, 'DDPM_STORAGE_PATIENCE_SECONDS', 300, 0),
    jobMemoryBytes: envInteger(env, 'DDPM_JOB_MEMORY_MB', Math.floor((0.9 * os.totalmem()) / MIB), 64) * MIB,
    logFollowers: envInteger(env, 'DDPM_LOG_FOLLOWERS', 64, 1),
    logFollowSeconds: envInteger(env, 'DDPM_LOG_FOLLOW_SECONDS', 3600, 1),
    lockDurationMs: envInteger(env, 'DDPM_LOCK_DURATION_MS', 30_000, 1000),
    stalledIntervalMs: envInteger(env, 'DDPM_STALLED_INTERVAL_MS', 30_000, 1000),
    ...absoluteFolder('DDPM_CONSOLE_DIR', env['DDPM_CONSOLE_DIR'], 'consoleDir'),
  };
}

/** An optional absolute folder. */
function absoluteFolder<K extends string>(name: string, raw: string | undefined, key: K): { [k in K]?: string } {
  if (raw === undefined || raw === '') return {};
  if (!path.isAbsolute(raw)) throw configError(`${name} must be an absolute folder, got ${JSON.stringify(raw)}`);
  return { [key]: path.resolve(raw) } as { [k in K]?: string };
}

/** DDPM_SHM_DIR: an absolute folder, `off`, or unset (/dev/shm when the machine has it). */
function sharedMemoryDir(raw: string | undefined): { sharedMemoryDir?: string } {
  if (raw === 'off') return {};
  if (raw === undefined || raw === '') return fs.existsSync('/dev/shm') ? { sharedMemoryDir: '/dev/shm' } : {};
  if (!path.isAbsolute(raw))
    throw configError(`DDPM_SHM_DIR must be an absolute folder or off, got ${JSON.stringify(raw)}`);
  return { sharedMemoryDir: path.resolve(raw) };
}

/** DDPM_ALLOWED_HOSTS: host names or addresses, comma-separated, no scheme, port or path. */
function allowedHosts(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((entry) => {
    const host = entry.trim().toLowerCase();
    const name = /^\[[0-9a-f:.]+\]$/.test(host) ? host : host.includes(':') ? `[${host}]` : host;
    let parsed: URL | undefined;
    try {
      parsed = new URL(`http://${name}`);
    } catch {
      parsed = undefined;
    }
    if (host === '' || parsed === undefined || parsed.hostname !== name || parsed.port !== '')
      throw configError(
        `DDPM_ALLOWED_HOSTS must list host names or addresses separated by commas (no scheme, port or path), got ${JSON.stringify(entry.trim())}`,
      );
    return parsed.hostname;
  });
}

/** DDPM_PUBLIC_URL: http(s)://host[:port][/path], kept without a trailing slash. */
function publicUrl(raw: string | undefined): { publicUrl?: string } {
  if (raw === undefined || raw === '') return {};
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (url === undefined || !/^https?:$/.test(url.protocol) || url.search !== '' || url.hash !== '' || url.username)
    throw configError(
      `DDPM_PUBLIC_URL must be an http:// or https:// URL without query, fragment or credentials, got ${JSON.stringify(raw)}`,
    );
  return { publicUrl: `${url.origin}${url.pathname.replace(/\/+$/, '')}` };
}

/** Whether an Authorization header carries `Bearer <token>` (compared in constant time). */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  // The scheme is case-insensitive (RFC 7235); the credentials are compared in constant time
  // whatever their length (digests of equal size), so the time says nothing about the token.
  const match = /^bearer +(\S+) *$/i.exec(authorization ?? '');
  const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
  const equal = timingSafeEqual(digest(match?.[1] ?? ''), digest(token));
  return match !== null && equal;
}

/** Whether a listen address is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * The API's rule (docs/security.md): beyond loopback only with a token, unless
 * DDPM_INSECURE=1 says otherwise. Returns the warning to log loudly when it does; throws otherwise.
 */
export function checkListenerSafety(config: ServiceConfig): string | undefined {
  if (isLoopback(config.host) || config.apiToken !== undefined) return undefined;
  if (!config.insecure) {
    throw configError(
      `HOST=${config.host} is reachable from other machines and DDPM_API_TOKEN is not set: anyone who reaches it could run jobs. ` +
        'Set DDPM_API_TOKEN (16+ characters), listen on 127.0.0.1, or set DDPM_INSECURE=1 to serve without a token anyway',
    );
  }
  return `INSECURE: listening on ${config.host} without DDPM_API_TOKEN (DDPM_INSECURE=1): anyone who reaches this address can submit, read and cancel jobs`;
}

/** ioredis / BullMQ connection options for a redis:// or rediss:// URL. */
export function redisConnectionOptions(url: string): {
  host: string;
  port: number;
  password?: string;
  username?: string;
  db?: number;
  tls?: object;
} {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.pathname && u.pathname !== '/' ? { db: Number(u.pathname.slice(1)) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** For executables: the validated configuration, or a one-line error naming the variable and exit 2. */
export function loadServiceConfigOrExit(
  program: string,
  defaults?: { port?: number; metricsPort?: number },
): ServiceConfig {
  try {
    return loadServiceConfig(process.env, defaults);
  } catch (err) {
    if (hasCode(err, 'DDPM_SERVICE_CONFIG')) {
      process.stderr.write(`${program}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

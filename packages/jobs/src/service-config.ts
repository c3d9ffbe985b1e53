/**
 * The service's environment (../shared/DESIGN.md, "Configuration"), validated once at start with
 * errors that name the variable and what was expected.
 */
import { CodedError, hasCode } from '@ddpm/core';

export interface ServiceConfig {
  readonly redisUrl: string;
  /** Gradient data plane (the data-parallel group); defaults to REDIS_URL. */
  readonly dataRedisUrl: string;
  readonly storageUrl: string;
  readonly s3Endpoint?: string;
  readonly backend?: string;
  readonly apiToken?: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** BullMQ key prefix (separates deployments; tests use one per test). */
  readonly queuePrefix: string;
  readonly host: string;
}

/** A bad environment variable: the process cannot start until someone fixes it. */
const configError = (message: string): CodedError => new CodedError('DDPM_SERVICE_CONFIG', 'invalid', message);

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function port(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) throw configError(`${name} must be a port number 0-65535, got ${JSON.stringify(raw)}`);
  return value;
}

function redisUrl(name: string, raw: string): string {
  if (!/^rediss?:\/\//.test(raw)) throw configError(`${name} must be a redis:// or rediss:// URL, got ${JSON.stringify(raw)}`);
  try {
    new URL(raw);
  } catch {
    throw configError(`${name} is not a valid URL: ${JSON.stringify(raw)}`);
  }
  return raw;
}

export function loadServiceConfig(env: NodeJS.ProcessEnv = process.env, defaults: { port?: number; metricsPort?: number } = {}): ServiceConfig {
  const redis = redisUrl('REDIS_URL', env['REDIS_URL'] ?? 'redis://127.0.0.1:6379');
  const storageUrl = env['DDPM_STORAGE_URL'] ?? `file://${process.cwd()}/var/ddpm`;
  if (!/^(file:\/\/\/|s3:\/\/[^/]+)/.test(storageUrl)) {
    throw configError(`DDPM_STORAGE_URL must be file:///absolute/path or s3://bucket[/prefix], got ${JSON.stringify(storageUrl)}`);
  }
  const level = env['LOG_LEVEL'] ?? 'info';
  if (!(LEVELS as readonly string[]).includes(level)) throw configError(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  const token = env['DDPM_API_TOKEN'];
  if (token !== undefined && token !== '' && token.length < 16) throw configError('DDPM_API_TOKEN must be at least 16 characters when set');
  const prefix = env['DDPM_QUEUE_PREFIX'] ?? 'ddpm';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(prefix)) throw configError(`DDPM_QUEUE_PREFIX must be 1-64 letters, digits, _ or -, got ${JSON.stringify(prefix)}`);
  return {
    redisUrl: redis,
    dataRedisUrl: redisUrl('DDPM_DATA_REDIS_URL', env['DDPM_DATA_REDIS_URL'] ?? redis),
    storageUrl,
    ...(env['S3_ENDPOINT'] ? { s3Endpoint: env['S3_ENDPOINT'] } : {}),
    ...(env['DDPM_BACKEND'] ? { backend: env['DDPM_BACKEND'] } : {}),
    ...(token ? { apiToken: token } : {}),
    port: port('PORT', env['PORT'], defaults.port ?? 8080),
    metricsPort: port('METRICS_PORT', env['METRICS_PORT'], defaults.metricsPort ?? 9464),
    logLevel: level as ServiceConfig['logLevel'],
    queuePrefix: prefix,
    host: env['HOST'] ?? '0.0.0.0',
  };
}

/** ioredis / BullMQ connection options for a redis:// or rediss:// URL. */
export function redisConnectionOptions(url: string): { host: string; port: number; password?: string; username?: string; db?: number; tls?: object } {
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
export function loadServiceConfigOrExit(program: string, defaults?: { port?: number; metricsPort?: number }): ServiceConfig {
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

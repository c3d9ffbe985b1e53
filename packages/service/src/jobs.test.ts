import { jobIdFor, jobTypeOf, requestHash } from './names';
import { bearerMatches, loadServiceConfig, redisConnectionOptions } from './service-config';

describe('job names', () => {
  it('derives the same id from the same Idempotency-Key, per job type', () => {
    expect(jobIdFor('train', 'abc')).toBe(jobIdFor('train', 'abc'));
    expect(jobIdFor('train', 'abc')).not.toBe(jobIdFor('sample', 'abc'));
    expect(jobIdFor('train')).not.toBe(jobIdFor('train'));
    expect(jobTypeOf(jobIdFor('sample', 'x'))).toBe('sample');
    expect(jobTypeOf('other-1')).toBeUndefined();
  });

  it('hashes requests independently of key order', () => {
    expect(requestHash({ a: 1, b: { c: 2, d: [1, 2] } })).toBe(requestHash({ b: { d: [1, 2], c: 2 }, a: 1 }));
    expect(requestHash({ a: 1 })).not.toBe(requestHash({ a: 2 }));
  });
});

describe('service configuration', () => {
  it('has defaults for one machine', () => {
    const c = loadServiceConfig({});
    expect(c).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      dataRedisUrl: 'redis://127.0.0.1:6379',
      port: 8080,
      metricsPort: 9464,
      logLevel: 'info',
      queuePrefix: 'ddpm',
      lockDurationMs: 30_000,
      stalledIntervalMs: 30_000,
    });
    expect(c.storageUrl).toMatch(/^file:\/\/\//);
    // Every variable is read here, once: the worker's lock timings too.
    expect(loadServiceConfig({ DDPM_LOCK_DURATION_MS: '4000', DDPM_STALLED_INTERVAL_MS: '2000' })).toMatchObject({
      lockDurationMs: 4000,
      stalledIntervalMs: 2000,
    });
  });

  it.each([
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL must be a redis:// or rediss:// URL, got "http://x"'],
    [{ DDPM_DATA_REDIS_URL: 'nope' }, /DDPM_DATA_REDIS_URL must be a redis/],
    [{ DDPM_STORAGE_URL: 'relative/path' }, /DDPM_STORAGE_URL must be file:\/\/\/absolute\/path or s3:\/\/bucket/],
    [{ PORT: '99999' }, 'PORT must be a port number 0-65535, got "99999"'],
    [{ METRICS_PORT: 'x' }, /METRICS_PORT must be a port number/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of fatal, error/],
    [{ DDPM_API_TOKEN: 'short' }, 'DDPM_API_TOKEN must be at least 16 characters when set'],
    [{ DDPM_QUEUE_PREFIX: 'a:b' }, /DDPM_QUEUE_PREFIX must be 1-64 letters/],
    [{ DDPM_SHM_DIR: 'shm' }, 'DDPM_SHM_DIR must be an absolute folder or off, got "shm"'],
    [
      { DDPM_RANK_DATA_URL: '10.0.0.5:6380' },
      'DDPM_RANK_DATA_URL must be a redis:// or rediss:// URL, got "10.0.0.5:6380"',
    ],
    [
      { DDPM_ALLOWED_HOSTS: 'http://ddpm.example' },
      /DDPM_ALLOWED_HOSTS must list host names .*"http:\/\/ddpm.example"/,
    ],
    [{ DDPM_ALLOWED_HOSTS: 'ddpm.example:8080' }, /DDPM_ALLOWED_HOSTS must list host names .*"ddpm.example:8080"/],
    [{ DDPM_ALLOWED_HOSTS: 'a.example,,b' }, /DDPM_ALLOWED_HOSTS must list host names .*""/],
    [{ DDPM_PUBLIC_URL: 'ddpm.example' }, 'DDPM_PUBLIC_URL must be an http:// or https:// URL'],
    [{ DDPM_PUBLIC_URL: 'https://ddpm.example/?x=1' }, 'DDPM_PUBLIC_URL must be an http:// or https:// URL'],
    [{ DDPM_LOCK_DURATION_MS: '10' }, /DDPM_LOCK_DURATION_MS/],
    [{ DDPM_CONSOLE_DIR: 'dist' }, 'DDPM_CONSOLE_DIR must be an absolute folder, got "dist"'],
    [{ DDPM_STALLED_INTERVAL_MS: 'soon' }, /DDPM_STALLED_INTERVAL_MS/],
  ])('rejects %j', (env, message) => {
    expect(() => loadServiceConfig(env)).toThrow(message);
  });

  it('offers the gradients a shared-memory folder: /dev/shm by default (on Linux), the one named, or none', () => {
    expect(loadServiceConfig({}).sharedMemoryDir).toBe('/dev/shm');
    expect(loadServiceConfig({ DDPM_SHM_DIR: '/run/ddpm-shm/' }).sharedMemoryDir).toBe('/run/ddpm-shm');
    expect(loadServiceConfig({ DDPM_SHM_DIR: 'off' })).not.toHaveProperty('sharedMemoryDir');
  });

  it('advertises the worker’s own data server only when DDPM_RANK_DATA_URL names one', () => {
    expect(loadServiceConfig({})).not.toHaveProperty('rankDataUrl');
    expect(loadServiceConfig({ DDPM_RANK_DATA_URL: 'redis://:pw@10.0.0.5:6380' }).rankDataUrl).toBe(
      'redis://:pw@10.0.0.5:6380',
    );
  });

  it('reads the hosts a tokenless API answers and the public URL its links start with', () => {
    expect(loadServiceConfig({}).allowedHosts).toEqual([]);
    expect(loadServiceConfig({}).publicUrl).toBeUndefined();
    expect(loadServiceConfig({ DDPM_ALLOWED_HOSTS: ' DDPM.example , 10.0.0.7,::1,[fe80::1]' }).allowedHosts).toEqual([
      'ddpm.example',
      '10.0.0.7',
      '[::1]',
      '[fe80::1]',
    ]);
    expect(loadServiceConfig({ DDPM_PUBLIC_URL: 'https://ddpm.example/api/' }).publicUrl).toBe(
      'https://ddpm.example/api',
    );
  });

  it('takes the bearer scheme in any case and only the exact token', () => {
    const token = 'x'.repeat(16) + 'secret';
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`BEARER ${token}`, token)).toBe(true);
    expect(bearerMatches(`Bearer ${token}x`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${token.slice(1)}`, token)).toBe(false);
    expect(bearerMatches(`Basic ${token}`, token)).toBe(false);
    expect(bearerMatches(token, token)).toBe(false);
    expect(bearerMatches(undefined, token)).toBe(false);
    expect(bearerMatches('Bearer ', token)).toBe(false);
  });

  it('turns Redis URLs into connection options', () => {
    expect(redisConnectionOptions('rediss://user:p%40ss@host:6380/2')).toEqual({
      host: 'host',
      port: 6380,
      username: 'user',
      password: 'p@ss',
      db: 2,
      tls: {},
    });
  });
});

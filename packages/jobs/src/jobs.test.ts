import { jobIdFor, jobTypeOf, requestHash } from './names';
import { loadServiceConfig, redisConnectionOptions } from './service-config';

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
    });
    expect(c.storageUrl).toMatch(/^file:\/\/\//);
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

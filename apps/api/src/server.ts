/** The API executable: `node apps/api/dist/server.js` (config from the environment). */
import { ConfigError, loadServiceConfig } from '@ddpm/jobs';

import { buildApp } from './app';

async function main(): Promise<void> {
  let config;
  try {
    config = loadServiceConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ddpm-api: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await buildApp({ config });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      app.log.info({ signal }, 'shutting down');
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  await app.listen({ port: config.port, host: config.host });
}

void main();

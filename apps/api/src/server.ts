/** The API executable: `node apps/api/dist/server.js` (config from the environment). */
import { loadServiceConfigOrExit } from '@ddpm/jobs';

import { buildApp } from './app';

async function main(): Promise<void> {
  const config = loadServiceConfigOrExit('ddpm-api');
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

/** The API executable: `node apps/api/dist/server.js` (config from the environment). */
import { checkListenerSafety, loadServiceConfigOrExit } from '@ddpm/service';

import { buildApp } from './app';

async function main(): Promise<void> {
  const config = loadServiceConfigOrExit('ddpm-api');
  let warning: string | undefined;
  try {
    warning = checkListenerSafety(config);
  } catch (err) {
    process.stderr.write(`ddpm-api: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const app = await buildApp({ config });
  if (warning) app.log.warn(warning);
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

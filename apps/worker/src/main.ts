/** The worker executable: `node apps/worker/dist/main.js` (config from the environment). */
import { loadServiceConfigOrExit } from '@ddpm/service';
import { createLogger } from '@ddpm/telemetry';

import { WorkerService } from './worker-service';

async function main(): Promise<void> {
  const config = loadServiceConfigOrExit('ddpm-worker');
  const logger = createLogger('ddpm-worker', config.logLevel);
  const service = new WorkerService({ config, logger });
  await service.start();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'signal received');
      service.close().then(
        () => process.exit(0),
        (err) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

void main();

/**
 * Submitting, listing, watching and cancelling jobs: HTTP in, the jobs service, HTTP out. The
 * routes are registered in this order, which is their order in the OpenAPI document.
 */
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';

import { registerCancelRoutes } from './jobs-cancel';
import { registerLogRoutes } from './jobs-logs';
import { registerReadRoutes } from './jobs-read';
import { registerRunRoutes } from './jobs-run';
import { registerSubmitRoutes } from './jobs-submit';

export const jobRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  registerSubmitRoutes(app);
  registerReadRoutes(app);
  registerCancelRoutes(app);
  registerRunRoutes(app);
  registerLogRoutes(app);
  done();
};

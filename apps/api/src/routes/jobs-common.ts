/** What the job routes share: the app they register on, and the job id in their paths. */
import { JOB_ID_PATTERN } from '@ddpm/service';
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';

/** The app as a route plugin sees it: schemas typed by TypeBox. */
export type JobsApp = Parameters<FastifyPluginCallbackTypebox>[0];

export const IdParams = Type.Object(
  { id: Type.String({ pattern: JOB_ID_PATTERN, description: 'a job id' }) },
  { additionalProperties: false },
);

/** Sample pictures and their metadata from the object store. */
import { hasCode } from '@ddpm/core';
import { sampleKey } from '@ddpm/storage/layout';
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';

const SAMPLE_FILE = '^([A-Za-z0-9][A-Za-z0-9_-]{0,127})(\\.png|\\.json)?$';

export const sampleRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  app.get(
    '/samples/:file',
    {
      schema: {
        summary:
          'a sample picture: /samples/ID (PNG) or /samples/ID.json (how it was made: checkpoint, step, sampler, seed, count)',
        params: Type.Object({ file: Type.String({ pattern: SAMPLE_FILE }) }, { additionalProperties: false }),
        response: {
          200: {
            description: 'the PNG, or its metadata',
            content: {
              'image/png': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) },
              'application/json': { schema: Type.Record(Type.String(), Type.Unknown()) },
            },
          },
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const [, id, extension] = new RegExp(SAMPLE_FILE).exec(request.params.file)!;
      const json = extension === '.json';
      try {
        const body = await app.ddpm.store.get(sampleKey(id!, json ? 'json' : 'png'));
        reply.header('content-type', json ? 'application/json' : 'image/png');
        // Behind a token a sample is the client's: no shared cache may keep it.
        reply.header(
          'cache-control',
          `${app.ddpm.config.apiToken ? 'private' : 'public'}, max-age=31536000, immutable`,
        );
        return reply.send(Buffer.from(body.buffer, body.byteOffset, body.length));
      } catch (err) {
        if (hasCode(err, 'DDPM_STORAGE_NOT_FOUND'))
          return reply.code(404).send({ error: 'not found', message: `no sample ${id}` });
        throw err;
      }
    },
  );
  done();
};

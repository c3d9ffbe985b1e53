/** Sample pictures and their metadata from the object store. */
import { hasCode } from '@ddpm/core';
import { sampleKey } from '@ddpm/jobs';
import { Type } from '@sinclair/typebox';
import { type FastifyInstance, type FastifyRequest } from 'fastify';

const SAMPLE_FILE = '^([A-Za-z0-9][A-Za-z0-9_-]{0,127})(\\.png|\\.json)?$';

export async function sampleRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    '/samples/:file',
    {
      schema: {
        summary: 'a sample grid: /samples/ID (PNG) or /samples/ID.json (metadata: checkpoint, step, seed, sampler, count)',
        params: Type.Object({ file: Type.String({ pattern: SAMPLE_FILE }) }, { additionalProperties: false }),
      },
    },
    async (request: FastifyRequest<{ Params: { file: string } }>, reply) => {
      const [, id, extension] = new RegExp(SAMPLE_FILE).exec(request.params.file)!;
      const json = extension === '.json';
      try {
        const body = await app.ddpm.store.get(sampleKey(id!, json ? 'json' : 'png'));
        reply.header('content-type', json ? 'application/json' : 'image/png');
        reply.header('cache-control', 'public, max-age=31536000, immutable');
        return reply.send(Buffer.from(body.buffer, body.byteOffset, body.length));
      } catch (err) {
        if (hasCode(err, 'DDPM_STORAGE_NOT_FOUND')) {
          return reply.code(404).send({ error: 'not found', message: `no sample ${id}` });
        }
        throw err;
      }
    },
  );
}

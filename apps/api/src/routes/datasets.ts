/**
 * Datasets in the object store, so users train on their own data without naming paths on the
 * workers (docs/security.md): `PUT /datasets/NAME` stores an IDX image file (gzipped
 * or not) or CIFAR-10 binary records under `datasets/NAME`, checked by content first; a job names
 * it as `store:NAME`.
 */
import { createGunzip } from 'node:zlib';

import { STORE_DATASET_NAME } from '@ddpm/data/spec';
import {
  IDX_HEADER_BYTES,
  cifar10Problem,
  idxImagesProblem,
  isGzip,
  looksLikeCifar10,
  looksLikeIdxImages,
} from '@ddpm/data/formats';
import { DATASETS_PREFIX, datasetKey } from '@ddpm/storage/layout';
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';

const NameParams = Type.Object(
  { name: Type.String({ pattern: STORE_DATASET_NAME.source, description: 'the dataset name, used as store:NAME' }) },
  { additionalProperties: false },
);
const DatasetInfo = Type.Object(
  { name: Type.String(), bytes: Type.Integer(), spec: Type.String({ description: 'what a job names it by' }) },
  { additionalProperties: false },
);

/**
 * A gzip stream's content length and first bytes, inflating it without keeping more than the
 * head; stops (`over`) once the content passes `maxBytes`. Undefined when the stream is corrupt.
 */
function gunzipMeasure(
  body: Buffer,
  headBytes: number,
  maxBytes: number,
): Promise<{ head: Buffer; length: number; over: boolean } | undefined> {
  return new Promise((resolve) => {
    const gunzip = createGunzip();
    const chunks: Buffer[] = [];
    let have = 0;
    let length = 0;
    const finish = (result: { head: Buffer; length: number; over: boolean } | undefined): void => {
      gunzip.removeAllListeners();
      gunzip.on('error', () => undefined);
      gunzip.destroy();
      resolve(result);
    };
    const measured = (over: boolean) => ({ head: Buffer.concat(chunks).subarray(0, headBytes), length, over });
    gunzip.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (have < headBytes) {
        chunks.push(chunk.subarray(0, headBytes - have));
        have += Math.min(chunk.length, headBytes - have);
      }
      if (length > maxBytes) finish(measured(true));
    });
    gunzip.on('end', () => finish(measured(false)));
    gunzip.on('error', () => finish(undefined));
    gunzip.end(body);
  });
}

/** What is wrong with an upload's content, or undefined when it is a dataset we can open. */
async function uploadProblem(body: Buffer, maxContentBytes: number): Promise<string | undefined> {
  if (body.length === 0) return 'the body is empty';
  if (isGzip(body)) {
    const content = await gunzipMeasure(body, IDX_HEADER_BYTES, maxContentBytes);
    if (content === undefined) return 'the gzip stream is corrupt or truncated';
    if (!looksLikeIdxImages(content.head))
      return 'gzip content is not an IDX image file (magic 00 00 08 03); gzipped CIFAR-10 is not accepted, upload the .bin records';
    if (content.over)
      return `its content is over ${Math.floor(maxContentBytes / 2 ** 20)} MiB unzipped (DDPM_DATA_MAX_FILE_MB)`;
    return idxImagesProblem(content.head, content.length);
  }
  if (looksLikeIdxImages(body)) return idxImagesProblem(body, body.length);
  if (looksLikeCifar10(body.length)) return cifar10Problem(body);
  return `the body (${body.length} bytes) is neither an IDX image file (magic 00 00 08 03) nor CIFAR-10 binary records (a multiple of 3073 bytes)`;
}

export const datasetRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  const { store, config } = app.ddpm;
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer', bodyLimit: config.maxUploadBytes },
    (_request, body, done) => done(null, body),
  );

  app.put(
    '/datasets/:name',
    {
      bodyLimit: config.maxUploadBytes,
      schema: {
        summary:
          'store a dataset (Content-Type: application/octet-stream): an IDX image file, gzipped or not, or CIFAR-10 binary records; jobs name it store:NAME',
        params: NameParams,
        response: { 201: DatasetInfo, 400: ErrorBody, 413: ErrorBody, 415: ErrorBody, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (!Buffer.isBuffer(body))
        return reply.code(415).send({
          error: 'unsupported media type',
          message: 'send the dataset as Content-Type: application/octet-stream',
        });
      const problem = await uploadProblem(body, config.dataMaxFileBytes);
      if (problem) return reply.code(400).send({ error: 'invalid request', message: `not a dataset: ${problem}` });
      await store.put(datasetKey(request.params.name), body, { contentType: 'application/octet-stream' });
      request.log.info({ dataset: request.params.name, bytes: body.length }, 'dataset stored');
      return reply
        .code(201)
        .send({ name: request.params.name, bytes: body.length, spec: `store:${request.params.name}` });
    },
  );

  app.get(
    '/datasets',
    {
      schema: {
        summary: 'the datasets in the object store',
        response: {
          200: Type.Object({ datasets: Type.Array(DatasetInfo) }, { additionalProperties: false }),
          ...COMMON_ERRORS,
        },
      },
    },
    async () => {
      const objects = await store.list(DATASETS_PREFIX);
      const datasets = objects
        .map((o) => ({ name: o.key.slice(DATASETS_PREFIX.length), bytes: o.size }))
        .filter((d) => STORE_DATASET_NAME.test(d.name))
        .map((d) => ({ ...d, spec: `store:${d.name}` }));
      return { datasets };
    },
  );

  app.delete(
    '/datasets/:name',
    {
      schema: {
        summary: 'remove a dataset from the object store',
        params: NameParams,
        response: { 204: Type.Null(), 400: ErrorBody, 404: ErrorBody, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const key = datasetKey(request.params.name);
      if (!(await store.exists(key)))
        return reply.code(404).send({ error: 'not found', message: `no dataset ${request.params.name}` });
      await store.delete(key);
      return reply.code(204).send(null);
    },
  );
  done();
};

/**
 * The web console (apps/console), served by the API itself: `/` redirects to `/ui/`; every page
 * under `/ui/` is the same shell (`index.html`, never cached, so that a new build is picked up at
 * once), which routes on the client; `/ui/assets/*` are its scripts and styles, whose names carry
 * their content hash, so they are cached for good. The shell and its assets hold no data and need
 * no token: the console asks for the token and sends it with every API request it makes. A strict
 * Content-Security-Policy allows scripts, styles and connections to this origin only, and images
 * from it and from data: URLs (a grid fetched with the token becomes a data: URL).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { type FastifyReply, type FastifyRequest } from 'fastify';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const ASSET = /^[a-z]+-[A-Z0-9]{8}\.(js|css)$/;
const TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

/** Where the console's build is by default: apps/console/dist next to this app (DDPM_CONSOLE_DIR overrides it). */
export function defaultConsoleDir(): string {
  return path.resolve(__dirname, '..', '..', '..', 'console', 'dist');
}

export const consoleRoutes: FastifyPluginCallbackTypebox<{ dir: string }> = (app, options, done) => {
  const dir = options.dir;
  const security = (reply: { header(name: string, value: string): unknown }): void => {
    reply.header('content-security-policy', CONSOLE_CSP);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
  };
  let shell: Promise<Buffer> | undefined;
  const page = async (): Promise<Buffer | undefined> => {
    shell ??= fs.readFile(path.join(dir, 'index.html'));
    return shell.catch(() => {
      shell = undefined;
      return undefined;
    });
  };

  app.get('/', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/ui/', 302));

  const servePage = async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const body = await page();
    if (body === undefined)
      return reply.code(503).send({
        error: 'unavailable',
        message: 'the web console is not built on this server (npm run build builds it)',
      });
    security(reply);
    return reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-cache').send(body);
  };
  app.get('/ui', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/ui/', 301));
  app.get('/ui/', { schema: { hide: true } }, servePage);
  app.get('/ui/jobs/:id', { schema: { hide: true, params: Type.Object({ id: Type.String() }) } }, servePage);
  app.get('/ui/submit', { schema: { hide: true } }, servePage);
  app.get('/ui/models', { schema: { hide: true } }, servePage);

  app.get(
    '/ui/assets/:file',
    { schema: { hide: true, params: Type.Object({ file: Type.String({ maxLength: 64 }) }) } },
    async (request, reply) => {
      const file = request.params.file;
      if (!ASSET.test(file)) return reply.code(404).send({ error: 'not found', message: 'no such console asset' });
      let body: Buffer;
      try {
        body = await fs.readFile(path.join(dir, 'assets', file));
      } catch {
        return reply.code(404).send({ error: 'not found', message: 'no such console asset' });
      }
      security(reply);
      return reply
        .header('content-type', TYPES[file.slice(file.lastIndexOf('.') + 1)]!)
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(body);
    },
  );
  done();
};

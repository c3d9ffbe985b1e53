/**
 * A worker's HTTP listener: `/metrics` for Prometheus, `/healthz` (liveness: this event loop
 * answers and no job process is wedged) and `/readyz` (ready to take work).
 */
import * as http from 'node:http';

import { type Registry } from '@ddpm/telemetry';

export interface WorkerHttpOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly registry: Registry;
  /** Liveness: 503 with `status` unless `ok`; `details` (which jobs run here) only for callers allowed to see them. */
  health(authorization: string | undefined): { ok: boolean; body: Record<string, unknown> };
  /** Readiness, with what it was judged on. */
  ready(): Promise<{ ok: boolean; body: Record<string, unknown> }>;
}

function json(res: http.ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function serve(options: WorkerHttpOptions, req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url === '/metrics') {
    options.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': options.registry.contentType });
        res.end(text);
      },
      () => {
        res.writeHead(500);
        res.end();
      },
    );
  } else if (req.url === '/healthz') {
    const { ok, body } = options.health(req.headers.authorization);
    json(res, ok ? 200 : 503, body);
  } else if (req.url === '/readyz') {
    void options.ready().then(({ ok, body }) => json(res, ok ? 200 : 503, body));
  } else {
    res.writeHead(404);
    res.end();
  }
}

/** Starts the listener; resolves with it and the port it listens on. */
export async function startWorkerHttp(options: WorkerHttpOptions): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => serve(options, req, res));
  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : options.port };
}

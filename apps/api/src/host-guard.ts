/**
 * Which names the API answers to, which pages may change its state, and where its links point.
 *
 * An API without a token trusts whoever reaches it, which on loopback means this machine's users.
 * A web page cannot send it a bearer token, but without a check it could still drive it: its
 * script talks to a name of the attacker's that resolves to 127.0.0.1 (DNS rebinding), and the
 * browser sends that name as `Host` and the page's origin as `Origin`. So:
 *
 * - without a token, a request must name in `Host` a name this API serves: the loopback names,
 *   the listener's address (every interface's when it listens on all of them), the host of
 *   DDPM_PUBLIC_URL, and DDPM_ALLOWED_HOSTS. The probes and /metrics answer any name (they change
 *   nothing and tell nothing about jobs), so a scraper may use whatever name it knows;
 * - a request that changes state (not GET, HEAD or OPTIONS) and carries an `Origin` must come
 *   from this API's own origin or an allowed host's, token or not;
 * - links in responses start with DDPM_PUBLIC_URL when set, else with the request's `Host` when
 *   that is an allowed name, else they are paths (`/jobs/ID`): never an arbitrary name a client sent.
 */
import * as os from 'node:os';

import { type ServiceConfig, isLoopback } from '@ddpm/service';
import { type FastifyReply, type FastifyRequest } from 'fastify';

/** Methods that only read. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The hostname of a `Host` header or an origin's authority (lower case, IPv6 in brackets), if it is one. */
export function hostnameOf(authority: string | undefined): string | undefined {
  if (authority === undefined || authority === '' || /[/?#@\\\s]/.test(authority)) return undefined;
  try {
    const url = new URL(`http://${authority}`);
    return url.host === authority.toLowerCase() || url.host === authority.toLowerCase().replace(/:80$/, '')
      ? url.hostname
      : undefined;
  } catch {
    return undefined;
  }
}

/** Brackets an IPv6 address as URLs and Host headers write it. */
const bracketed = (address: string): string => (address.includes(':') ? `[${address.toLowerCase()}]` : address);

const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::' || host === '[::]' || host === '';

export class HostGuard {
  private readonly names: ReadonlySet<string>;
  private readonly publicOrigin: string | undefined;

  constructor(private readonly config: ServiceConfig) {
    const names = new Set<string>(['localhost', '127.0.0.1', '[::1]', ...config.allowedHosts]);
    if (isWildcard(config.host)) {
      for (const addresses of Object.values(os.networkInterfaces()))
        for (const a of addresses ?? []) names.add(bracketed(a.address));
    } else {
      names.add(bracketed(config.host.toLowerCase()));
    }
    if (config.publicUrl !== undefined) {
      const url = new URL(config.publicUrl);
      names.add(url.hostname);
      this.publicOrigin = url.origin;
    }
    this.names = names;
  }

  /** Whether `hostname` (as {@link hostnameOf} gives it) is a name this API serves. */
  serves(hostname: string | undefined): boolean {
    if (hostname === undefined) return false;
    // Every 127.0.0.0/8 address is this machine, as the listener's own check has it.
    return this.names.has(hostname) || (isLoopback(hostname) && hostname !== 'localhost');
  }

  /**
   * The reason to refuse a request, or undefined to let it through. `open` routes (the probes,
   * /metrics) skip the Host check but not the Origin check.
   */
  refusal(request: FastifyRequest, open: boolean): string | undefined {
    const host = request.headers.host;
    if (!open && this.config.apiToken === undefined && !this.serves(hostnameOf(host))) {
      return (
        `Host ${JSON.stringify(host ?? '')} is not a name this API serves without a token ` +
        '(it answers its loopback names and its listener’s address): add the name to DDPM_ALLOWED_HOSTS, or set DDPM_API_TOKEN'
      );
    }
    const origin = request.headers.origin;
    if (origin !== undefined && !SAFE_METHODS.has(request.method) && !this.allowsOrigin(origin, host)) {
      return (
        `Origin ${JSON.stringify(origin)} may not change state here: only pages of this API’s own origin ` +
        'or of DDPM_PUBLIC_URL and DDPM_ALLOWED_HOSTS may'
      );
    }
    return undefined;
  }

  private allowsOrigin(origin: string, host: string | undefined): boolean {
    if (origin === this.publicOrigin) return true;
    const match = /^https?:\/\/([^/]+)$/.exec(origin);
    if (match === null) return false; // "null" (a sandboxed or file: page), or not an origin at all
    const authority = match[1]!.toLowerCase();
    // Same origin: the page was served by the name the request is sent to.
    if (host !== undefined && authority === host.toLowerCase()) return true;
    return this.serves(hostnameOf(authority));
  }

  /** The base of the links in a response to `request` ('' for paths). */
  baseUrl(request: FastifyRequest): string {
    if (this.config.publicUrl !== undefined) return this.config.publicUrl;
    const host = request.headers.host;
    return this.serves(hostnameOf(host)) ? `${request.protocol}://${host!}` : '';
  }

  /** Sends the refusal: 403, saying why. */
  static refuse(reply: FastifyReply, message: string): FastifyReply {
    return reply.code(403).send({ error: 'forbidden', message });
  }
}

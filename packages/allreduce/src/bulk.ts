/**
 * A lean Redis connection for the all-reduce's large values (RESP2 over plain TCP): a value goes
 * out as the caller's own bytes (no copy in JavaScript: the kernel copies it once), and a value
 * read comes straight into a buffer the caller keeps for it (no per-reply allocation: ioredis
 * gathers a large reply's socket chunks and concatenates them into a fresh buffer, and builds a
 * fresh buffer for every command with a large argument). Those copies, their allocations and the
 * collections they bring were ~60% of a rank's CPU time in a 64 MB all-reduce on our 2-core
 * machines, where the ranks share the cores with Redis.
 *
 * It speaks only what the collective needs: commands of strings and buffers, replies that are
 * statuses, integers, errors or bulk strings. Commands are pipelined; replies resolve in order.
 * A lost connection fails every command in flight (DDPM_GROUP_LOST: the generation ends, as on
 * ioredis); the next command connects again.
 */
import * as net from 'node:net';

import { collectiveError } from './errors';

/** Where a plain-TCP data plane is, and how to log in: undefined for what this connection does not speak (TLS, a socket path). */
export interface BulkTarget {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
}

/**
 * The target of a `redis://` URL with the credentials and database of the URL or of ioredis
 * options; undefined for `rediss://` (TLS), socket paths and anything else (ioredis then carries
 * the values too).
 */
export function bulkTarget(
  url: string,
  options: {
    username?: string | undefined;
    password?: string | undefined;
    db?: number | undefined;
    tls?: unknown;
  } = {},
): BulkTarget | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'redis:' || options.tls !== undefined || parsed.hostname === '') return undefined;
  const username = options.username ?? (parsed.username !== '' ? decodeURIComponent(parsed.username) : undefined);
  const password = options.password ?? (parsed.password !== '' ? decodeURIComponent(parsed.password) : undefined);
  const path = parsed.pathname.replace(/^\//, '');
  const db = options.db ?? (path !== '' ? Number(path) : undefined);
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) return undefined;
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port !== '' ? Number(parsed.port) : 6379,
    ...(username !== undefined && username !== 'default' ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(db !== undefined && db !== 0 ? { db } : {}),
  };
}

type Arg = string | number | Uint8Array;
type Reply = string | number | Buffer | null;

interface Pending {
  /** Logging in (AUTH, SELECT): a refusal fails the connection and everything behind it. */
  readonly login?: boolean;
  /** Where a bulk reply of `length` bytes goes (the first `length` bytes of the buffer returned); default: a new buffer. */
  readonly into?: (length: number) => Buffer;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (err: Error) => void;
}

const CRLF = '\r\n';
/** The socket's read buffer: replies are copied from it as they arrive. */
const READ_BUFFER_BYTES = 1 << 20;
/** A header line (`$12345678\r\n`, `-ERR …`) longer than this is not Redis speaking. */
const MAX_LINE_BYTES = 64 * 1024;

export class BulkConnection {
  private socket: net.Socket | undefined;
  private readonly pending: Pending[] = [];
  /** The header line read so far. */
  private line: number[] = [];
  /** The bulk reply being read: the buffer it goes to, the bytes in so far, and its length (its CRLF follows: skipCrlf). */
  private payload: { buffer: Buffer; filled: number; length: number } | undefined;
  private skipCrlf = 0;
  /** The bulk reply whose bytes are all in, waiting for its CRLF. */
  private lastBulk: Buffer | undefined;
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

  constructor(
    private readonly target: BulkTarget,
    private readonly connectTimeoutMs = 10_000,
  ) {}

  /** One command; a bulk reply lands in `into(length)` when given. */
  command(args: readonly Arg[], into?: (length: number) => Buffer): Promise<Reply> {
    return this.send(args, into === undefined ? {} : { into });
  }

  /**
   * One command, and when its bytes have left this process (handed to the kernel): a writer that
   * goes on to its next destination then, rather than after the reply, keeps its link busy through
   * the round trip.
   */
  commandWritten(args: readonly Arg[]): { reply: Promise<Reply>; written: Promise<void> } {
    let onWritten!: () => void;
    const written = new Promise<void>((resolve) => (onWritten = resolve));
    const reply = this.send(args, { onWritten });
    // A command that fails before it is written (no connection) is not waited for.
    reply.catch(onWritten);
    return { reply, written };
  }

  private send(
    args: readonly Arg[],
    options: { into?: (length: number) => Buffer; login?: boolean; onWritten?: () => void },
  ): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      let socket: net.Socket;
      try {
        socket = this.connected();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const { onWritten, ...pending } = options;
      this.pending.push({ resolve, reject, ...pending });
      socket.cork();
      let text = `*${args.length}${CRLF}`;
      for (const arg of args) {
        if (typeof arg === 'string' || typeof arg === 'number') {
          const s = String(arg);
          text += `$${Buffer.byteLength(s)}${CRLF}${s}${CRLF}`;
        } else {
          socket.write(`${text}$${arg.byteLength}${CRLF}`);
          socket.write(arg);
          text = CRLF;
        }
      }
      socket.write(text, onWritten);
      socket.uncork();
    });
  }

  /** Closes the connection; commands in flight fail. */
  close(): void {
    this.fail(new Error('the connection was closed'));
  }

  private connected(): net.Socket {
    if (this.socket !== undefined) return this.socket;
    const { host, port, username, password, db } = this.target;
    const socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: this.readBuffer,
        callback: (bytes: number, buffer: Uint8Array) => {
          try {
            this.consume(buffer as Buffer, bytes);
          } catch (err) {
            this.fail(err as Error);
          }
          return true;
        },
      },
    });
    this.socket = socket;
    socket.setTimeout(this.connectTimeoutMs, () =>
      socket.destroy(new Error(`no connection to ${host}:${port} within ${this.connectTimeoutMs} ms`)),
    );
    socket.once('connect', () => socket.setTimeout(0));
    socket.on('error', (err) => this.fail(err, socket));
    socket.on('close', () => this.fail(new Error('the connection closed'), socket));
    // Logging in goes first in the pipeline; a refusal fails the commands behind it too (header()).
    const ignore = (): void => undefined;
    if (password !== undefined)
      this.send(username !== undefined ? ['AUTH', username, password] : ['AUTH', password], { login: true }).catch(
        ignore,
      );
    if (db !== undefined) this.send(['SELECT', db], { login: true }).catch(ignore);
    return socket;
  }

  /** Fails every command in flight and forgets the socket (`socket`: only if it is still the current one). */
  private fail(err: Error, socket?: net.Socket): void {
    if (socket !== undefined && socket !== this.socket) return;
    const current = this.socket;
    this.socket = undefined;
    this.line = [];
    this.payload = undefined;
    this.skipCrlf = 0;
    const lost = collectiveError('DDPM_GROUP_LOST', `the data plane failed: ${err.message}`);
    for (const p of this.pending.splice(0)) p.reject(lost);
    current?.destroy();
  }

  /** Parses `bytes` bytes of `chunk`, resolving replies as they complete. */
  private consume(chunk: Buffer, bytes: number): void {
    let i = 0;
    const socket = this.socket;
    // A refused login fails the connection mid-chunk: what follows is not for anyone.
    while (i < bytes && this.socket === socket && socket !== undefined) {
      if (this.payload !== undefined) {
        const p = this.payload;
        const n = Math.min(bytes - i, p.length - p.filled);
        chunk.copy(p.buffer, p.filled, i, i + n);
        p.filled += n;
        i += n;
        if (p.filled === p.length) {
          this.payload = undefined;
          this.skipCrlf = 2;
        }
        continue;
      }
      if (this.skipCrlf > 0) {
        const n = Math.min(this.skipCrlf, bytes - i);
        this.skipCrlf -= n;
        i += n;
        if (this.skipCrlf === 0) {
          const value = this.lastBulk!;
          this.lastBulk = undefined;
          this.settle(value);
        }
        continue;
      }
      const newline = chunk.indexOf(10, i);
      const end = newline === -1 || newline >= bytes ? bytes : newline + 1;
      for (let k = i; k < end; k++) this.line.push(chunk[k]!);
      if (this.line.length > MAX_LINE_BYTES) throw new Error('a reply line longer than 64 KiB: not a Redis server');
      i = end;
      if (end === newline + 1) this.header(Buffer.from(this.line).toString('utf8', 0, this.line.length - 2));
    }
  }

  private header(line: string): void {
    this.line = [];
    const type = line[0];
    const rest = line.slice(1);
    switch (type) {
      case '+':
        this.settle(rest);
        return;
      case ':':
        this.settle(Number(rest));
        return;
      case '-': {
        const p = this.pending.shift();
        if (p?.login) this.fail(new Error(`the data plane refused the login: ${rest}`));
        p?.reject(collectiveError('DDPM_GROUP_LOST', `the data plane failed a command: ${rest}`));
        return;
      }
      case '$': {
        const length = Number(rest);
        if (length === -1) {
          this.settle(null);
          return;
        }
        if (!Number.isInteger(length) || length < 0) throw new Error(`a bulk reply of length ${rest}`);
        const into = this.pending[0]?.into;
        const buffer = into ? into(length) : Buffer.allocUnsafe(length);
        if (buffer.length < length)
          throw new Error(`internal error: ${buffer.length} bytes for a ${length}-byte reply`);
        this.lastBulk = buffer.subarray(0, length);
        if (length === 0) this.skipCrlf = 2;
        else this.payload = { buffer, filled: 0, length };
        return;
      }
      default:
        throw new Error(`an unexpected reply from the data plane: ${line.slice(0, 80)}`);
    }
  }

  private settle(reply: Reply): void {
    const p = this.pending.shift();
    if (p === undefined) throw new Error('a reply nobody asked for');
    p.resolve(reply);
  }
}

/**
 * One error type for the whole project. Every error we raise on purpose carries a stable `code`
 * (what went wrong, for programs) and a `kind` (what can be done about it), so the worker decides
 * retry or not, the API decides the HTTP status, and the CLI decides its exit status from the
 * error itself: nobody keeps lists of codes.
 *
 * Each package declares its codes once, with their kinds, through {@link errorCodes}.
 */

/**
 * - `invalid`: the request, configuration or input is wrong; retrying the same thing fails again.
 * - `not-found`: something named does not exist (a checkpoint, a dataset file); permanent too.
 * - `conflict`: the request contradicts the state (an idempotency key reused for another body).
 * - `unavailable`: an infrastructure fault (storage, Redis, a backend that did not load); a retry,
 *   possibly elsewhere, may succeed.
 * - `aborted`: stopped on purpose (cancellation, shutdown): neither a failure nor a retry.
 */
export type ErrorKind = 'invalid' | 'not-found' | 'conflict' | 'unavailable' | 'aborted';
export const ERROR_KINDS: readonly ErrorKind[] = ['invalid', 'not-found', 'conflict', 'unavailable', 'aborted'];

/** Whether an error of this kind fails again on retry (so a job must fail once, not be retried). */
export function isPermanent(kind: ErrorKind): boolean {
  switch (kind) {
    case 'invalid':
    case 'not-found':
    case 'conflict':
      return true;
    case 'unavailable':
    case 'aborted':
      return false;
    default: {
      const unreachable: never = kind;
      throw new Error(`unknown error kind ${String(unreachable)}`);
    }
  }
}

export class CodedError<C extends string = string> extends Error {
  readonly code: C;
  readonly kind: ErrorKind;

  constructor(code: C, kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CodedError';
    this.code = code;
    this.kind = kind;
  }

  /** True when retrying cannot help (see {@link isPermanent}). */
  get permanent(): boolean {
    return isPermanent(this.kind);
  }

  /** What crosses a process boundary (IPC, a job's failure record). */
  toJSON(): { code: C; kind: ErrorKind; message: string } {
    return { code: this.code, kind: this.kind, message: this.message };
  }
}

/** A factory for one package's codes: `const fail = errorCodes({ DDPM_X: 'invalid' }); throw fail('DDPM_X', '...')`. */
export type ErrorFactory<C extends string> = (code: C, message: string, options?: { cause?: unknown }) => CodedError<C>;

/** Declares a package's error codes with their kinds, once. */
export function errorCodes<C extends string>(kinds: Readonly<Record<C, ErrorKind>>): ErrorFactory<C> {
  return (code, message, options) => new CodedError(code, kinds[code], message, options);
}

/** Whether `err` is one of our errors with this code. */
export function hasCode(err: unknown, code: string): err is CodedError {
  return err instanceof CodedError && err.code === code;
}

/** The code and kind of anything thrown, for errors that crossed a process boundary as plain data. */
export function codedErrorOf(err: unknown): CodedError | undefined {
  if (err instanceof CodedError) return err;
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, kind, message } = err as { code?: unknown; kind?: unknown; message?: unknown };
  if (typeof code !== 'string' || typeof kind !== 'string' || !(ERROR_KINDS as readonly string[]).includes(kind))
    return undefined;
  return new CodedError(code, kind as ErrorKind, typeof message === 'string' ? message : code);
}

/**
 * How errors become responses: our own errors by their kind (a bad request 400, a missing thing
 * 404, a conflict 409, an outage 503), Fastify's own 4xx as they are, and anything else a 500 that
 * tells the client only its request id (details go to the log).
 */
import { type ErrorKind } from '@ddpm/core';
import { type Static, Type } from '@sinclair/typebox';

import { component } from './components';

const ErrorBodySchema = Type.Object(
  {
    error: Type.String({
      description: 'what kind of failure: invalid request, not found, conflict, unauthorized, internal error...',
    }),
    message: Type.Optional(Type.String({ description: 'what is wrong, naming the field or value' })),
    requestId: Type.Optional(
      Type.String({ description: 'for 5xx: quote it to the operator; the details are in the server log' }),
    ),
  },
  { additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBodySchema>;
export const ErrorBody = component('ErrorBody', ErrorBodySchema).ref;

export function statusOf(kind: ErrorKind): { status: number; error: string } {
  switch (kind) {
    case 'invalid':
      return { status: 400, error: 'invalid request' };
    case 'not-found':
      return { status: 404, error: 'not found' };
    case 'conflict':
      return { status: 409, error: 'conflict' };
    case 'unavailable':
    case 'aborted':
      return { status: 503, error: 'unavailable' };
    default: {
      const unreachable: never = kind;
      return { status: 500, error: String(unreachable) };
    }
  }
}

/** The error responses every route may give, for the OpenAPI document. */
export const COMMON_ERRORS = {
  401: ErrorBody,
  /** A foreign Host on a tokenless API, or a foreign Origin on a state-changing request. */
  403: ErrorBody,
  500: ErrorBody,
  /** Redis (the queues) away: retry after the Retry-After header's seconds. */
  503: ErrorBody,
} as const;

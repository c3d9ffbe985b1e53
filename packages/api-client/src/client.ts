/**
 * The job API's client, for `ddpm jobs …`, the service demo, the quality study and the tests. Built
 * with openapi-fetch on types generated from the document the API serves (api-types.generated.ts),
 * so a route or schema change that this client does not follow fails to compile.
 */
import { CodedError, errorCodes } from '@ddpm/core';
import createClient, { type Client } from 'openapi-fetch';

import { type components, type paths } from './api-types.generated';

/** A client used wrongly (an address that is no URL): the caller's mistake, not the API's answer. */
const clientError = errorCodes({ DDPM_API_CLIENT_INVALID: 'invalid' });

export type JobView = components['schemas']['JobView'];
export type ErrorBody = components['schemas']['ErrorBody'];
export type TrainRequest = components['schemas']['TrainRequest'];
export type SampleRequest = components['schemas']['SampleRequest'];
export type EvalRequest = components['schemas']['EvalRequest'];
export type MetricsHistory = paths['/jobs/{id}/metrics']['get']['responses'][200]['content']['application/json'];
export type ListQuery = NonNullable<paths['/jobs']['get']['parameters']['query']>;

/** A request of one job type, as `ddpm jobs submit` builds it. */
export type Submission =
  { type: 'train'; body: TrainRequest } | { type: 'sample'; body: SampleRequest } | { type: 'eval'; body: EvalRequest };

export interface ApiClientOptions {
  readonly baseUrl: string;
  readonly token?: string;
}

/** The API answered with an error (or could not be reached: status 0); the kind follows the status. */
export class ApiError extends CodedError<'DDPM_API_ERROR'> {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(
      'DDPM_API_ERROR',
      status === 404
        ? 'not-found'
        : status === 409
          ? 'conflict'
          : status >= 400 && status < 500
            ? 'invalid'
            : 'unavailable',
      message,
    );
    this.name = 'ApiError';
  }
}

export const FINAL_STATES: ReadonlySet<JobView['state']> = new Set(['completed', 'cancelled', 'failed']);

export class ApiClient {
  private readonly client: Client<paths>;

  /** A link from a response as a full URL (the API gives paths when it cannot know its own name). */
  absolute(link: string): string {
    return new URL(link, `${this.options.baseUrl.replace(/\/+$/, '')}/`).toString();
  }

  constructor(private readonly options: ApiClientOptions) {
    try {
      new URL(options.baseUrl);
    } catch {
      throw clientError(
        'DDPM_API_CLIENT_INVALID',
        `the API's address must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(options.baseUrl)}`,
      );
    }
    this.client = createClient<paths>({
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    });
  }

  /** The data of a response, or an ApiError saying what the API answered (or why it could not be reached). */
  private async unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
    let result: { data?: T; error?: unknown; response: Response };
    try {
      result = await call;
    } catch (err) {
      const cause = (err as Error & { cause?: unknown }).cause;
      const why =
        cause instanceof Error ? cause.message : cause !== undefined ? JSON.stringify(cause) : (err as Error).message;
      throw new ApiError(0, `cannot reach the API at ${this.options.baseUrl}: ${why}`);
    }
    const { data, error, response } = result;
    if (!response.ok || data === undefined) {
      const body = (typeof error === 'object' && error !== null ? error : {}) as Partial<ErrorBody>;
      const detail = body.message ?? body.error ?? response.statusText;
      throw new ApiError(
        response.status,
        `${response.status}: ${detail}${body.requestId ? ` (request ${body.requestId})` : ''}`,
      );
    }
    return data;
  }

  async submit(submission: Submission, idempotencyKey?: string): Promise<JobView> {
    const params = { header: idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey } };
    switch (submission.type) {
      case 'train':
        return this.unwrap(this.client.POST('/jobs/train', { body: submission.body, params }));
      case 'sample':
        return this.unwrap(this.client.POST('/jobs/sample', { body: submission.body, params }));
      case 'eval':
        return this.unwrap(this.client.POST('/jobs/eval', { body: submission.body, params }));
      default: {
        const unreachable: never = submission;
        throw clientError('DDPM_API_CLIENT_INVALID', `unknown job type ${JSON.stringify(unreachable)}`);
      }
    }
  }

  job(id: string): Promise<JobView> {
    return this.unwrap(this.client.GET('/jobs/{id}', { params: { path: { id } } }));
  }

  cancel(id: string): Promise<JobView> {
    return this.unwrap(this.client.DELETE('/jobs/{id}', { params: { path: { id } } }));
  }

  list(query: ListQuery): Promise<{ jobs: JobView[]; limit: number; offset: number }> {
    return this.unwrap(this.client.GET('/jobs', { params: { query } }));
  }

  /** A train job's evaluations during training and the URLs of their curves. */
  metrics(id: string): Promise<MetricsHistory> {
    return this.unwrap(this.client.GET('/jobs/{id}/metrics', { params: { path: { id } } }));
  }

  async logs(id: string): Promise<string> {
    return this.unwrap(this.client.GET('/jobs/{id}/logs', { params: { path: { id }, query: {} }, parseAs: 'text' }));
  }

  /** A sample PNG (`/samples/ID`) or its metadata (`ID.json`) as bytes. */
  async sample(file: string): Promise<Uint8Array> {
    return new Uint8Array(
      await this.unwrap(this.client.GET('/samples/{file}', { params: { path: { file } }, parseAs: 'arrayBuffer' })),
    );
  }

  ready(): Promise<{ status: 'ready' | 'not ready'; redis: string }> {
    return this.unwrap(this.client.GET('/readyz'));
  }
}

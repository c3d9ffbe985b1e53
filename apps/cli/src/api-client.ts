/** A small client for the job API (used by `ddpm jobs …` and the service demo). */
import { CodedError } from '@ddpm/core';

import { CliUsageError } from './cli-io';

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
    super('DDPM_API_ERROR', status === 404 ? 'not-found' : status === 409 ? 'conflict' : status >= 400 && status < 500 ? 'invalid' : 'unavailable', message);
    this.name = 'ApiError';
  }
}

export class ApiClient {
  constructor(private readonly options: ApiClientOptions) {
    try {
      new URL(options.baseUrl);
    } catch {
      throw new CliUsageError(`--api must be a URL such as http://127.0.0.1:8080, got ${JSON.stringify(options.baseUrl)}`);
    }
  }

  private async request(method: string, path: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Response> {
    const headers: Record<string, string> = { ...extraHeaders };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.options.token) headers['authorization'] = `Bearer ${this.options.token}`;
    let response: Response;
    try {
      response = await fetch(new URL(path, this.options.baseUrl), { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (err) {
      throw new ApiError(0, `cannot reach the API at ${this.options.baseUrl}: ${(err as Error).cause ? String((err as Error & { cause: unknown }).cause) : (err as Error).message}`);
    }
    if (response.status >= 400) {
      let message = `${response.status} ${response.statusText}`;
      try {
        const json = (await response.json()) as { error?: string; message?: string };
        message = `${response.status}: ${json.message ?? json.error ?? message}`;
      } catch {
        // not JSON
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    return (await (await this.request(method, path, body, headers)).json()) as T;
  }

  async bytes(path: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.request('GET', path)).arrayBuffer());
  }

  async text(path: string): Promise<string> {
    return (await this.request('GET', path)).text();
  }
}

export interface JobViewLite {
  id: string;
  type: string;
  state: string;
  progress?: { phase: string; step: number; totalSteps: number; imagesPerSecond?: number; loss?: number; etaSeconds?: number };
  result?: { status: string; step?: number; samples?: string[]; checkpoint?: string };
  error?: string;
  links: { self: string; samples?: string[] };
}

export const FINAL_STATES = new Set(['completed', 'cancelled', 'failed']);

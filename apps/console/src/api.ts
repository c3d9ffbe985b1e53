/**
 * The API as the console uses it: the same origin, the bearer token (asked for once, kept in this
 * tab's sessionStorage, never put in a URL) on every request, errors as {@link ApiError}.
 */

import type { components, paths } from '@ddpm/api-client';

const TOKEN_KEY = 'ddpm-console-token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly label: string,
    message: string,
  ) {
    super(message);
  }
}

export function token(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function setToken(value: string | undefined): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called when the API answers 401: the console asks for the token. */
let onUnauthorized: () => void = () => undefined;
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

async function send(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set('authorization', `Bearer ${t}`);
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) onUnauthorized();
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
    throw new ApiError(
      response.status,
      body.error ?? response.statusText,
      body.message ?? body.error ?? `HTTP ${response.status}`,
    );
  }
  return response;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await send(path)).json() as Promise<T>;
}

export async function sendJson<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await send(path, {
    method,
    ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
  return response.json() as Promise<T>;
}

export async function getText(path: string): Promise<{ text: string; next: number | undefined }> {
  const response = await send(path);
  const next = response.headers.get('log-next');
  return { text: await response.text(), next: next === null ? undefined : Number(next) };
}

/**
 * An image of the API as a data: URL: fetched with the token (an <img src> could not send it),
 * shown under the console's policy (img-src 'self' data:).
 */
export async function imageData(url: string): Promise<string> {
  const blob = await (await send(new URL(url, location.href).pathname)).blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(typeof reader.result === 'string' ? reader.result : '');
    reader.onerror = () => reject(reader.error ?? new Error('the image could not be read'));
    reader.readAsDataURL(blob);
  });
}

/** The path of an API URL (links in responses are absolute; the console stays on its origin). */
export function pathOf(url: string): string {
  const u = new URL(url, location.href);
  return `${u.pathname}${u.search}`;
}

/** A job as the API shows it: the type generated from the API's OpenAPI document. */
export type JobView = components['schemas']['JobView'];
export type Progress = NonNullable<JobView['progress']>;

/** The body of a successful GET of `path` (a route of the API's document). */
export type Answer<P extends keyof paths> = paths[P] extends {
  get: { responses: { 200: { content: { 'application/json': infer T } } } };
}
  ? T
  : never;

export const FINAL_STATES = new Set(['completed', 'cancelled', 'failed']);

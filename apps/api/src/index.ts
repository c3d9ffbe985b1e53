/** @ddpm/api — the HTTP API as an app builder (tests use it with fastify.inject). */
export { type AppContext, type AppOptions, buildApp } from './app';
export { type JobView, type PublicState } from './job-view';
export { API_VERSION } from './app';

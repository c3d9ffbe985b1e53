/** @ddpm/telemetry — metrics and logs shared by the API and the workers. */
export { type TrainMetrics, createWorkerMetrics, registerQueueCounts } from './metrics';
export { type Logger, createLogger } from './logger';
export { Counter, Registry, collectDefaultMetrics } from 'prom-client';

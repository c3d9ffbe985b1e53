/** @ddpm/telemetry — metrics and logs shared by the API and the workers. */
export { type TrainMetrics, createWorkerMetrics, registerQueueCounts } from './metrics';
export { type Logger, createLogger } from './logger';
export { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

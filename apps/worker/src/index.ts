/** @ddpm/worker — the BullMQ worker, usable in-process by tests and the demo. */
export { WorkerService, type WorkerServiceOptions } from './worker-service';
export { type RunningJob, runJobInChild } from './job-runner';

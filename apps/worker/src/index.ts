/** @ddpm/worker — the BullMQ worker, usable in-process by tests and the demo. */
export { WorkerService, type WorkerServiceOptions } from './worker-service';
export { type ChildOutcome, type ChildRun, type RunningJob, residentBytes, runInChild } from './job-runner';
export { type GroupAssignment, generationFence } from './group';

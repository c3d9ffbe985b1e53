/**
 * Helpers for the long loops (sampling over T steps, the bound over T terms): they yield to the
 * event loop between network evaluations so progress callbacks, heartbeats and cancellation are
 * serviced, and they stop promptly when an AbortSignal fires.
 */
import { diffusionError } from '@ddpm/diffusion-config';

export interface LoopOptions {
  /** Aborts the loop between steps; the promise rejects with a `DDPM_ABORTED` error (kind `aborted`). */
  readonly signal?: AbortSignal;
  /** Called after each step with the number of steps done and the total. */
  readonly onProgress?: (done: number, total: number) => void;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? 'aborted');
    throw diffusionError('DDPM_ABORTED', `stopped: ${reason}`);
  }
}

/** Lets pending I/O callbacks run (setImmediate where available, else a zero timeout). */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
  return new Promise((resolve) => {
    if (typeof g.setImmediate === 'function') g.setImmediate(resolve);
    else setTimeout(resolve, 0);
  });
}

/** End-of-step bookkeeping shared by every loop: progress, yield, abort check. */
export async function afterStep(options: LoopOptions, done: number, total: number): Promise<void> {
  options.onProgress?.(done, total);
  if (options.signal !== undefined || options.onProgress !== undefined) await yieldToEventLoop();
  throwIfAborted(options.signal);
}

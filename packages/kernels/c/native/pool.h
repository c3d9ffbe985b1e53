/*
 * A pool of threads for the native kernels: `pool_run(tasks, fn, ctx)` runs fn(ctx, task,
 * scratch) for every task in [0, tasks) on the calling thread and the pool's, and returns when all
 * are done. Tasks are handed out in order from a shared counter; a kernel makes its tasks write
 * disjoint outputs, each computed the same way whichever thread runs it, so the results are the
 * same bits for any number of threads. `scratch` is the running thread's own buffer of at least
 * the floats `pool_run` was asked for.
 */
#ifndef DDPM_NATIVE_POOL_H
#define DDPM_NATIVE_POOL_H

typedef void (*pool_task)(void* ctx, long task, float* scratch);

/* Threads used by the kernels, the caller's included (1: everything on the caller's thread). */
void pool_set_threads(int threads);
int pool_threads(void);

/* Runs the tasks; returns 0, or -1 when scratch could not be allocated (nothing was run then). */
int pool_run(long tasks, pool_task fn, void* ctx, long scratch_floats);

#endif

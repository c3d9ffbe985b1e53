/* The native kernels' thread pool (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MAX_THREADS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static int wanted = 1;     /* threads, the caller's included */
static int started = 0;    /* pool threads running (wanted − 1 once grown) */
static long generation = 0;
static int busy = 0;       /* pool threads still working on this generation */

static pool_task job_fn;
static void* job_ctx;
static long job_tasks;
static int job_helpers; /* pool threads taking part (slots 1 … job_helpers) */
static atomic_long next_task;

/* Each thread's scratch: index 0 is the caller's. */
static float* scratch[MAX_THREADS];
static long scratch_size[MAX_THREADS];

static int ensure_scratch(int slot, long floats) {
  if (floats <= scratch_size[slot]) return 0;
  float* grown = realloc(scratch[slot], (size_t)floats * sizeof(float));
  if (!grown) return -1;
  scratch[slot] = grown;
  scratch_size[slot] = floats;
  return 0;
}

static void drain(int slot) {
  for (long t = atomic_fetch_add(&next_task, 1); t < job_tasks; t = atomic_fetch_add(&next_task, 1))
    job_fn(job_ctx, t, scratch[slot]);
}

static void* worker(void* arg) {
  const int slot = (int)(long)arg;
  long seen = 0;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (generation == seen) pthread_cond_wait(&wake, &lock);
    seen = generation;
    const int part = slot <= job_helpers;
    pthread_mutex_unlock(&lock);
    if (part) drain(slot);
    pthread_mutex_lock(&lock);
    if (--busy == 0) pthread_cond_signal(&done);
  }
  return NULL;
}

void pool_set_threads(int threads) {
  pthread_mutex_lock(&lock);
  wanted = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
  pthread_mutex_unlock(&lock);
}

int pool_threads(void) { return wanted; }

int pool_run(long tasks, pool_task fn, void* ctx, long scratch_floats) {
  pthread_mutex_lock(&lock);
  int helpers = (tasks > 1 ? (wanted < tasks ? wanted : (int)tasks) : 1) - 1;
  while (started < helpers) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, (void*)(long)(started + 1)) != 0) break;
    pthread_detach(thread);
    started++;
  }
  if (helpers > started) helpers = started; /* the system refused a thread: fewer of them */
  for (int slot = 0; slot <= helpers; slot++) {
    if (ensure_scratch(slot, scratch_floats) != 0) {
      pthread_mutex_unlock(&lock);
      return -1;
    }
  }
  job_fn = fn;
  job_ctx = ctx;
  job_tasks = tasks;
  job_helpers = helpers;
  atomic_store(&next_task, 0);
  /* Every started thread wakes for a generation; only slots 1 … helpers take tasks. */
  busy = helpers > 0 ? started : 0;
  if (helpers > 0) {
    generation++;
    pthread_cond_broadcast(&wake);
  }
  pthread_mutex_unlock(&lock);
  drain(0);
  pthread_mutex_lock(&lock);
  while (busy > 0) pthread_cond_wait(&done, &lock);
  pthread_mutex_unlock(&lock);
  return 0;
}

// A persistent pool of worker threads, each pinned to its own CPU.
//
// Why pinned: on the machines this project targets, a new thread starts on its
// creator's CPU and is not moved, so unpinned workers that spin on a barrier can
// end up sharing one core. The calling (Node main) thread takes part in every
// run as worker 0 and keeps the process's affinity (what it spawns inherits it);
// workers 1..n-1 are pinned to the CPUs of that mask, the main thread's current
// CPU last.
#pragma once
#include <stddef.h>

// fn(ctx, task, thread) runs once for each task in [0, ntasks); thread is in [0, pool_threads()).
typedef void (*pool_task_fn)(void *ctx, int task, int thread);

// The pool is one per process, shared by every JavaScript thread (main and worker_threads)
// that loads the addon. It does not nest and its runs share state, so every call into the
// addon holds the compute lock for its whole duration (export_fn in napi_util.h): two JS
// threads computing at once take turns, op by op.
void pool_lock(void);
void pool_unlock(void);
// Each Node environment (main thread, each Worker) that loads the addon adds itself, and
// releases itself in its cleanup hook; the pool is shut down only when the last one goes,
// so a Worker exiting never stops the pool another thread uses.
void pool_env_add(void);
void pool_env_release(void);

int pool_init(int nthreads);     // 0 = all CPUs of the affinity mask, capped at that count
                                 // (more threads than CPUs would only spin against each
                                 // other); returns the thread count
int pool_threads(void);          // current thread count (initializes with defaults if needed)
int pool_cpus(void);             // CPUs in the process's affinity mask
void pool_run(pool_task_fn fn, void *ctx, int ntasks);
void pool_shutdown(void);

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

int pool_init(int nthreads);     // 0 = all CPUs of the affinity mask; returns the thread count
int pool_threads(void);          // current thread count (initializes with defaults if needed)
int pool_cpus(void);             // CPUs in the process's affinity mask
void pool_run(pool_task_fn fn, void *ctx, int ntasks);
void pool_shutdown(void);

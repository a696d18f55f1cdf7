// Persistent, pinned thread pool. See pool.h for why pinning matters here.
//
// Protocol: the main thread publishes a run by writing fn/ctx/ntasks, then storing
// claim = (generation << 32) | 0. Everyone (main included) claims task indices with a
// compare-and-swap on claim that also checks the generation, so a late worker can never
// take a task of a newer run with an older run's function. Idle workers spin briefly
// (back-to-back ops in a training step arrive microseconds apart) and then sleep on a
// condition variable, so an idle process does not burn its cores.
#define _GNU_SOURCE
#include "pool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 256
#define SPIN_NS 2000000L  // how long an idle worker spins before sleeping (2 ms)

static int n_threads = 0;
static pthread_t workers[MAX_THREADS];
static int cpu_list[MAX_THREADS];
static int worker_cpu[MAX_THREADS];  // worker t (t >= 1) runs on worker_cpu[t - 1]
static int n_cpus = 0;

static pool_task_fn run_fn;
static void *run_ctx;
static int run_ntasks;
static _Atomic uint64_t claim;     // (generation << 32) | next task index
static _Atomic uint32_t published; // generation of the newest run
static _Atomic int done;           // tasks finished in the current run
static _Atomic int stopping;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int sleepers = 0;

// The compute lock (see pool.h) and the count of environments using the addon.
static pthread_mutex_t compute_mu = PTHREAD_MUTEX_INITIALIZER;
static int envs = 0;

void pool_lock(void) { pthread_mutex_lock(&compute_mu); }
void pool_unlock(void) { pthread_mutex_unlock(&compute_mu); }

void pool_env_add(void) {
  pool_lock();
  envs++;
  pool_unlock();
}

void pool_env_release(void) {
  pool_lock();
  if (--envs == 0) pool_shutdown();
  pool_unlock();
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#ifdef __linux__
static cpu_set_t main_mask;  // the main thread's affinity before the pool first pinned it
static int main_mask_saved = 0;
#endif

static void read_cpus(void) {
  n_cpus = 0;
#ifdef __linux__
  cpu_set_t set;
  if (main_mask_saved) {
    set = main_mask;
  } else if (sched_getaffinity(0, sizeof set, &set) == 0) {
    main_mask = set;
    main_mask_saved = 1;
  }
  if (main_mask_saved) {
    for (int c = 0; c < CPU_SETSIZE && n_cpus < MAX_THREADS; c++)
      if (CPU_ISSET(c, &set)) cpu_list[n_cpus++] = c;
  }
#endif
  if (n_cpus == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n_cpus = n > 0 ? (n > MAX_THREADS ? MAX_THREADS : (int)n) : 1;
    for (int c = 0; c < n_cpus; c++) cpu_list[c] = c;
  }
}

static void pin_self(int cpu) {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
#else
  (void)cpu;
#endif
}

// Claim and run tasks of generation gen until none are left.
static void work(uint32_t gen, int thread) {
  for (;;) {
    uint64_t c = atomic_load(&claim);
    if ((uint32_t)(c >> 32) != gen) return;
    int idx = (int)(uint32_t)c;
    pool_task_fn fn = run_fn;
    void *ctx = run_ctx;
    if (idx >= run_ntasks) return;
    if (!atomic_compare_exchange_weak(&claim, &c, c + 1)) continue;
    fn(ctx, idx, thread);
    atomic_fetch_add(&done, 1);
  }
}

static void *worker_main(void *arg) {
  int thread = (int)(intptr_t)arg;
  pin_self(worker_cpu[thread - 1]);  // thread < n_cpus: one worker per CPU
  uint32_t seen = atomic_load(&published);
  for (;;) {
    long spin_start = now_ns();
    uint32_t gen;
    int spins = 0;
    while ((gen = atomic_load(&published)) == seen && !atomic_load(&stopping)) {
      cpu_relax();
      if (++spins == 256) {
        spins = 0;
        if (now_ns() - spin_start > SPIN_NS) {
          pthread_mutex_lock(&mu);
          sleepers++;
          while (atomic_load(&published) == seen && !atomic_load(&stopping)) pthread_cond_wait(&cv, &mu);
          sleepers--;
          pthread_mutex_unlock(&mu);
          spin_start = now_ns();
        }
      }
    }
    if (atomic_load(&stopping)) return NULL;
    seen = gen;
    work(gen, thread);
  }
}

int pool_cpus(void) {
  if (n_cpus == 0) read_cpus();
  return n_cpus;
}

int pool_init(int nthreads) {
  pool_shutdown();
  read_cpus();
  // More threads than CPUs: the extra workers would be pinned onto CPUs that already run one,
  // and a worker spinning at a barrier there steals the time of the one working (measured:
  // a 512³ GEMM 4.6x slower with 64 threads on 2 CPUs than with 2). So the count is capped.
  if (nthreads <= 0 || nthreads > n_cpus) nthreads = n_cpus;
  // The main thread is worker 0 and is NOT pinned: threads and processes it creates later
  // (Node worker threads, child processes) inherit its affinity, and a main thread pinned to
  // one CPU would squeeze all of them onto that CPU (seen: a benchmark's child process ran
  // its two pool threads on one core, 4x slower). It keeps its original CPUs; the workers
  // are pinned to the other CPUs, starting with those the main thread is not on now (on
  // these machines a thread stays where it is unless the CPU it is on gets crowded).
#ifdef __linux__
  if (main_mask_saved) pthread_setaffinity_np(pthread_self(), sizeof main_mask, &main_mask);
  int here = sched_getcpu();
#else
  int here = -1;
#endif
  int k = 0;
  for (int i = 0; i < n_cpus; i++)
    if (cpu_list[i] != here) worker_cpu[k++] = cpu_list[i];
  for (int i = 0; i < n_cpus; i++)
    if (cpu_list[i] == here) worker_cpu[k++] = here;
  atomic_store(&stopping, 0);
  n_threads = 1;
  for (int t = 1; t < nthreads; t++) {
    if (pthread_create(&workers[t], NULL, worker_main, (void *)(intptr_t)t) != 0) break;
    n_threads++;
  }
  return n_threads;
}

int pool_threads(void) {
  if (n_threads == 0) {
    const char *env = getenv("MYNAH_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    pool_init(n > 0 && n <= MAX_THREADS ? (int)n : 0);
  }
  return n_threads;
}

void pool_run(pool_task_fn fn, void *ctx, int ntasks) {
  if (ntasks <= 0) return;
  if (pool_threads() == 1 || ntasks == 1) {
    for (int i = 0; i < ntasks; i++) fn(ctx, i, 0);
    return;
  }
  uint32_t gen = atomic_load(&published) + 1;
  // Close the previous generation before touching run_*: a late worker that loaded the old
  // claim (old gen, index = old ntasks) would otherwise read the NEW run_ntasks, pass the
  // bound check, and win its compare-and-swap on the unchanged old claim — running a task of
  // this run with a stale index and bumping `done` after it is reset (seen as segfaults).
  // Generation 0 is never published, so the swap fails and the worker returns.
  atomic_store(&claim, 0);
  run_fn = fn;
  run_ctx = ctx;
  run_ntasks = ntasks;
  atomic_store(&done, 0);
  atomic_store(&claim, ((uint64_t)gen << 32));
  atomic_store(&published, gen);
  pthread_mutex_lock(&mu);
  if (sleepers) pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  work(gen, 0);
  while (atomic_load(&done) < ntasks) cpu_relax();
}

void pool_shutdown(void) {
  if (n_threads <= 1) { n_threads = 0; return; }
  atomic_store(&stopping, 1);
  pthread_mutex_lock(&mu);
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  for (int t = 1; t < n_threads; t++) pthread_join(workers[t], NULL);
  n_threads = 0;
}

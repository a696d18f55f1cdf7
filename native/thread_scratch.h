// Per-thread scratch buffers for kernels whose tasks need working memory (attention's score
// rows, a decode step's scaled queries): one buffer per pool thread, grown on the main thread
// before pool_run and kept between calls. Header-only: each kernel file (and each ISA level's
// copy of it) keeps its own set, declared as `static thread_scratch name;`.
#pragma once
#include <stdlib.h>
#include "pool.h"

#define THREAD_SCRATCH_MAX 256

typedef struct {
  float *buf[THREAD_SCRATCH_MAX];
  size_t cap[THREAD_SCRATCH_MAX];
} thread_scratch;

// Grows every thread's buffer to `floats` (64-byte aligned). 0 when out of memory.
static inline int thread_scratch_reserve(thread_scratch *s, size_t floats) {
  int n = pool_threads();
  for (int t = 0; t < n && t < THREAD_SCRATCH_MAX; t++) {
    if (s->cap[t] >= floats) continue;
    free(s->buf[t]);
    s->buf[t] = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    s->cap[t] = s->buf[t] ? floats : 0;
    if (!s->buf[t]) return 0;
  }
  return 1;
}

// Helpers shared by the op kernels (norm.c, rope.c, attention.c, swiglu.c, crossentropy.c,
// embedding.c, optim.c): vector-friendly reductions, a fast exp, task splitting.
//
// The reductions are written with LANES independent partial sums, a pattern GCC and Clang
// turn into SIMD code at -O3 -march=native without -ffast-math (a plain `s += a[i]*b[i]`
// loop stays scalar, since reordering float sums changes the result).
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "napi_util.h"
#include "pool.h"

#define LANES 16

// Σ a[i]·b[i] in float, LANES partial sums (each lane sums n/16 terms).
static inline float dot_f32(const float *restrict a, const float *restrict b, int64_t n) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
  float s = 0;
  for (; i < n; i++) s += a[i] * b[i];
  for (int l = 0; l < LANES; l++) s += acc[l];
  return s;
}

// max_i x[i] (n ≥ 1).
static inline float max_f32(const float *restrict x, int64_t n) {
  float acc[LANES];
  for (int l = 0; l < LANES; l++) acc[l] = -INFINITY;
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];
  float m = -INFINITY;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;
  return m;
}

// Σ x[i]² in float64.
static inline double sumsq_f64(const float *restrict x, int64_t n) {
  double acc[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
  double s = 0;
  for (; i < n; i++) s += (double)x[i] * x[i];
  for (int l = 0; l < 8; l++) s += acc[l];
  return s;
}

// e^x in plain C that vectorizes (Cephes expf: range reduction by ln 2, degree-6 polynomial,
// exponent via the float bit pattern); relative error ~2e-7. Inputs are clamped to
// [-87.3, 88.3], so e^-inf gives ~1e-38 rather than 0: callers mask explicitly.
static inline float exp_fast(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  float n = floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float s;
  memcpy(&s, &bits, 4);
  return y * s;
}

// How many tasks to cut `work` units into so that each gets at least `grain` units, with up
// to 4 tasks per thread (claimed dynamically, so a core slowed by another process does less).
static inline int task_count(int64_t work, int64_t grain) {
  int64_t t = work / (grain > 0 ? grain : 1);
  int64_t cap = (int64_t)pool_threads() * 4;
  if (t > cap) t = cap;
  return t < 1 ? 1 : (int)t;
}

// A split that does not depend on the thread count, for reductions whose result must be
// identical with 1 or many threads: up to `max_chunks` chunks of at least `grain` units.
static inline int fixed_chunks(int64_t work, int64_t grain, int max_chunks) {
  int64_t t = work / (grain > 0 ? grain : 1);
  if (t > max_chunks) t = max_chunks;
  return t < 1 ? 1 : (int)t;
}

// [lo, hi) of chunk i when n units are cut into k chunks.
static inline void chunk_range(int64_t n, int k, int i, int64_t *lo, int64_t *hi) {
  *lo = n * i / k;
  *hi = n * (i + 1) / k;
}

// Argument helpers for the wrappers: fail → the JS error is already thrown, return NULL.
#define GET_INT(i, name, var) int64_t var; if (!get_int(env, argv[i], OP, name, &var)) return NULL
#define GET_NUM(i, name, var) double var; if (!get_num(env, argv[i], OP, name, &var)) return NULL
#define GET_F32(i, name, need, var) float *var; if (!get_f32(env, argv[i], OP, name, (need), &var)) return NULL
#define GET_I32(i, name, need, var) int32_t *var; if (!get_i32(env, argv[i], OP, name, (need), &var)) return NULL

// Each kernel file registers its own functions; ops.c calls them all.
void register_embedding(napi_env env, napi_value exports);
void register_norm(napi_env env, napi_value exports);
void register_rope(napi_env env, napi_value exports);
void register_attention(napi_env env, napi_value exports);
void register_swiglu(napi_env env, napi_value exports);
void register_crossentropy(napi_env env, napi_value exports);
void register_optim(napi_env env, napi_value exports);
void register_gemv_quant(napi_env env, napi_value exports);

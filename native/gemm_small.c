// GEMM for M <= 8: matrix-vector products of token-by-token generation (and tiny products,
// 8 rows at a time, where packing would cost more than the arithmetic).
//
// Shapes: op(A) (M, K), op(B) (K, N), C (M, N); rows go 8 at a time.
// These products are bound by reading B (the weights) once, so there is no packing: B is
// streamed in place, each element used for all M rows while it is in a register, and the
// columns of C are split among the pool threads (each thread streams its own part of B).
//   transB (y = x·Wᵀ, W (N, K)):  each C[m, j] is a dot product of row m of op(A) with row
//                                 j of W; a few rows of W are walked together along k.
//   !transB (B (K, N)):           C[m, j0:j0+W] accumulates op(A)[m, k] · B[k, j0:j0+W]
//                                 over k, in vector registers.
// Vectors are GCC/Clang vector extensions sized to the widest unit the build targets
// (zmm, ymm, or 128-bit NEON/SSE), so one source serves every instruction set.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"
#include "pool.h"

#if defined(__AVX512F__)
#define VB 64
#elif defined(__AVX__)
#define VB 32
#else
#define VB 16
#endif
#define VL (VB / 4)
typedef float vf __attribute__((vector_size(VB), aligned(4)));  // unaligned loads allowed
#define INLINE static inline __attribute__((always_inline))
// Left alone, GCC reloads a vector from memory for every use (twice the loads the hardware can
// issue); an empty asm that "changes" the register makes it load each vector once.
#if defined(__x86_64__) && defined(__GNUC__)
#define KEEP(x) __asm__("" : "+v"(x))
#elif defined(__aarch64__) && defined(__GNUC__)
#define KEEP(x) __asm__("" : "+w"(x))
#else
#define KEEP(x) ((void)0)
#endif

typedef struct {
  int M, N, K, ldb, ldc, transB, ntasks;
  float alpha, beta;
  const float *A;  // op(A) as a contiguous (M, K) matrix
  const float *B;
  float *C;
} small_args;

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

INLINE float hsum(vf v) {  // a shuffle tree where the ISA has one; lane by lane it dominates
#if defined(__AVX512F__)
  // halves, then quarters, then pairs: lanes (i, i+8), then (i, i+4), (i, i+2), (0, 1); spelled
  // out (rather than _mm512_reduce_add_ps, whose order is the compiler's) because reduce16
  // below must give each sum exactly these bits
  __m256 t = _mm256_add_ps(_mm512_castps512_ps256((__m512)v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1)));
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
#elif defined(__AVX__)
  __m128 x = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
#else
  float s = 0;
  for (int l = 0; l < VL; l++) s += v[l];
  return s;
#endif
}

// C[m, j] = alpha·v + beta·C[m, j] (beta 0: C not read), with one rounding of alpha·v + t
// spelled out where the level has FMA, so tile()'s vector form below gives the same bits.
INLINE void put(const small_args *s, int m, int j, float v) {
  float *c = &s->C[(size_t)m * s->ldc + j];
  const float t = s->beta == 0 ? 0.0f : s->beta * *c;
#if defined(__FMA__)
  *c = __builtin_fmaf(s->alpha, v, t);
#else
  *c = s->alpha * v + t;
#endif
}

// t + Σ_{k ≤ kk < K} a[kk]·w[kk], in order: the last K % VL terms of a dot product.
INLINE float dot_tail(float t, const float *a, const float *w, int k, int K) {
  for (; k < K; k++) t += a[k] * w[k];
  return t;
}

// transB: C[m, j] = Σ_k A[m, k] · W[j, k] for JB rows j of W at a time.
INLINE void dots(const small_args *s, int M, int JB, int j) {
  vf acc[8][8];
  for (int m = 0; m < M; m++)
    for (int r = 0; r < JB; r++) acc[m][r] = (vf){0};
  const float *w[8];
  for (int r = 0; r < JB; r++) w[r] = s->B + (size_t)(j + r) * s->ldb;
  int K = s->K, k = 0;
  for (; k + VL <= K; k += VL) {
    vf b[8];
    for (int r = 0; r < JB; r++) {
      b[r] = *(const vf *)(w[r] + k);
      KEEP(b[r]);
    }
    for (int m = 0; m < M; m++) {
      vf a = *(const vf *)(s->A + (size_t)m * K + k);
      KEEP(a);
      for (int r = 0; r < JB; r++) acc[m][r] += a * b[r];
    }
  }
  for (int m = 0; m < M; m++)
    for (int r = 0; r < JB; r++) put(s, m, j + r, dot_tail(hsum(acc[m][r]), s->A + (size_t)m * K, w[r], k, K));
}

#if VB == 64
// The 16 sums of 16 vectors in one shuffle tree (15 adds, 30 shuffles, against ~7 operations
// per hsum): each sum pairs the lanes exactly as hsum does (halves, quarters, pairs), so it
// has hsum's bits. Vector i's sum lands in lane (i % 4)·4 + i / 4 (the map is its own
// inverse), so callers place the vector of output o at SLOT16(o) and read the sums in order.
INLINE __m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; i++)  // lanes (i, i+8): two vectors' halves side by side
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; i++)  // (i, i+4): four vectors' quarters
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; i++)  // (i, i+2) within 128-bit lanes
    d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44), _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));  // (0, 1)
}
#define SLOT16(o) (((o) % 4) * 4 + (o) / 4)

// dots() for MB rows of A (from m0) × JB rows of W (from j), MB, JB ≤ 4: the same products in
// the same order per output, but the MB·JB sums reduced together by reduce16. Every output has
// the bits dots() gives it, so a row of a batch still equals that row alone.
// pf0, pf1: rows of W to prefetch into L1 while this tile runs (NULL: none), one line per row
// per step of k: rows of the next block, when W streams from beyond L2.
INLINE void tile(const small_args *s, int MB, int JB, int m0, int j, const float *pf0, const float *pf1) {
  vf acc[4][4];
  for (int m = 0; m < MB; m++)
    for (int r = 0; r < JB; r++) acc[m][r] = (vf){0};
  const float *w[4], *a[4];
  for (int r = 0; r < JB; r++) w[r] = s->B + (size_t)(j + r) * s->ldb;
  for (int m = 0; m < MB; m++) a[m] = s->A + (size_t)(m0 + m) * s->K;
  const int K = s->K;
  int k = 0;
  for (; k + VL <= K; k += VL) {
    vf b[4];
    for (int r = 0; r < JB; r++) {
      b[r] = *(const vf *)(w[r] + k);
      KEEP(b[r]);
    }
    if (pf0) _mm_prefetch((const char *)(pf0 + k), _MM_HINT_T0);
    if (pf1) _mm_prefetch((const char *)(pf1 + k), _MM_HINT_T0);
    for (int m = 0; m < MB; m++) {
      vf x = *(const vf *)(a[m] + k);
      KEEP(x);
      for (int r = 0; r < JB; r++) acc[m][r] += x * b[r];
    }
  }
  __m512 v[16];
  for (int o = 0; o < 16; o++) v[o] = _mm512_setzero_ps();
  for (int m = 0; m < MB; m++)
    for (int r = 0; r < JB; r++) v[SLOT16(m * 4 + r)] = (__m512)acc[m][r];
  float sum[16];
  _mm512_storeu_ps(sum, reduce16(v));
  if (JB == 4 && k == K) {  // each row's 4 sums are 4 adjacent outputs: put() 4 at a time
    const __m128 al = _mm_set1_ps(s->alpha), be = _mm_set1_ps(s->beta);
    for (int m = 0; m < MB; m++) {
      float *c = s->C + (size_t)(m0 + m) * s->ldc + j;
      const __m128 t = s->beta == 0 ? _mm_setzero_ps() : _mm_mul_ps(be, _mm_loadu_ps(c));
      _mm_storeu_ps(c, _mm_fmadd_ps(al, _mm_loadu_ps(sum + 4 * m), t));
    }
    return;
  }
  for (int m = 0; m < MB; m++)
    for (int r = 0; r < JB; r++) put(s, m0 + m, j + r, dot_tail(sum[m * 4 + r], a[m], w[r], k, K));
}

#define BY_TILE(MB, JB, s, m0, j, pf0, pf1)                                          \
  switch ((MB) * 4 + (JB)) {                                                 \
    case 5: tile(s, 1, 1, m0, j, pf0, pf1); break;  case 6: tile(s, 1, 2, m0, j, pf0, pf1); break;   \
    case 7: tile(s, 1, 3, m0, j, pf0, pf1); break;  case 8: tile(s, 1, 4, m0, j, pf0, pf1); break;   \
    case 9: tile(s, 2, 1, m0, j, pf0, pf1); break;  case 10: tile(s, 2, 2, m0, j, pf0, pf1); break;  \
    case 11: tile(s, 2, 3, m0, j, pf0, pf1); break; case 12: tile(s, 2, 4, m0, j, pf0, pf1); break;  \
    case 13: tile(s, 3, 1, m0, j, pf0, pf1); break; case 14: tile(s, 3, 2, m0, j, pf0, pf1); break;  \
    case 15: tile(s, 3, 3, m0, j, pf0, pf1); break; case 16: tile(s, 3, 4, m0, j, pf0, pf1); break;  \
    case 17: tile(s, 4, 1, m0, j, pf0, pf1); break; case 18: tile(s, 4, 2, m0, j, pf0, pf1); break;  \
    case 19: tile(s, 4, 3, m0, j, pf0, pf1); break; default: tile(s, 4, 4, m0, j, pf0, pf1); break; \
  }

// Columns [j0, j1) for all M rows: 4 rows of W at a time (they stay in L1 while every block of
// up to 4 rows of A passes over them, so W is read from memory once for the whole batch); the
// row blocks are as even as can be (M = 9: 3 + 3 + 3), since a block of 1 would waste 3/4 of
// its reduction.
static void tiles_range(const small_args *s, int j0, int j1) {
  // The next rows of W are prefetched into L1 while a tile runs. That pays for a W that a
  // decoding step streams from L3 or memory (16 rows of a 1024 × 384 W 1.45×; the 6 × 384
  // model's whole step 1.15×). It was once skipped for W under 128 Ki elements, measured 25 %
  // slower with it when the same W was multiplied again and again and so stayed in L2; but in
  // a decoding step each W is evicted by the rest of the model before its next use unless the
  // whole model fits in L2 (under ~0.5 M parameters). The speedrun shape (0.9 M, all its W
  // under 128 Ki elements) decoded 16 rows per step in 0.74–0.86 ms with it, 0.90–1.09 ms
  // without (engine alone, three alternating pairs).
  const int nb = (s->M + 3) / 4;
  for (int j = j0; j < j1; j += 4) {
    const int JB = j1 - j < 4 ? j1 - j : 4;
    for (int b = 0; b < nb; b++) {
      const int m0 = s->M * b / nb, MB = s->M * (b + 1) / nb - m0;
      // row block b prefetches rows j + 4 + b and, with fewer than 4 blocks, j + 4 + b + nb
      const int r0 = j + 4 + b, r1 = r0 + nb;
      const float *pf0 = b < 4 && r0 < j1 ? s->B + (size_t)r0 * s->ldb : NULL;
      const float *pf1 = nb < 4 && r1 < j + 8 && r1 < j1 ? s->B + (size_t)r1 * s->ldb : NULL;
      BY_TILE(MB, JB, s, m0, j, pf0, pf1);
    }
  }
}
#endif

INLINE void dots_range(const small_args *s, int M, int j0, int j1) {
  // enough independent chains to cover the FMA latency, few enough to stay in registers
#if VB == 64
  int JB = M == 1 ? 8 : M <= 4 ? 4 : 2, j = j0;
#else
  int JB = M <= 2 ? 4 : 2, j = j0;
#endif
  for (; j + JB <= j1; j += JB) dots(s, M, JB, j);
  for (; j < j1; j++) dots(s, M, 1, j);
}

// !transB: C[m, j:j+NV·VL] = Σ_k A[m, k] · B[k, j:j+NV·VL].
INLINE void axpys(const small_args *s, int M, int NV, int j) {
  vf acc[8][4];
  for (int m = 0; m < M; m++)
    for (int v = 0; v < NV; v++) acc[m][v] = (vf){0};
  const float *b = s->B + j;
  for (int k = 0; k < s->K; k++, b += s->ldb) {
    vf bv[4];
    for (int v = 0; v < NV; v++) bv[v] = *(const vf *)(b + v * VL);
    for (int m = 0; m < M; m++) {
      float a = s->A[(size_t)m * s->K + k];
      for (int v = 0; v < NV; v++) acc[m][v] += a * bv[v];
    }
  }
  for (int m = 0; m < M; m++)
    for (int v = 0; v < NV; v++) {
      vf *c = (vf *)(s->C + (size_t)m * s->ldc + j + v * VL);
      *c = s->beta == 0 ? s->alpha * acc[m][v] : s->alpha * acc[m][v] + s->beta * *c;
    }
}

INLINE void axpys_range(const small_args *s, int M, int j0, int j1) {
  int NV = M <= 4 ? 4 : 2, j = j0;
  for (; j + NV * VL <= j1; j += NV * VL) axpys(s, M, NV, j);
  for (; j + VL <= j1; j += VL) axpys(s, M, 1, j);
  for (; j < j1; j++) {  // last columns, scalar
    for (int m = 0; m < M; m++) {
      float t = 0;
      for (int k = 0; k < s->K; k++) t += s->A[(size_t)m * s->K + k] * s->B[(size_t)k * s->ldb + j];
      put(s, m, j, t);
    }
  }
}

// Specializes on M so the accumulators live in registers.
#define BY_M(fn, s, j0, j1)              \
  switch ((s)->M) {                      \
    case 1: fn(s, 1, j0, j1); break;     \
    case 2: fn(s, 2, j0, j1); break;     \
    case 3: fn(s, 3, j0, j1); break;     \
    case 4: fn(s, 4, j0, j1); break;     \
    case 5: fn(s, 5, j0, j1); break;     \
    case 6: fn(s, 6, j0, j1); break;     \
    case 7: fn(s, 7, j0, j1); break;     \
    default: fn(s, 8, j0, j1); break;    \
  }

static void small_task(void *ctx, int task, int thread) {
  (void)thread;
  const small_args *s = ctx;
  // column ranges in multiples of 64 so vector strips stay whole
  int blocks = (s->N + 63) / 64;
  int j0 = (int)((long)blocks * task / s->ntasks) * 64, j1 = (int)((long)blocks * (task + 1) / s->ntasks) * 64;
  if (j1 > s->N) j1 = s->N;
  if (j0 >= j1) return;
#if VB == 64
  if (s->transB && s->M >= 2) {
    tiles_range(s, j0, j1);
    return;
  }
#endif
  // More than 8 rows (batched decoding: one row per sequence): 8 at a time, over column
  // blocks small enough (JS rows of W, or JS columns of B) to stay in L1 between the row
  // groups, so B is read from memory once for all M rows rather than once per 8.
  enum { JS = 16 };
  for (int jb = j0; jb < j1; jb += (s->M > 8 ? JS : j1 - j0)) {
    int je = s->M > 8 && jb + JS < j1 ? jb + JS : j1;
    for (int m0 = 0; m0 < s->M; m0 += 8) {
      small_args r = *s;
      r.M = s->M - m0 < 8 ? s->M - m0 : 8;
      r.A = s->A + (size_t)m0 * s->K;
      r.C = s->C + (size_t)m0 * s->ldc;
      if (s->transB) {
        BY_M(dots_range, &r, jb, je);
      } else {
        BY_M(axpys_range, &r, jb, je);
      }
    }
  }
}

void gemm_small(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc, int threads) {
  // op(A) as a contiguous (M, K) copy unless it already is one
  float *copy = NULL;
  if (transA || lda != K) {
    copy = malloc((size_t)M * K * sizeof(float));
    if (!copy) {  // out of memory: the slow path needs no buffer
      gemm_naive(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++)
        copy[(size_t)m * K + k] = transA ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
    A = copy;
  }
  small_args s = {M, N, K, ldb, ldc, transB, 1, alpha, beta, A, B, C};
  // a few 64-column pieces per thread, claimed dynamically, so a core that another process
  // slows down simply takes fewer
  int blocks = (N + 63) / 64, want = threads > 1 ? 4 * threads : 1;
  s.ntasks = want < blocks ? want : blocks;
  if (s.ntasks == 1)
    small_task(&s, 0, 0);
  else
    pool_run(small_task, &s, s.ntasks);
  free(copy);
}

// gemm() calls gemm_small directly; this file has no JS functions of its own.
void register_gemm_small(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
}

// GEMM micro-kernels: C[MR, NR] = alpha · Ap · Bp + beta · C, over kc steps of k.
//
// Shapes (row-major C, vectors run along N):
//   Ap: packed micro-panel of op(A), (kc, MR): Ap[k*MR + i] = op(A)[i, k]
//   Bp: packed micro-panel of op(B), (kc, NR): Bp[k*NR + j] = op(B)[k, j]
//   C:  (MR, NR) tile with row stride ldc; beta == 0 never reads C (NaNs in C are ignored).
// One kernel per instruction set, picked at compile time (gemm.c is compiled once per ISA
// level, see kernels.h; the addon picks the level at load time by CPUID): AVX-512 (32 zmm: MR x NR = 12 x 32 holds 24 accumulators; 6 x 64 and
// 14 x 32 measured the same on Zen 5, 8 x 48 10 % slower), AVX2+FMA
// (16 ymm: 6 x 16, 12 accumulators), and portable C written so the compiler vectorizes
// the j loop (NEON on arm64 laptops, SSE2 elsewhere).
#pragma once
#include <stddef.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GEMM_ISA "avx512"
#ifdef GEMM_MR
#define MR GEMM_MR
#else  // tuning runs override these with -DGEMM_MR=... etc.
#define MR 12
#endif
#ifdef GEMM_NV
#define NV GEMM_NV
#else
#define NV 2  // zmm vectors per row of the tile
#endif
#define NR (16 * NV)
#ifdef GEMM_KC
#define KC GEMM_KC
#else
#define KC 512  // A micro-panel 24 KiB of the 48 KiB L1; a (KC, NC) block of B 512 KiB of 1 MiB L2
#endif
#ifdef GEMM_NC
#define NC GEMM_NC
#else
#define NC 256
#endif

static inline void ukernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                           ptrdiff_t ldc, float alpha, float beta) {
  __m512 c[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) b[v] = _mm512_load_ps(Bp + 16 * v);
    _mm_prefetch((const char *)(Bp + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512 a = _mm512_set1_ps(Ap[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) c[i][v] = _mm512_fmadd_ps(a, b[v], c[i][v]);
    }
    Ap += MR;
    Bp += NR;
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      float *r = C + i * ldc + 16 * v;
      __m512 x = _mm512_mul_ps(va, c[i][v]);
      if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(r), x);
      _mm512_storeu_ps(r, x);
    }
}

#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GEMM_ISA "avx2"
#define MR 6
#define NR 16
#define KC 256
#define NC 256

static inline void ukernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                           ptrdiff_t ldc, float alpha, float beta) {
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m256 a = _mm256_broadcast_ss(Ap + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
    Ap += MR;
    Bp += NR;
  }
  __m256 va = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    float *r = C + i * ldc;
    __m256 x0 = _mm256_mul_ps(va, c[i][0]), x1 = _mm256_mul_ps(va, c[i][1]);
    if (beta != 0) {
      __m256 vb = _mm256_set1_ps(beta);
      x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(r), x0);
      x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(r + 8), x1);
    }
    _mm256_storeu_ps(r, x0);
    _mm256_storeu_ps(r + 8, x1);
  }
}

#else
#define GEMM_ISA "portable"
#if defined(__aarch64__)
#define MR 8  // 32 NEON registers: 8 x 12 = 24 accumulators of 4 lanes
#define NR 12
#else
#define MR 4  // 16 SSE registers: 4 x 8 = 8 accumulators of 4 lanes
#define NR 8
#endif
#define KC 256
#define NC 240

#if defined(__GNUC__)
// GCC/Clang vector extensions: 4-lane vectors that map onto NEON or SSE registers.
typedef float v4 __attribute__((vector_size(16)));
static inline void ukernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                           ptrdiff_t ldc, float alpha, float beta) {
  v4 c[MR][NR / 4];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NR / 4; v++) c[i][v] = (v4){0, 0, 0, 0};
  for (int k = 0; k < kc; k++) {
    v4 b[NR / 4];
    for (int v = 0; v < NR / 4; v++) b[v] = *(const v4 *)(Bp + 4 * v);  // panels are 64-byte aligned
    for (int i = 0; i < MR; i++)
      for (int v = 0; v < NR / 4; v++) c[i][v] += Ap[i] * b[v];
    Ap += MR;
    Bp += NR;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      C[i * ldc + j] = alpha * c[i][j / 4][j % 4] + (beta == 0 ? 0 : beta * C[i * ldc + j]);
}
#else
// Plain C for any other compiler.
static inline void ukernel(int kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                           ptrdiff_t ldc, float alpha, float beta) {
  float c[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) c[i][j] = 0;
  for (int k = 0; k < kc; k++) {
    for (int i = 0; i < MR; i++) {
      float a = Ap[i];
      for (int j = 0; j < NR; j++) c[i][j] += a * Bp[j];
    }
    Ap += MR;
    Bp += NR;
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      C[i * ldc + j] = alpha * c[i][j] + (beta == 0 ? 0 : beta * C[i * ldc + j]);
}
#endif
#endif

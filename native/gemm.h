#pragma once
// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C
//   op(A) is (M, K): A is (M, K) when !transA, (K, M) when transA
//   op(B) is (K, N): B is (K, N) when !transB, (N, K) when transB
// Leading dimensions are the row lengths of the stored matrices.
// Training uses three forms: y = x·Wᵀ (NT), dX = dY·W (NN), dW += dYᵀ·X (TN).
// Called across kernel files (optim.c, gemm_small.c), so each has a per-level symbol (kernels.h).
#include "kernels.h"

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) MYNAH_LEVEL_SYM(gemm);
// The simplest correct GEMM (float64 sums): the reference, and the fallback without memory.
void gemm_naive(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) MYNAH_LEVEL_SYM(gemm_naive);
// M <= 8 and tiny products (gemm_small.c), on `threads` threads.
void gemm_small(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc, int threads) MYNAH_LEVEL_SYM(gemm_small);

#pragma once
// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C
//   op(A) is (M, K): A is (M, K) when !transA, (K, M) when transA
//   op(B) is (K, N): B is (K, N) when !transB, (N, K) when transB
// Leading dimensions are the row lengths of the stored matrices.
// Training uses three forms: y = x·Wᵀ (NT), dX = dY·W (NN), dW += dYᵀ·X (TN).
void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

// Bench-only peer for bench/gemm.ts (mynah itself never links BLAS): times OpenBLAS's
// cblas_sgemm on the shapes given on stdin, one per line: "transA transB M N K beta".
// Prints the GFLOP/s of the best of several runs per line. Threads: OPENBLAS_NUM_THREADS.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
  int ta, tb, M, N, K;
  float beta;
  while (scanf("%d %d %d %d %d %f", &ta, &tb, &M, &N, &K, &beta) == 6) {
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
    if (!A || !B || !C) return 1;
    for (long i = 0; i < (long)M * K; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
    for (long i = 0; i < (long)K * N; i++) B[i] = (float)rand() / RAND_MAX - 0.5f;
    for (long i = 0; i < (long)M * N; i++) C[i] = 0;
    double best = 1e30, spent = 0;
    for (int r = 0; r < 50 && (r < 3 || spent < 0.2); r++) {
      double t = now();
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                  ta ? M : K, B, tb ? K : N, beta, C, N);
      t = now() - t;
      spent += t;
      if (r > 0 && t < best) best = t;  // run 0 warms caches and OpenBLAS's threads
    }
    printf("%.3f\n", 2.0 * M * N * K / best / 1e9);
    fflush(stdout);
    free(A);
    free(B);
    free(C);
  }
  return 0;
}

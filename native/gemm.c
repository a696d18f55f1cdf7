// GEMM. Placeholder: a correct, threaded, unblocked kernel. To be replaced by the packed,
// cache-blocked, register-tiled version.
#include "gemm.h"
#include "napi_util.h"
#include "pool.h"

typedef struct {
  int transA, transB, M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} gemm_args;

static void gemm_rows(void *vctx, int task, int thread) {
  (void)thread;
  gemm_args *g = vctx;
  int i = task;
  for (int j = 0; j < g->N; j++) {
    float s = 0;
    for (int k = 0; k < g->K; k++) {
      float a = g->transA ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
      float b = g->transB ? g->B[(size_t)j * g->ldb + k] : g->B[(size_t)k * g->ldb + j];
      s += a * b;
    }
    float *c = &g->C[(size_t)i * g->ldc + j];
    *c = g->alpha * s + (g->beta == 0 ? 0 : g->beta * *c);
  }
}

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
  gemm_args g = {transA, transB, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  pool_run(gemm_rows, &g, M);
}

// gemm(transA, transB, M, N, K, alpha, A, B, beta, C): contiguous row-major operands.
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  ARGS("gemm", 10);
  bool ta, tb;
  int64_t M, N, K;
  double alpha, beta;
  float *A, *B, *C;
  if (!get_bool(env, argv[0], "gemm", "transA", &ta) || !get_bool(env, argv[1], "gemm", "transB", &tb) ||
      !get_int(env, argv[2], "gemm", "M", &M) || !get_int(env, argv[3], "gemm", "N", &N) ||
      !get_int(env, argv[4], "gemm", "K", &K) || !get_num(env, argv[5], "gemm", "alpha", &alpha) ||
      !get_f32(env, argv[6], "gemm", "A", M * K, &A) || !get_f32(env, argv[7], "gemm", "B", K * N, &B) ||
      !get_num(env, argv[8], "gemm", "beta", &beta) || !get_f32(env, argv[9], "gemm", "C", M * N, &C))
    return NULL;
  gemm(ta, tb, (int)M, (int)N, (int)K, (float)alpha, A, ta ? (int)M : (int)K, B, tb ? (int)K : (int)N,
       (float)beta, C, (int)N);
  return NULL;
}

void register_gemm(napi_env env, napi_value exports) { export_fn(env, exports, "gemm", js_gemm); }

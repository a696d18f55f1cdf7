// RMSNorm (also used as QK-norm with C = D).
//
// Shapes: N rows, C channels.
//   x, out, dout, dx (N, C); w, dw (C); rstd (N)
//
// forward:  rstd[n] = 1 / sqrt(mean_c x[n,c]² + eps);  out[n,c] = x[n,c] · rstd[n] · w[c]
// backward: with xhat = x·rstd and g = dout·w,
//           dx += rstd · (g − xhat · mean_c(g · xhat));   dw += Σ_n dout · xhat
// The row sums are float with 16 partial sums (C is at most a few thousand). dw is reduced
// without races: each of a fixed set of row chunks sums into its own partial row, and the
// partials are added in chunk order in double, so 1 and N threads give the same result.
#include "ops_common.h"

typedef struct {
  float *out, *rstd, *dx, *partial;
  const float *x, *w, *dout, *rstd_in;
  int64_t N, C;
  float eps;
  int ntasks;
} norm_args;

static void rmsnorm_forward_task(void *ctx, int task, int thread) {
  (void)thread;
  const norm_args *a = ctx;
  int64_t lo, hi, C = a->C;
  chunk_range(a->N, a->ntasks, task, &lo, &hi);
  for (int64_t n = lo; n < hi; n++) {
    const float *restrict x = a->x + n * C;
    float *restrict o = a->out + n * C;
    float r = 1.0f / sqrtf(dot_f32(x, x, C) / (float)C + a->eps);
    a->rstd[n] = r;
    for (int64_t c = 0; c < C; c++) o[c] = x[c] * r * a->w[c];
  }
}

static void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
  norm_args a = {.out = out, .rstd = rstd, .x = x, .w = w, .N = N, .C = C, .eps = eps};
  a.ntasks = task_count(MUL2(N, C), 1 << 14);
  pool_run(rmsnorm_forward_task, &a, a.ntasks);
}

static void rmsnorm_backward_task(void *ctx, int task, int thread) {
  (void)thread;
  const norm_args *a = ctx;
  int64_t lo, hi, C = a->C;
  chunk_range(a->N, a->ntasks, task, &lo, &hi);
  float *restrict dw = a->partial + (int64_t)task * C;
  memset(dw, 0, sizeof(float) * C);
  for (int64_t n = lo; n < hi; n++) {
    const float *restrict x = a->x + n * C, *restrict d = a->dout + n * C, *restrict w = a->w;
    float *restrict dx = a->dx + n * C;
    float r = a->rstd_in[n];
    float acc[LANES] = {0};  // Σ_c dout·w·x, as in dot_f32
    int64_t c = 0;
    for (; c + LANES <= C; c += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += d[c + l] * w[c + l] * x[c + l];
    float s = 0;
    for (; c < C; c++) s += d[c] * w[c] * x[c];
    for (int l = 0; l < LANES; l++) s += acc[l];
    float k = s * r * r / (float)C;  // mean(g·xhat) = s·r/C, so xhat·mean = x·k
    for (c = 0; c < C; c++) {
      dx[c] += r * (d[c] * w[c] - x[c] * k);
      dw[c] += d[c] * x[c] * r;
    }
  }
}

static void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int64_t N, int64_t C, int *oom) {
  norm_args a = {.dx = dx, .dout = dout, .x = x, .w = w, .rstd_in = rstd, .N = N, .C = C};
  a.ntasks = fixed_chunks(MUL2(N, C), 1 << 14, 64);
  a.partial = malloc(sizeof(float) * a.ntasks * C);
  if (!a.partial) { *oom = 1; return; }
  pool_run(rmsnorm_backward_task, &a, a.ntasks);
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int t = 0; t < a.ntasks; t++) s += a.partial[(int64_t)t * C + c];
    dw[c] += (float)s;
  }
  free(a.partial);
}

// ---------------------------------------------------------------- Node-API

static napi_value js_rmsnorm_forward(napi_env env, napi_callback_info info) {
  const char *OP = "rmsnormForward";
  ARGS(OP, 7);
  GET_INT(4, "N", N);
  GET_INT(5, "C", C);
  GET_NUM(6, "eps", eps);
  GET_F32(0, "out", MUL2(N, C), out);
  GET_F32(1, "rstd", N, rstd);
  GET_F32(2, "x", MUL2(N, C), x);
  GET_F32(3, "w", C, w);
  if (N == 0 || C == 0) return NULL;
  rmsnorm_forward(out, rstd, x, w, N, C, (float)eps);
  return NULL;
}

static napi_value js_rmsnorm_backward(napi_env env, napi_callback_info info) {
  const char *OP = "rmsnormBackward";
  ARGS(OP, 8);
  GET_INT(6, "N", N);
  GET_INT(7, "C", C);
  GET_F32(0, "dx", MUL2(N, C), dx);
  GET_F32(1, "dw", C, dw);
  GET_F32(2, "dout", MUL2(N, C), dout);
  GET_F32(3, "x", MUL2(N, C), x);
  GET_F32(4, "w", C, w);
  GET_F32(5, "rstd", N, rstd);
  if (N == 0 || C == 0) return NULL;
  int oom = 0;
  rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C, &oom);
  if (oom) throw_err(env, OP, "out of memory for the dw partial sums");
  return NULL;
}

void register_norm(napi_env env, napi_value exports) {
  export_fn(env, exports, "rmsnormForward", js_rmsnorm_forward);
  export_fn(env, exports, "rmsnormBackward", js_rmsnorm_backward);
}

// Optimizer steps and the gradient-norm helpers.
//
// Shapes: n values; Muon's param, grad, momentum (rows, cols).
//
// adamw:  m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;
//         p −= lr · ( m/(1−β1^step) / (sqrt(v/(1−β2^step)) + eps) + wd · p )
// muon:   buf = β buf + g;  u = g + β buf;  O = NewtonSchulz5(u / (‖u‖_F + 1e-7));
//         p −= lr · ( sqrt(max(1, rows/cols)) · O + wd · p )
//         Newton–Schulz works on the shorter side: with X (m, k), m ≤ k, each step is
//         A = X·Xᵀ (m, m);  B = b·A + c·A·A;  X = a·X + B·X. A tall matrix keeps its own
//         layout and uses A = XᵀX, X = a·X + X·B instead (B is symmetric), so nothing is
//         transposed. The products run on gemm() (which uses the pool itself), so muon runs
//         on the calling thread; its scratch buffers are allocated once and grown as needed.
// sumSquares: Σ x² in double (fixed chunks, added in order: same result for any thread count).
// scale:  x *= s.
#include "gemm.h"
#include "ops_common.h"

#define NS_A 3.4445f
#define NS_B (-4.7750f)
#define NS_C 2.0315f

// ---------------------------------------------------------------- AdamW

typedef struct {
  float *p, *m, *v;
  const float *g;
  int64_t n;
  float lr, b1, b2, eps, wd, ibc1, ibc2;
  int ntasks;
} adamw_args;

static void adamw_task(void *ctx, int task, int thread) {
  (void)thread;
  const adamw_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n, a->ntasks, task, &lo, &hi);
  float *restrict p = a->p, *restrict m = a->m, *restrict v = a->v;
  const float *restrict g = a->g;
  for (int64_t i = lo; i < hi; i++) {
    float mi = a->b1 * m[i] + (1.0f - a->b1) * g[i];
    float vi = a->b2 * v[i] + (1.0f - a->b2) * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    p[i] -= a->lr * ((mi * a->ibc1) / (sqrtf(vi * a->ibc2) + a->eps) + a->wd * p[i]);
  }
}

// ---------------------------------------------------------------- Muon

static float *ns_buf[4];
static size_t ns_cap[4];

// A scratch buffer of at least n floats (slot 0..3), kept between calls.
static float *scratch(int slot, size_t n) {
  if (ns_cap[slot] < n) {
    free(ns_buf[slot]);
    ns_buf[slot] = malloc(sizeof(float) * n);
    ns_cap[slot] = ns_buf[slot] ? n : 0;
  }
  return ns_buf[slot];
}

// Returns 0 when scratch memory could not be allocated.
static int muon_step(float *p, const float *g, float *buf, int rows, int cols, float lr, float beta, float wd, int steps) {
  int64_t n = (int64_t)rows * cols;
  int tall = rows > cols, m = tall ? cols : rows;
  float *X = scratch(0, n), *Y = scratch(1, n), *A = scratch(2, (size_t)m * m), *Bm = scratch(3, (size_t)m * m);
  if (!X || !Y || !A || !Bm) return 0;
  for (int64_t i = 0; i < n; i++) {
    buf[i] = beta * buf[i] + g[i];
    X[i] = g[i] + beta * buf[i];
  }
  double ss = sumsq_f64(X, n);
  float inv = (float)(1.0 / (sqrt(ss) + 1e-7));
  for (int64_t i = 0; i < n; i++) X[i] *= inv;
  for (int s = 0; s < steps; s++) {
    if (tall) gemm(1, 0, m, m, rows, 1.0f, X, cols, X, cols, 0.0f, A, m);   // A = XᵀX
    else gemm(0, 1, m, m, cols, 1.0f, X, cols, X, cols, 0.0f, A, m);        // A = XXᵀ
    memcpy(Bm, A, sizeof(float) * m * m);
    gemm(0, 0, m, m, m, NS_C, A, m, A, m, NS_B, Bm, m);                     // B = b·A + c·A·A
    memcpy(Y, X, sizeof(float) * n);
    if (tall) gemm(0, 0, rows, cols, cols, 1.0f, X, cols, Bm, m, NS_A, Y, cols);  // Y = a·X + X·B
    else gemm(0, 0, rows, cols, rows, 1.0f, Bm, m, X, cols, NS_A, Y, cols);       // Y = a·X + B·X
    float *t = X; X = Y; Y = t;  // the slots keep their buffers; only the roles swap
  }
  float k = lr * sqrtf(tall ? (float)rows / cols : 1.0f), d = lr * wd;
  for (int64_t i = 0; i < n; i++) p[i] -= k * X[i] + d * p[i];
  return 1;
}

// ---------------------------------------------------------------- sumSquares, scale

typedef struct {
  float *x;
  double *partial;
  int64_t n;
  double sd;
  int ntasks;
} vec_args;

static void sumsq_task(void *ctx, int task, int thread) {
  (void)thread;
  const vec_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n, a->ntasks, task, &lo, &hi);
  a->partial[task] = sumsq_f64(a->x + lo, hi - lo);
}

static void scale_task(void *ctx, int task, int thread) {
  (void)thread;
  const vec_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n, a->ntasks, task, &lo, &hi);
  float *restrict x = a->x;
  const double sd = a->sd;  // in double, so x·s rounds once, as in JS
  for (int64_t i = lo; i < hi; i++) x[i] = (float)(x[i] * sd);
}

// ---------------------------------------------------------------- Node-API

static napi_value js_adamw(napi_env env, napi_callback_info info) {
  const char *OP = "adamw";
  ARGS(OP, 11);
  GET_INT(4, "n", n);
  GET_NUM(5, "lr", lr);
  GET_NUM(6, "beta1", b1);
  GET_NUM(7, "beta2", b2);
  GET_NUM(8, "eps", eps);
  GET_NUM(9, "weightDecay", wd);
  GET_INT(10, "step", step);
  GET_F32(0, "param", n, p);
  GET_F32(1, "grad", n, g);
  GET_F32(2, "m", n, m);
  GET_F32(3, "v", n, v);
  if (step < 1) { throw_err(env, OP, "step must count from 1"); return NULL; }
  adamw_args a = {p, m, v, g, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd,
                  (float)(1.0 / (1.0 - pow(b1, (double)step))), (float)(1.0 / (1.0 - pow(b2, (double)step))),
                  task_count(n, 1 << 15)};
  if (n) pool_run(adamw_task, &a, a.ntasks);
  return NULL;
}

static napi_value js_muon(napi_env env, napi_callback_info info) {
  const char *OP = "muon";
  ARGS(OP, 9);
  GET_INT(3, "rows", rows);
  GET_INT(4, "cols", cols);
  GET_NUM(5, "lr", lr);
  GET_NUM(6, "beta", beta);
  GET_NUM(7, "weightDecay", wd);
  GET_DIM(8, "nsSteps", steps);
  GET_F32(0, "param", MUL2(rows, cols), p);
  GET_F32(1, "grad", MUL2(rows, cols), g);
  GET_F32(2, "momentum", MUL2(rows, cols), buf);
  if (rows > (1 << 28) || cols > (1 << 28)) { throw_err(env, OP, "rows and cols must be below 2^28"); return NULL; }
  if (rows == 0 || cols == 0) return NULL;
  if (!muon_step(p, g, buf, (int)rows, (int)cols, (float)lr, (float)beta, (float)wd, (int)steps))
    throw_err(env, OP, "out of memory for the Newton–Schulz scratch buffers");
  return NULL;
}

static napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  const char *OP = "sumSquares";
  ARGS(OP, 2);
  GET_INT(1, "n", n);
  GET_F32(0, "x", n, x);
  double partial[64];
  vec_args a = {x, partial, n, 0, fixed_chunks(n, 1 << 16, 64)};
  pool_run(sumsq_task, &a, a.ntasks);
  double s = 0;
  for (int t = 0; t < a.ntasks; t++) s += partial[t];
  return make_num(env, s);
}

static napi_value js_scale(napi_env env, napi_callback_info info) {
  const char *OP = "scale";
  ARGS(OP, 3);
  GET_INT(1, "n", n);
  GET_NUM(2, "s", s);
  GET_F32(0, "x", n, x);
  vec_args a = {x, NULL, n, s, task_count(n, 1 << 16)};
  if (n) pool_run(scale_task, &a, a.ntasks);
  return NULL;
}

void register_optim(napi_env env, napi_value exports) {
  export_fn(env, exports, "adamw", js_adamw);
  export_fn(env, exports, "muon", js_muon);
  export_fn(env, exports, "sumSquares", js_sum_squares);
  export_fn(env, exports, "scale", js_scale);
}

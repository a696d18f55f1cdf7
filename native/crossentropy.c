// Fused softmax cross-entropy with its gradient.
//
// Shapes: N rows, V vocabulary.  logits, dlogits (N, V); targets, losses (N)
//
// loss[n]     = logsumexp(logits[n]) − logits[n, targets[n]]        (0 when targets[n] = −1)
// dlogits[n]  = scale · (softmax(logits[n]) − onehot(targets[n]))    (0 rows when ignored)
// returns Σ_n loss[n] in double.
// dlogits may be logits itself: each row is read (max, then Σ exp, which also stores the
// exponentials into dlogits) before it is rescaled in place. Rows are split into a fixed
// set of chunks whose partial sums are added in order, so the total does not depend on the
// thread count.
//
// logSumExp: out[n] = logsumexp(x[n]) for R rows, the same row loop without a target.
// Decoding uses it for the log-probability of each sampled token (z[id] − lse), one call for
// a whole batch: in JavaScript the V exponentials cost ~15 µs a row at V = 1024, as much as
// a small model's forward share.
#include "ops_common.h"

// Σ_j exp(x[j] − m) over one row, with each exponential also stored into d when d is given
// (d may be x: each element is read, then written).
static float row_sum_exp(const float *x, float *d, int64_t V, float m) {
  float acc[LANES] = {0};
  int64_t j = 0;
  if (d) {
    for (; j + LANES <= V; j += LANES)
      for (int l = 0; l < LANES; l++) { float e = exp_fast(x[j + l] - m); d[j + l] = e; acc[l] += e; }
  } else {
    for (; j + LANES <= V; j += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += exp_fast(x[j + l] - m);
  }
  float s = 0;
  for (; j < V; j++) { float e = exp_fast(x[j] - m); if (d) d[j] = e; s += e; }
  for (int l = 0; l < LANES; l++) s += acc[l];
  return s;
}

typedef struct {
  float *dlogits, *losses;
  const float *logits;
  const int32_t *targets;
  double *partial;
  int64_t N, V;
  float scale;
  int ntasks;
} ce_args;

static void ce_task(void *ctx, int task, int thread) {
  (void)thread;
  const ce_args *a = ctx;
  int64_t lo, hi, V = a->V;
  chunk_range(a->N, a->ntasks, task, &lo, &hi);
  double total = 0;
  for (int64_t n = lo; n < hi; n++) {
    int32_t t = a->targets[n];
    float *d = a->dlogits ? a->dlogits + n * V : NULL;
    if (t < 0) {
      if (d) memset(d, 0, sizeof(float) * V);
      if (a->losses) a->losses[n] = 0;
      continue;
    }
    const float *x = a->logits + n * V;
    float m = max_f32(x, V), xt = x[t];
    float s = row_sum_exp(x, d, V, m);  // e = exp(x − m), stored into d for the gradient
    double loss = log((double)s) + m - xt;
    total += loss;
    if (a->losses) a->losses[n] = (float)loss;
    if (d) {
      float k = a->scale / s;
      for (int64_t j = 0; j < V; j++) d[j] *= k;
      d[t] -= a->scale;
    }
  }
  a->partial[task] = total;
}

// ---------------------------------------------------------------- Node-API

static napi_value js_cross_entropy(napi_env env, napi_callback_info info) {
  const char *OP = "crossEntropy";
  ARGS(OP, 7);
  GET_INT(4, "N", N);
  GET_INT(5, "V", V);
  GET_NUM(6, "scale", scale);
  float *dlogits = NULL, *losses = NULL;
  napi_valuetype ty;
  napi_typeof(env, argv[0], &ty);
  if (ty != napi_null && ty != napi_undefined && !get_f32(env, argv[0], OP, "dlogits", MUL2(N, V), &dlogits)) return NULL;
  napi_typeof(env, argv[1], &ty);
  if (ty != napi_null && ty != napi_undefined && !get_f32(env, argv[1], OP, "losses", N, &losses)) return NULL;
  GET_F32(2, "logits", MUL2(N, V), logits);
  GET_I32(3, "targets", N, targets);
  if (V == 0 && N > 0) { throw_err(env, OP, "V must be positive"); return NULL; }
  for (int64_t n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V) {
      char m[160];
      snprintf(m, sizeof m, "targets[%lld] = %d is outside [0, %lld) (−1 = ignored)", (long long)n, targets[n], (long long)V);
      throw_err(env, OP, m);
      return NULL;
    }
  double partial[64];
  ce_args a = {dlogits, losses, logits, targets, partial, N, V, (float)scale, fixed_chunks(N * V, 1 << 15, 64)};
  if (N) pool_run(ce_task, &a, a.ntasks);
  double total = 0;
  for (int t = 0; N && t < a.ntasks; t++) total += partial[t];
  return make_num(env, total);
}

typedef struct {
  float *out;
  const float *x;
  int64_t R, V;
  int ntasks;
} lse_args;

static void lse_task(void *ctx, int task, int thread) {
  (void)thread;
  const lse_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->R, a->ntasks, task, &lo, &hi);
  for (int64_t n = lo; n < hi; n++) {
    const float *x = a->x + n * a->V;
    const float m = max_f32(x, a->V);
    a->out[n] = (float)(log((double)row_sum_exp(x, NULL, a->V, m)) + m);
  }
}

static napi_value js_log_sum_exp(napi_env env, napi_callback_info info) {
  const char *OP = "logSumExp";
  ARGS(OP, 4);
  GET_INT(2, "R", R);
  GET_INT(3, "V", V);
  if (V == 0 && R > 0) { throw_err(env, OP, "V must be positive"); return NULL; }
  GET_F32(0, "out", R, out);
  GET_F32(1, "x", MUL2(R, V), x);
  // A row is one task's work; rows of a decoding batch are small, so a chunk holds ≥ 32 Ki values.
  lse_args a = {out, x, R, V, R ? task_count(R * V, 1 << 15) : 0};
  if (a.ntasks > R) a.ntasks = (int)R;
  if (R) pool_run(lse_task, &a, a.ntasks);
  return NULL;
}

void register_crossentropy(napi_env env, napi_value exports) {
  export_fn(env, exports, "crossEntropy", js_cross_entropy);
  export_fn(env, exports, "logSumExp", js_log_sum_exp);
}

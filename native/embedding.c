// Token embedding.
//
// Shapes: N rows (= B·T), C channels, V vocabulary.
//   table (V, C), ids (N), out (N, C), dOut (N, C), dTable (V, C)
//
// forward:  out[n, :] = table[ids[n], :]           (id −1 gives a zero row)
// backward: dTable[ids[n], :] += dOut[n, :]        (id −1 skipped)
// The backward is a scatter-add: two rows with the same id would race if threads split the
// rows, so threads split the channels instead; each sums its columns in row order, so the
// result does not depend on the thread count.
#include "ops_common.h"

typedef struct {
  float *out;
  const float *table;
  const int32_t *ids;
  int64_t N, C;
  int ntasks;
} emb_args;

static void embedding_forward_task(void *ctx, int task, int thread) {
  (void)thread;
  const emb_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->N, a->ntasks, task, &lo, &hi);
  for (int64_t n = lo; n < hi; n++) {
    float *o = a->out + n * a->C;
    if (a->ids[n] < 0) memset(o, 0, sizeof(float) * a->C);
    else memcpy(o, a->table + (int64_t)a->ids[n] * a->C, sizeof(float) * a->C);
  }
}

static void embedding_forward(float *out, const float *table, const int32_t *ids, int64_t N, int64_t C) {
  emb_args a = {out, table, ids, N, C, task_count(N * C, 1 << 15)};
  pool_run(embedding_forward_task, &a, a.ntasks);
}

#define EMB_COLS 64  // columns per backward task (256 bytes of each row)

static void embedding_backward_task(void *ctx, int task, int thread) {
  (void)thread;
  const emb_args *a = ctx;
  int64_t c0 = (int64_t)task * EMB_COLS, c1 = c0 + EMB_COLS < a->C ? c0 + EMB_COLS : a->C;
  float *dT = a->out;
  const float *dO = a->table;
  for (int64_t n = 0; n < a->N; n++) {
    if (a->ids[n] < 0) continue;
    float *restrict d = dT + (int64_t)a->ids[n] * a->C;
    const float *restrict g = dO + n * a->C;
    for (int64_t c = c0; c < c1; c++) d[c] += g[c];
  }
}

static void embedding_backward(float *dTable, const float *dOut, const int32_t *ids, int64_t N, int64_t C) {
  emb_args a = {dTable, dOut, ids, N, C, (int)((C + EMB_COLS - 1) / EMB_COLS)};
  if (N * C < (1 << 15)) {  // small: one thread, no wake-up cost
    for (int t = 0; t < a.ntasks; t++) embedding_backward_task(&a, t, 0);
  } else {
    pool_run(embedding_backward_task, &a, a.ntasks);
  }
}

// ---------------------------------------------------------------- Node-API

// Ids must index the table (−1 allowed); V = table length / C.
static int check_ids(napi_env env, const char *op, const int32_t *ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < -1 || ids[n] >= V) {
      char m[160];
      snprintf(m, sizeof m, "ids[%lld] = %d is outside the table's %lld rows", (long long)n, ids[n], (long long)V);
      return throw_err(env, op, m);
    }
  return 1;
}

static napi_value js_embedding(napi_env env, napi_callback_info info, const char *OP, int backward) {
  ARGS(OP, 5);
  GET_INT(3, "N", N);
  GET_INT(4, "C", C);
  GET_F32(0, backward ? "dTable" : "out", backward ? 0 : MUL2(N, C), out);
  GET_F32(1, backward ? "dOut" : "table", backward ? MUL2(N, C) : 0, in);
  GET_I32(2, "ids", N, ids);
  size_t tlen;
  void *tp;
  if (!get_array(env, argv[backward ? 0 : 1], napi_float32_array, OP, backward ? "dTable" : "table", 0, &tp, &tlen))
    return NULL;
  if (C == 0) return NULL;
  if (!check_ids(env, OP, ids, N, (int64_t)tlen / C)) return NULL;
  if (backward) embedding_backward(out, in, ids, N, C);
  else embedding_forward(out, in, ids, N, C);
  return NULL;
}

static napi_value js_embedding_forward(napi_env env, napi_callback_info info) {
  return js_embedding(env, info, "embeddingForward", 0);
}
static napi_value js_embedding_backward(napi_env env, napi_callback_info info) {
  return js_embedding(env, info, "embeddingBackward", 1);
}

void register_embedding(napi_env env, napi_value exports) {
  export_fn(env, exports, "embeddingForward", js_embedding_forward);
  export_fn(env, exports, "embeddingBackward", js_embedding_backward);
}

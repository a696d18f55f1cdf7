// SwiGLU activation, elementwise.
//
// Shapes: n values (N·F in the MLP).  gate, up, out, dout, dgate, dup (n)
//
// forward:  out = silu(gate) · up,  silu(g) = g · σ(g),  σ(g) = 1 / (1 + e^−g)
// backward: dup = dout · silu(gate);  dgate = dout · up · σ(g) · (1 + g · (1 − σ(g)))
#include "ops_common.h"

typedef struct {
  float *o1, *o2;
  const float *dout, *gate, *up;
  int64_t n;
  int ntasks;
} swiglu_args;

static void swiglu_forward_task(void *ctx, int task, int thread) {
  (void)thread;
  const swiglu_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n, a->ntasks, task, &lo, &hi);
  float *restrict o = a->o1;
  const float *restrict g = a->gate, *restrict u = a->up;
  // Written as g·u / (1 + e^−g): GCC 12 turns g / (1 + e^−g) · u (and g·σ(g)·u) into a loop
  // that ran 9× slower here (5 ns an element at AVX-512; this form 0.55 ns).
  for (int64_t i = lo; i < hi; i++) {
    const float e = exp_fast(-g[i]);
    o[i] = g[i] * u[i] / (1.0f + e);
  }
}

static void swiglu_backward_task(void *ctx, int task, int thread) {
  (void)thread;
  const swiglu_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n, a->ntasks, task, &lo, &hi);
  float *dg = a->o1, *du = a->o2;  // no restrict: a caller may pass dgate === dout
  const float *d = a->dout, *restrict g = a->gate, *restrict u = a->up;
  for (int64_t i = lo; i < hi; i++) {
    float s = 1.0f / (1.0f + exp_fast(-g[i]));
    float di = d[i];
    du[i] = di * g[i] * s;
    dg[i] = di * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

// ---------------------------------------------------------------- Node-API

static napi_value js_swiglu_forward(napi_env env, napi_callback_info info) {
  const char *OP = "swigluForward";
  ARGS(OP, 4);
  GET_INT(3, "n", n);
  GET_F32(0, "out", n, out);
  GET_F32(1, "gate", n, gate);
  GET_F32(2, "up", n, up);
  swiglu_args a = {out, NULL, NULL, gate, up, n, task_count(n, 1 << 15)};
  if (n) pool_run(swiglu_forward_task, &a, a.ntasks);
  return NULL;
}

static napi_value js_swiglu_backward(napi_env env, napi_callback_info info) {
  const char *OP = "swigluBackward";
  ARGS(OP, 6);
  GET_INT(5, "n", n);
  GET_F32(0, "dgate", n, dgate);
  GET_F32(1, "dup", n, dup);
  GET_F32(2, "dout", n, dout);
  GET_F32(3, "gate", n, gate);
  GET_F32(4, "up", n, up);
  swiglu_args a = {dgate, dup, dout, gate, up, n, task_count(n, 1 << 15)};
  if (n) pool_run(swiglu_backward_task, &a, a.ntasks);
  return NULL;
}

void register_swiglu(napi_env env, napi_value exports) {
  export_fn(env, exports, "swigluForward", js_swiglu_forward);
  export_fn(env, exports, "swigluBackward", js_swiglu_backward);
}

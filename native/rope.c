// Rotary position embedding, Hugging Face rotate_half convention, in place.
//
// Shapes: B batch, T time, H heads, D head size (even), P = D/2.
//   x, dx (B, T, H, D); cos, sin (maxT, P), row p for position p; positions pos0 .. pos0+T−1
//
// forward:  for i < P, θ = (pos0 + t) · invFreq[i]:
//           x'[i] = x[i]·cos θ − x[i+P]·sin θ;   x'[i+P] = x[i+P]·cos θ + x[i]·sin θ
// backward: the transpose of that rotation, i.e. the rotation by −θ (sin negated).
#include "ops_common.h"

typedef struct {
  float *x;
  const float *cos, *sin;
  int64_t B, T, H, D, pos0;
  float sign;
  int ntasks;
} rope_args;

static void rope_task(void *ctx, int task, int thread) {
  (void)thread;
  const rope_args *a = ctx;
  int64_t lo, hi, P = a->D / 2;
  chunk_range(a->B * a->T, a->ntasks, task, &lo, &hi);
  for (int64_t bt = lo; bt < hi; bt++) {
    int64_t t = bt % a->T;
    const float *restrict c = a->cos + (a->pos0 + t) * P, *restrict s0 = a->sin + (a->pos0 + t) * P;
    for (int64_t h = 0; h < a->H; h++) {
      float *restrict x1 = a->x + (bt * a->H + h) * a->D, *restrict x2 = x1 + P;
      for (int64_t i = 0; i < P; i++) {
        float s = a->sign * s0[i], u = x1[i], v = x2[i];
        x1[i] = u * c[i] - v * s;
        x2[i] = v * c[i] + u * s;
      }
    }
  }
}

static void rope_apply(float *x, const float *cos, const float *sin, int64_t B, int64_t T, int64_t H, int64_t D,
                int64_t pos0, float sign) {
  rope_args a = {x, cos, sin, B, T, H, D, pos0, sign, task_count(B * T * H * D, 1 << 15)};
  pool_run(rope_task, &a, a.ntasks);
}

// ---------------------------------------------------------------- Node-API

static napi_value js_rope(napi_env env, napi_callback_info info, const char *OP, float sign) {
  ARGS(OP, 8);
  GET_INT(3, "B", B);
  GET_INT(4, "T", T);
  GET_INT(5, "H", H);
  GET_INT(6, "D", D);
  GET_INT(7, "pos0", pos0);
  if (D % 2) { throw_err(env, OP, "head size D must be even"); return NULL; }
  GET_F32(0, sign > 0 ? "x" : "dx", MUL4(B, T, H, D), x);
  GET_F32(1, "cos", MUL2(pos0 + T, D / 2), cos);
  GET_F32(2, "sin", MUL2(pos0 + T, D / 2), sin);
  if (B * T * H * D == 0) return NULL;
  rope_apply(x, cos, sin, B, T, H, D, pos0, sign);
  return NULL;
}

static napi_value js_rope_forward(napi_env env, napi_callback_info info) {
  return js_rope(env, info, "ropeForward", 1.0f);
}
static napi_value js_rope_backward(napi_env env, napi_callback_info info) {
  return js_rope(env, info, "ropeBackward", -1.0f);
}

void register_rope(napi_env env, napi_value exports) {
  export_fn(env, exports, "ropeForward", js_rope_forward);
  export_fn(env, exports, "ropeBackward", js_rope_backward);
}

// Small helpers shared by the Node-API wrappers of every kernel file.
//
// Kernels never print or exit: a wrapper validates its arguments, and on a bad argument
// throws a JS error that names the op, the argument and what was wrong. Tensors are JS
// typed arrays (Float32Array / Int32Array); kernels work on their memory in place, with
// no copy (a subarray view passes its offset pointer).
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "pool.h"

#define MAX_ARGS 24

// Fetch up to MAX_ARGS arguments; on a wrong count throw and return NULL from the wrapper.
#define ARGS(op, n)                                                                 \
  size_t argc = MAX_ARGS;                                                           \
  napi_value argv[MAX_ARGS];                                                        \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                             \
  if ((int)argc < (n)) {                                                            \
    char _m[160];                                                                   \
    snprintf(_m, sizeof _m, "%s: expected %d arguments, got %d", op, (int)(n), (int)argc); \
    napi_throw_type_error(env, NULL, _m);                                           \
    return NULL;                                                                    \
  }

static inline int throw_err(napi_env env, const char *op, const char *what) {
  char m[256];
  snprintf(m, sizeof m, "%s: %s", op, what);
  napi_throw_error(env, "ERR_MYNAH_KERNEL", m);
  return 0;
}

// Checked shape arithmetic: the product of non-negative dimensions, or −1 when it overflows
// int64 (get_array then refuses it: a wrapped product must never pass a length check).
static inline int64_t shape_mul(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
  return r;
}
#define MUL2(a, b) shape_mul((a), (b))
#define MUL3(a, b, c) shape_mul(shape_mul((a), (b)), (c))
#define MUL4(a, b, c, d) shape_mul(shape_mul(shape_mul((a), (b)), (c)), (d))

// A typed array of the given type with at least `need` elements. need < 0 means the shape
// product overflowed (see shape_mul) and is an error, never "any length".
static inline int get_array(napi_env env, napi_value v, napi_typedarray_type want, const char *op,
                            const char *name, int64_t need, void **data, size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) {
    char m[160];
    snprintf(m, sizeof m, "%s must be a %s", name, want == napi_float32_array ? "Float32Array" : "Int32Array");
    return throw_err(env, op, m);
  }
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  napi_get_typedarray_info(env, v, &t, len, data, &ab, &off);
  if (t != want) {
    char m[160];
    snprintf(m, sizeof m, "%s must be a %s", name, want == napi_float32_array ? "Float32Array" : "Int32Array");
    return throw_err(env, op, m);
  }
  if (need < 0) {
    char m[200];
    snprintf(m, sizeof m, "the shapes overflow: the element count of %s does not fit in 64 bits", name);
    return throw_err(env, op, m);
  }
  if ((uint64_t)*len < (uint64_t)need) {
    char m[200];
    snprintf(m, sizeof m, "%s has %zu elements, the shapes need %lld", name, *len, (long long)need);
    return throw_err(env, op, m);
  }
  return 1;
}

static inline int get_f32(napi_env env, napi_value v, const char *op, const char *name, int64_t need, float **p) {
  size_t len;
  return get_array(env, v, napi_float32_array, op, name, need, (void **)p, &len);
}

static inline int get_i32(napi_env env, napi_value v, const char *op, const char *name, int64_t need, int32_t **p) {
  size_t len;
  return get_array(env, v, napi_int32_array, op, name, need, (void **)p, &len);
}

static inline int get_int(napi_env env, napi_value v, const char *op, const char *name, int64_t *out) {
  double d;
  // 2^53: every integer below it is exact in a double, and the cast below is defined
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d < 9007199254740992.0) || d != (double)(int64_t)d) {
    char m[160];
    snprintf(m, sizeof m, "%s must be a non-negative integer below 2^53", name);
    return throw_err(env, op, m);
  }
  *out = (int64_t)d;
  return 1;
}

// A dimension the kernel keeps in a C int: a non-negative integer below 2^30 (so sums like
// T + BK − 1 and products with small factors stay in range too).
#define MAX_DIM ((int64_t)1 << 30)
static inline int get_dim(napi_env env, napi_value v, const char *op, const char *name, int64_t *out) {
  if (!get_int(env, v, op, name, out)) return 0;
  if (*out >= MAX_DIM) {
    char m[160];
    snprintf(m, sizeof m, "%s = %lld is too large (at most 2^30 − 1)", name, (long long)*out);
    return throw_err(env, op, m);
  }
  return 1;
}

static inline int get_num(napi_env env, napi_value v, const char *op, const char *name, double *out) {
  if (napi_get_value_double(env, v, out) != napi_ok) {
    char m[160];
    snprintf(m, sizeof m, "%s must be a number", name);
    return throw_err(env, op, m);
  }
  return 1;
}

static inline int get_bool(napi_env env, napi_value v, const char *op, const char *name, bool *out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    char m[160];
    snprintf(m, sizeof m, "%s must be a boolean", name);
    return throw_err(env, op, m);
  }
  return 1;
}

static inline napi_value make_num(napi_env env, double d) {
  napi_value r;
  napi_create_double(env, d, &r);
  return r;
}

// Every exported function runs under the pool's compute lock (pool.h): the pool and the
// kernels' scratch buffers are per process, and a Worker may call in while the main thread
// does. The wrapper cb is passed as the function's data and called with the lock held.
static napi_value locked_call(napi_env env, napi_callback_info info) {
  void *data;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  pool_lock();
  napi_value r = ((napi_callback)data)(env, info);
  pool_unlock();
  return r;
}

static inline void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, locked_call, (void *)cb, &fn);
  napi_set_named_property(env, exports, name, fn);
}

// Each kernel file registers its own functions (declared, per ISA level, in kernels.h).
#include "kernels.h"

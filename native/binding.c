// Node-API entry point: the thread pool controls plus each kernel file's functions.
#include "napi_util.h"
#include "pool.h"

// setThreads(n): n = 0 or more than the CPUs → every CPU of the affinity mask. Returns the count.
static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  ARGS("setThreads", 1);
  int64_t n;
  if (!get_int(env, argv[0], "setThreads", "threads", &n)) return NULL;
  return make_num(env, pool_init(n > 4096 ? 0 : (int)n));
}

static napi_value js_threads(napi_env env, napi_callback_info info) {
  return make_num(env, pool_threads());
}

static napi_value js_cpus(napi_env env, napi_callback_info info) {
  return make_num(env, pool_cpus());
}

static napi_value js_simd(napi_env env, napi_callback_info info) {
  const char *s =
#if defined(__AVX512F__)
      "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
      "avx2";
#elif defined(__ARM_NEON)
      "neon";
#else
      "portable";
#endif
  napi_value r;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
  return r;
}

// This environment (the main thread or one Worker) no longer uses the pool; the last one out
// shuts it down.
static void cleanup(void *arg) { (void)arg; pool_env_release(); }

static napi_value init(napi_env env, napi_value exports) {
  export_fn(env, exports, "setThreads", js_set_threads);
  export_fn(env, exports, "threads", js_threads);
  export_fn(env, exports, "cpus", js_cpus);
  export_fn(env, exports, "simd", js_simd);
  register_gemm(env, exports);
  register_ops(env, exports);
  pool_env_add();
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

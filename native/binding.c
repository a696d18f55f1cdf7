// Node-API entry point: the thread pool controls, and the kernels of the instruction-set level
// chosen for this CPU.
//
// The kernel files are compiled once per level (kernels.h, binding.gyp). At load, the best
// level this CPU runs is chosen by CPUID (and the OS's saved-register support, XGETBV):
// avx512 (x86-64-v4), avx2 (x86-64-v3), else portable; MYNAH_SIMD=portable|avx2|avx512 forces
// one, and a level the CPU lacks (or an unknown name) is refused with an error naming it,
// rather than dying later of an illegal instruction. MYNAH_SIMD_DISABLE hides levels. This file and pool.c are compiled for
// the baseline of the architecture, so loading never executes an instruction the CPU lacks.
#include <stdlib.h>
#include <string.h>
#include "napi_util.h"
#include "pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define MYNAH_X86 1
void mynah_register_kernels_portable(napi_env env, napi_value exports);
void mynah_register_kernels_avx2(napi_env env, napi_value exports);
void mynah_register_kernels_avx512(napi_env env, napi_value exports);

static unsigned long long xgetbv0(void) {
  unsigned lo, hi;
  __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}

// x86-64-v3 (what the avx2 level is compiled for) and whether the OS saves the ymm registers.
static int cpu_avx2(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  const unsigned need1 = (1u << 12) | (1u << 19) | (1u << 20) | (1u << 22) | (1u << 23) | (1u << 27) | (1u << 28) | (1u << 29);
  // FMA, SSE4.1, SSE4.2, MOVBE, POPCNT, OSXSAVE, AVX, F16C
  if ((c & need1) != need1) return 0;
  if ((xgetbv0() & 0x6) != 0x6) return 0;  // xmm and ymm state enabled by the OS
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const unsigned need7 = (1u << 3) | (1u << 5) | (1u << 8);  // BMI1, AVX2, BMI2
  if ((b & need7) != need7) return 0;
  if (!__get_cpuid(0x80000001, &a, &b, &c, &d) || !(c & (1u << 5))) return 0;  // LZCNT
  return 1;
}

// x86-64-v4: v3 plus AVX-512 F, DQ, CD, BW, VL, with the OS saving the opmask and zmm state.
static int cpu_avx512(void) {
  unsigned a, b, c, d;
  if (!cpu_avx2()) return 0;
  if ((xgetbv0() & 0xe6) != 0xe6) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  const unsigned need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
  return (b & need) == need;
}
#else
void mynah_register_kernels_portable(napi_env env, napi_value exports);
#endif

static int cpu_any(void) { return 1; }

typedef struct {
  const char *name;  // the value of MYNAH_SIMD, and simd() once chosen
  void (*reg)(napi_env env, napi_value exports);
  int (*supported)(void);
} level;

// Lowest first; the best supported one is the default.
static const level levels[] = {
#if MYNAH_X86
    {"portable", mynah_register_kernels_portable, cpu_any},
    {"avx2", mynah_register_kernels_avx2, cpu_avx2},
    {"avx512", mynah_register_kernels_avx512, cpu_avx512},
#elif defined(__ARM_NEON)
    {"neon", mynah_register_kernels_portable, cpu_any},  // the portable code; NEON is baseline on arm64
#else
    {"portable", mynah_register_kernels_portable, cpu_any},
#endif
};
#define NLEVELS ((int)(sizeof levels / sizeof levels[0]))

// MYNAH_SIMD_DISABLE=avx512[,avx2]: treat these levels as unsupported (as NumPy's
// NPY_DISABLE_CPU_FEATURES does): the default falls back below them, and forcing one is
// refused, as on a CPU without it. The lowest level cannot be disabled.
static int disabled(int i) {
  const char *list = getenv("MYNAH_SIMD_DISABLE");
  if (!list || i == 0) return 0;
  size_t n = strlen(levels[i].name);
  for (const char *p = list; (p = strstr(p, levels[i].name)) != NULL; p += n)
    if ((p == list || p[-1] == ',' || p[-1] == ' ') && (p[n] == 0 || p[n] == ',' || p[n] == ' ')) return 1;
  return 0;
}

static int usable(int i) { return !disabled(i) && levels[i].supported(); }

// Picks the level (MYNAH_SIMD or the best supported). On a bad MYNAH_SIMD writes why into err.
static const level *choose_level(char *err, size_t errlen) {
  const char *want = getenv("MYNAH_SIMD");
  const level *best = &levels[0];
  for (int i = 0; i < NLEVELS; i++)
    if (usable(i)) best = &levels[i];
  if (!want || !*want) return best;
  char names[96] = "", ok[96] = "";
  for (int i = 0; i < NLEVELS; i++) {
    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", levels[i].name);
    if (usable(i)) snprintf(ok + strlen(ok), sizeof ok - strlen(ok), "%s%s", *ok ? ", " : "", levels[i].name);
  }
  for (int i = 0; i < NLEVELS; i++) {
    // "portable" names the one level where there is no other (arm64 reports it as neon)
    int match = strcmp(want, levels[i].name) == 0 || (NLEVELS == 1 && strcmp(want, "portable") == 0);
    if (!match) continue;
    if (usable(i)) return &levels[i];
    if (disabled(i))
      snprintf(err, errlen, "MYNAH_SIMD=%s: %s is disabled by MYNAH_SIMD_DISABLE (usable: %s)", want, levels[i].name, ok);
    else
      snprintf(err, errlen, "MYNAH_SIMD=%s: this CPU does not support %s (it supports: %s)", want, levels[i].name, ok);
    return NULL;
  }
  snprintf(err, errlen, "MYNAH_SIMD=%s: unknown instruction-set level (one of: %s)", want, names);
  return NULL;
}

static const level *chosen;

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

// simd(): the level whose kernels this addon runs.
static napi_value js_simd(napi_env env, napi_callback_info info) {
  napi_value r;
  napi_create_string_utf8(env, chosen->name, NAPI_AUTO_LENGTH, &r);
  return r;
}

// simdLevels(): every level this CPU supports, lowest first (each one can be forced with MYNAH_SIMD).
static napi_value js_simd_levels(napi_env env, napi_callback_info info) {
  napi_value arr, s;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (int i = 0; i < NLEVELS; i++) {
    if (!usable(i)) continue;
    napi_create_string_utf8(env, levels[i].name, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, k++, s);
  }
  return arr;
}

// This environment (the main thread or one Worker) no longer uses the pool; the last one out
// shuts it down.
static void cleanup(void *arg) { (void)arg; pool_env_release(); }

static napi_value init(napi_env env, napi_value exports) {
  char err[256];
  const level *l = choose_level(err, sizeof err);
  if (!l) {
    napi_throw_error(env, "ERR_MYNAH_SIMD", err);
    return NULL;
  }
  chosen = l;  // the same in every environment: MYNAH_SIMD is the process's
  export_fn(env, exports, "setThreads", js_set_threads);
  export_fn(env, exports, "threads", js_threads);
  export_fn(env, exports, "cpus", js_cpus);
  export_fn(env, exports, "simd", js_simd);
  export_fn(env, exports, "simdLevels", js_simd_levels);
  chosen->reg(env, exports);
  pool_env_add();
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

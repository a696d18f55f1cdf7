// The kernel files, and how one addon holds them once per instruction-set level.
//
// Every file in MYNAH_KERNELS is compiled once per level (binding.gyp: a static library per
// level, each with its own -m flags and -DMYNAH_LEVEL=<level>): on x86-64 portable (SSE2),
// avx2 (x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE) and avx512 (x86-64-v4: + AVX-512
// F/BW/DQ/VL/CD); elsewhere (arm64: NEON) one portable level. Inside a file the usual
// `#if defined(__AVX512F__) ... #elif defined(__AVX2__) ...` picks the code for the level being
// compiled. binding.c picks one level at load time by CPUID (MYNAH_SIMD forces a lower one).
//
// So that the levels' copies do not clash in one addon, a kernel file's only external
// function is `void register_<file>(napi_env env, napi_value exports)` (everything else is
// static), and the declaration below gives it a per-level symbol name (register_gemm_avx2, …)
// through an asm label, which its unchanged definition inherits. Functions one kernel file
// calls in another (gemm() from optim.c) are declared the same way, with MYNAH_LEVEL_SYM
// (gemm.h). A forgotten `static` fails loudly at link time (multiple definition).
//
// Adding a kernel file native/<name>.c: write it in the usual style with a
// `void register_<name>(napi_env env, napi_value exports)` that export_fn()s its ops, and add
// X(<name>) to the list below. That is all: the build (scripts/kernel-files.mjs, read by
// binding.gyp) and the registration (ops.c) both come from this list.
#pragma once
#include <node_api.h>

#define MYNAH_KERNELS(X) \
  X(gemm)                \
  X(gemm_small)          \
  X(gemm_bf16)           \
  X(embedding)           \
  X(norm)                \
  X(rope)                \
  X(attention)           \
  X(attention_decode)    \
  X(swiglu)              \
  X(crossentropy)        \
  X(optim)               \
  X(gemv_quant)

#define MYNAH_STR2(x) #x
#define MYNAH_STR(x) MYNAH_STR2(x)
#ifdef MYNAH_LEVEL
// The symbol of `name` in this level's copy: name_<level> (with the platform's C prefix, "_" on macOS).
#define MYNAH_LEVEL_SYM(name) __asm__(MYNAH_STR(__USER_LABEL_PREFIX__) #name "_" MYNAH_STR(MYNAH_LEVEL))
#else
#define MYNAH_LEVEL_SYM(name)
#endif

#define MYNAH_DECLARE_REGISTER(name) \
  void register_##name(napi_env env, napi_value exports) MYNAH_LEVEL_SYM(register_##name);
MYNAH_KERNELS(MYNAH_DECLARE_REGISTER)

// ops.c: registers every kernel file of this level (mynah_register_kernels_<level>).
void mynah_register_kernels(napi_env env, napi_value exports) MYNAH_LEVEL_SYM(mynah_register_kernels);

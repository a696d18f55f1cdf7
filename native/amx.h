// AMX (Advanced Matrix Extensions) support shared by the kernel files that use tiles:
// what the CPU has, Linux's permission to use the tile registers, the MYNAH_SIMD_DISABLE
// switches, and loading a tile configuration.
//
// Why a permission: the tile data (8 tiles × 1 KiB) is an XSAVE state that Linux does not
// give a process until it asks (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA = 18),
// so that every signal frame need not carry 8 KiB. The grant is per process and covers every
// thread, those already running included; asking again is harmless. Without it the first
// tile instruction dies of SIGILL.
//
// Header-only (static functions), so each level's copy of a kernel file gets its own; only
// the avx512 level (x86-64-v4) compiles tile code, with per-function
// __attribute__((target("amx-tile,amx-int8"))) (or amx-bf16).
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

// MYNAH_SIMD_DISABLE names `name` (a comma- or space-separated list, as binding.c reads it).
static inline int mynah_simd_disabled(const char *name) {
  const char *list = getenv("MYNAH_SIMD_DISABLE");
  size_t n = strlen(name);
  for (const char *p = list; p && (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',' || p[-1] == ' ') && (p[n] == 0 || p[n] == ',' || p[n] == ' ')) return 1;
  return 0;
}

// CPUID.(EAX=7, ECX=0):EDX: AMX-BF16 bit 22, AMX-TILE bit 24, AMX-INT8 bit 25.
enum { MYNAH_AMX_BF16 = 1 << 22, MYNAH_AMX_TILE = 1 << 24, MYNAH_AMX_INT8 = 1 << 25 };

// Whether the CPU has AMX-TILE and the given features (MYNAH_AMX_INT8, MYNAH_AMX_BF16) and the
// OS has granted this process the tile data state (asked for here, once is enough).
static inline int mynah_amx_usable(unsigned features) {
#if defined(__x86_64__) && defined(__linux__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  unsigned need = MYNAH_AMX_TILE | features;
  if ((d & need) != need) return 0;
  return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
  (void)features;
  return 0;
#endif
}

// AVX512_BF16 (VDPBF16PS, VCVTNE2PS2BF16): CPUID.(EAX=7, ECX=1):EAX bit 5, unless
// MYNAH_SIMD_DISABLE names avx512bf16 (callers are at the avx512 level, chosen only when the OS
// saves zmm state).
static inline int mynah_avx512bf16_usable(void) {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return ((a >> 5) & 1) && !mynah_simd_disabled("avx512bf16");
#else
  return 0;
#endif
}

// bf16 work on AMX tiles: AVX512_BF16 as above (the conversions), AMX-TILE and AMX-BF16 with
// Linux's grant, and `amx` not in MYNAH_SIMD_DISABLE. What gemm_bf16.c and the bf16 attention
// both decide by.
static inline int mynah_amx_bf16_usable(void) {
  return mynah_avx512bf16_usable() && !mynah_simd_disabled("amx") && mynah_amx_usable(MYNAH_AMX_BF16);
}

// Palette 1: per tile, rows (≤ 16) and bytes per row (≤ 64); a tile with 0 rows is unused.
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed)) mynah_amx_config;

static inline void mynah_amx_config_set(mynah_amx_config *c, int tile, int rows, int colsb) {
  c->rows[tile] = (uint8_t)rows;
  c->colsb[tile] = (uint16_t)colsb;
}

#if defined(__x86_64__)
// Loads the configuration into this thread's tile unit (each thread before its tile work).
// Not _tile_loadconfig: GCC 12's declares only 8 of the 64 bytes as read, so the stores that
// fill the rest may be dropped as dead.
__attribute__((target("amx-tile"))) static inline void mynah_amx_load_config(const mynah_amx_config *c) {
  __asm__ __volatile__("ldtilecfg %0" : : "m"(*c));
}
// Tiles 0–3 as the 32 × 32 float32 block at C (row stride ldc floats), 16 × 16 each: loaded
// from it (load ≠ 0), or zero; and stored back. The C side of every 32 × 32 tile kernel.
__attribute__((target("amx-tile"))) static inline void mynah_amx_c_begin(const float *C, size_t ldc, int load) {
  if (load) {
    _tile_loadd(0, C, (long)ldc * 4);
    _tile_loadd(1, C + 16, (long)ldc * 4);
    _tile_loadd(2, C + 16 * ldc, (long)ldc * 4);
    _tile_loadd(3, C + 16 * ldc + 16, (long)ldc * 4);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
}
__attribute__((target("amx-tile"))) static inline void mynah_amx_c_store(float *C, size_t ldc) {
  _tile_stored(0, C, (long)ldc * 4);
  _tile_stored(1, C + 16, (long)ldc * 4);
  _tile_stored(2, C + 16 * ldc, (long)ldc * 4);
  _tile_stored(3, C + 16 * ldc + 16, (long)ldc * 4);
}
// Palette 1 with all eight tiles 16 rows × 64 bytes (the 32 × 32 bf16 blocks: four C tiles,
// two A, two B), loaded into this thread's tile unit.
__attribute__((target("amx-tile"))) static inline void mynah_amx_begin_16x64(void) {
  mynah_amx_config c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 8; t++) mynah_amx_config_set(&c, t, 16, 64);
  mynah_amx_load_config(&c);
}
#if defined(__AVX512F__)
// Two rows' 16 floats → 16 bf16 pair words, word c = (bf16(lo[c]), bf16(hi[c])), lo in the low
// half: a B operand with k along the rows. VCVTNE2PS2BF16 rounds to nearest even; one VPERMW
// interleaves its [lo 0..15, hi 0..15] halves. For gemm_bf16's packing and the bf16 attention.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static inline __m512i mynah_bf16_rowpairs16(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                                       19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}
#endif
// Returns the tiles to their initial state (so that the OS need not save them on a switch).
__attribute__((target("amx-tile"))) static inline void mynah_amx_release(void) { __asm__ __volatile__("tilerelease" ::); }
#endif

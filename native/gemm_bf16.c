// bf16 GEMM for mixed-precision training: C = alpha · bf16(op(A)) · bf16(op(B)) + beta · C.
//
// Shapes and forms as gemm() (gemm.h): op(A) (M, K), op(B) (K, N), C (M, N), row-major;
// training uses y = x·Wᵀ (NT), dX = dY·W (NN), dW += dYᵀ·X (TN). Operands arrive and C
// leaves as float32 (master weights and activations stay float32); the packing step rounds
// each operand to bfloat16 (round to nearest even; float32 subnormals become signed zero;
// NaN stays NaN, Inf stays Inf) and lays it out as k-pairs: one 32-bit word holds
// (op[k = 2p], op[k = 2p + 1]) in its low and high half, the operand layout of VDPBF16PS.
// Products of two bf16 values are exact in float32 and accumulate in float32.
//
// Two micro-kernels read the same packed panels:
//   - VDPBF16PS (AVX512_BF16, e.g. Intel Sapphire Rapids, AMD Zen 4/5): 16 lanes x 2 products
//     per instruction, twice the multiply-adds of a float32 FMA. The instruction adds the
//     odd (k = 2p + 1) product first, then the even one, each as a float32 FMA rounded to
//     nearest even with subnormals flushed (Intel SDM, VDPBF16PS).
//   - the fallback (AVX-512F without BF16, AVX2, SSE2, NEON): float32 vectors, the two
//     products of a pair added in that same order. Since a product of two bf16 values is
//     exact in float32, `c + a·b` rounds once whether or not the compiler fuses it, exactly as
//     the instruction's FMA does; with flush-to-zero set in the MXCSR for the duration, the
//     fallback gives bitwise VDPBF16PS's results (a product below 2^-126 in magnitude is the
//     one case where they may differ). test/gemm-bf16.test.ts checks the equality.
// The path is chosen at run time: the avx512 level's copy of this file uses VDPBF16PS when
// CPUID reports AVX512_BF16, unless MYNAH_SIMD_DISABLE names avx512bf16 (tests force the
// fallback that way); the other levels always fall back. gemmBf16Info() says which runs.
//
// Blocking and threads as gemm.c (GotoBLAS): op(B) packed once per group of K slices and
// shared; tasks over row (and column) chunks of C, each packing its own op(A) rows. Each
// element of C is summed by one task over K in a fixed order, so results do not depend on
// the thread count. Products of every size take the blocked path (training shapes are
// large; decoding stays float32). The AMX path has its own task (compute_task_amx): one
// 32-row panel of op(A) in L1 at a time, the next one packed or prefetched under the tile
// work. With K in several slices and C rows narrower than a page, the panel's C stays in a
// scratch block across the slices and leaves once, with non-temporal stores; otherwise the
// tiles store straight into C. The same sums in the same order.
//
// Peaks (for the bench and MFU) are the best of many ~1 ms register-only tries, and
// gemmBf16Bandwidth() measures the memory rates the float32 operands and C stream at.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "amx.h"
#include "napi_util.h"
#include "pool.h"
#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#endif

// ---- tile sizes per level: MR x NR accumulators, KC (k, even) per slice, NC columns per L2 block ----
#if defined(__AVX512F__)
#define ISA "avx512"
#define VB 64
#define MR 12
#define NR 32  // 2 zmm: 24 accumulators, 2 B vectors (4 in the fallback), 1-2 broadcasts
#elif defined(__AVX2__)
#define ISA "avx2"
#define VB 32
#define MR 4  // fallback only: 8 accumulators + 4 B halves + 2 broadcasts in 16 ymm
#define NR 16
#else
#define ISA "portable"
#define VB 16
#define MR 4
#define NR 8
#endif
#define VL (VB / 4)
#define NV (NR / VL)
#ifndef BF_KC
#define BF_KC 512  // bf16 A micro-panel 12 x 512 x 2 B = 12 KiB in L1
#endif
#define KC BF_KC
#ifndef BF_NC
#define BF_NC 256  // a (KC, NC) bf16 block of B: 256 KiB in L2
#endif
#define NC BF_NC
#define MC (MR * 128)
#define NS (NC * 16)
#define BS_WORDS (1L << 20)  // packed op(B) per synchronization: 4 MiB of pairs
#define MT_FLOPS (1L << 18)
#define MAX_POOL 256

typedef float vf __attribute__((vector_size(VB)));
typedef uint32_t vu __attribute__((vector_size(VB)));

// ---- float32 -> bf16 (round to nearest even), the one conversion every path uses ----

// The bf16 bits of x in the low 16 bits: RNE; a float32 subnormal becomes a signed zero (as
// VCVTNEPS2BF16 does); a NaN stays a (quiet) NaN, whatever rounding would do to its payload.
static inline uint32_t bf16_bits(uint32_t u) {
  uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  r = (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : r;
  r = (u & 0x7f800000u) == 0 ? ((u >> 16) & 0x8000u) : r;
  return r & 0xffffu;
}

static inline uint32_t f2u(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

// One k-pair word: lo = k even, hi = k odd.
static inline uint32_t pair(float lo, float hi) { return bf16_bits(f2u(lo)) | bf16_bits(f2u(hi)) << 16; }

#if defined(__AVX512F__)
// The packing converts with VCVTNE2PS2BF16 where the CPU has AVX512_BF16 (every CPU with AMX
// or VDPBF16PS: one instruction for 32 floats), else with the integer emulation below. Both
// give bf16_bits(): the instruction rounds to nearest even, treats float32 subnormal inputs as
// zero (keeping the sign), and quiets a NaN by setting bit 6 of its top half (Intel SDM,
// VCVTNE2PS2BF16, convert_fp32_to_bfloat16), so the packed operands, and the results, are the
// same bits either way (test/gemm-bf16.test.ts compares the paths bitwise).
#define BF16_TARGET __attribute__((target("avx512bf16")))
#define PK_TARGET BF16_TARGET
static int cvt_hw;  // VCVTNE2PS2BF16 in the packing: set with the path (gemm_bf16_blocked)

// 16 floats -> their bf16 bits in the low half of each lane (bf16_bits, vectorized).
static inline __m512i cvt16(__m512 x) {
  __m512i u = _mm512_castps_si512(x), hi = _mm512_srli_epi32(u, 16);
  __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  __mmask16 sub = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, sub, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
  return r;
}

// words[p] = pair(x[2p], x[2p+1]) for 16 pairs read from 32 contiguous floats (masked by n floats):
// the 32 bf16 values in memory order.
PK_TARGET static inline __m512i pairs16(const float *x, int n) {
  __m512 lo, hi;
  if (n >= 32) {
    lo = _mm512_loadu_ps(x);
    hi = _mm512_loadu_ps(x + 16);
  } else {
    lo = _mm512_maskz_loadu_ps((__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1), x);
    hi = _mm512_maskz_loadu_ps((__mmask16)(n <= 16 ? 0 : (1u << (n - 16)) - 1), x + 16);
  }
  if (cvt_hw) return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  __m256i a = _mm512_cvtepi32_epi16(cvt16(lo)), b = _mm512_cvtepi32_epi16(cvt16(hi));
  return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

// words[c] = pair(lo[c], hi[c]) for 16 columns of two k rows.
PK_TARGET static inline __m512i rowpairs16(__m512 lo, __m512 hi) {
  if (cvt_hw) return mynah_bf16_rowpairs16(lo, hi);
  return _mm512_or_si512(cvt16(lo), _mm512_slli_epi32(cvt16(hi), 16));
}
#else
#define PK_TARGET
#endif

#if defined(__AVX512F__)
#include "transpose16.h"
// The same transpose on 32-bit words (bf16 pairs).
static inline void transpose16i(__m512i q[16]) {
  __m512 r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_castsi512_ps(q[i]);
  transpose16(r);
  for (int i = 0; i < 16; i++) q[i] = _mm512_castps_si512(r[i]);
}
#endif

// ---- packing: a panel of w (<= W) rows of a matrix stored along k, or w columns stored across k ----

// rows[r] runs along k (A (M, K) untransposed; B (N, K) transposed): dst[p·W + r] = pair(rows[r][2p], rows[r][2p+1]),
// for k in [0, kc); rows r >= w and k >= kc are zero.
PK_TARGET static void pack_rows(const float *src, size_t ld, int w, int kc, int W, uint32_t *restrict dst) {
  int kp = (kc + 1) / 2, p = 0;
#if defined(__AVX512F__)
  for (int r0 = 0; r0 < W; r0 += 16) {
    int n = w - r0 < 16 ? w - r0 : 16;
    if (n <= 0) n = 0;
    __mmask16 keep = (__mmask16)((1u << (W - r0 < 16 ? W - r0 : 16)) - 1);
    for (p = 0; 2 * p + 32 <= kc; p += 16) {
      __m512i q[16];
      for (int r = 0; r < 16; r++) q[r] = r < n ? pairs16(src + (size_t)(r0 + r) * ld + 2 * p, 32) : _mm512_setzero_si512();
      transpose16i(q);
      for (int t = 0; t < 16; t++) _mm512_mask_storeu_epi32(dst + (size_t)(p + t) * W + r0, keep, q[t]);
    }
  }
#endif
  for (; p < kp; p++)
    for (int r = 0; r < W; r++) {
      const float *x = src + (size_t)r * ld + 2 * p;
      dst[(size_t)p * W + r] = r >= w ? 0 : pair(x[0], 2 * p + 1 < kc ? x[1] : 0.0f);
    }
}

// src[k·ld + c] runs along the columns (A (K, M) transposed; B (K, N)): dst[p·W + c] = pair(src[2p][c], src[2p+1][c]).
PK_TARGET static void pack_cols(const float *src, size_t ld, int w, int kc, int W, uint32_t *restrict dst) {
  int kp = (kc + 1) / 2;
  for (int p = 0; p < kp; p++, dst += W) {
    const float *lo = src + (size_t)(2 * p) * ld, *hi = lo + ld;
    int has_hi = 2 * p + 1 < kc, c = 0;
#if defined(__AVX512F__)
    for (; c < W; c += 16) {
      int n = w - c < 16 ? w - c : 16;
      __mmask16 m = (__mmask16)(n <= 0 ? 0 : (1u << n) - 1);
      __m512 l = _mm512_maskz_loadu_ps(m, lo + c), h = has_hi ? _mm512_maskz_loadu_ps(m, hi + c) : _mm512_setzero_ps();
      __mmask16 all = (__mmask16)((1u << (W - c < 16 ? W - c : 16)) - 1);
      _mm512_mask_storeu_epi32(dst + c, all, rowpairs16(l, h));
    }
#endif
    for (; c < W; c++) dst[c] = c >= w ? 0 : pair(lo[c], has_hi ? hi[c] : 0.0f);
  }
}

typedef struct {
  int transA, transB, M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} bf_args;

// op(A) rows [i0, i0 + mc), k [k0, k0 + kc) -> MR-tall panels of kq pair rows each (kq ≥ kp: zeros).
PK_TARGET static void pack_a(const bf_args *g, int i0, int mc, int k0, int kc, int kq, uint32_t *restrict Ap) {
  int kp = (kc + 1) / 2;
  for (int ip = 0; ip < mc; ip += MR, Ap += (size_t)MR * kq) {
    int m = mc - ip < MR ? mc - ip : MR;
    if (g->transA) pack_cols(g->A + (size_t)k0 * g->lda + i0 + ip, g->lda, m, kc, MR, Ap);
    else pack_rows(g->A + (size_t)(i0 + ip) * g->lda + k0, g->lda, m, kc, MR, Ap);
    if (kq > kp) memset(Ap + (size_t)kp * MR, 0, (size_t)(kq - kp) * MR * sizeof(uint32_t));
  }
}

// op(B) k [k0, k0 + kc), columns [j0, j0 + nc) -> NR-wide panels of kq pair rows each (kq ≥ kp: zeros).
PK_TARGET static void pack_b(const bf_args *g, int k0, int kc, int kq, int j0, int nc, uint32_t *restrict Bp) {
  int kp = (kc + 1) / 2;
#if defined(__AVX512F__)
  if (!g->transB) {
    // B (K, N) rows run across the panels: read each pair of rows once, whole (the
    // panel-by-panel order reads 128-byte pieces at a 4·N-byte stride, which the hardware
    // prefetchers do not follow), and scatter 16-column pieces to their panels.
    int np = (nc + NR - 1) / NR;
    for (int p = 0; p < kq; p++) {
      const float *lo = g->B + (size_t)(k0 + 2 * p) * g->ldb + j0, *hi = lo + g->ldb;
      int has_lo = p < kp, has_hi = 2 * p + 1 < kc;
      for (int c = 0; c < np * NR; c += 16) {
        int n = nc - c < 16 ? nc - c : 16;
        __mmask16 m = (__mmask16)(n <= 0 || !has_lo ? 0 : (1u << n) - 1);
        __m512 l = _mm512_maskz_loadu_ps(m, lo + c), h = has_hi ? _mm512_maskz_loadu_ps(m, hi + c) : _mm512_setzero_ps();
        _mm512_storeu_si512(Bp + (size_t)(c / NR) * NR * kq + (size_t)p * NR + c % NR, rowpairs16(l, h));
      }
    }
    return;
  }
#endif
  for (int jp = 0; jp < nc; jp += NR, Bp += (size_t)NR * kq) {
    int n = nc - jp < NR ? nc - jp : NR;
    if (g->transB) pack_rows(g->B + (size_t)(j0 + jp) * g->ldb + k0, g->ldb, n, kc, NR, Bp);
    else pack_cols(g->B + (size_t)k0 * g->ldb + j0 + jp, g->ldb, n, kc, NR, Bp);
    if (kq > kp) memset(Bp + (size_t)kp * NR, 0, (size_t)(kq - kp) * NR * sizeof(uint32_t));
  }
}

#if defined(__AVX512F__)
// AMX wants op(A) row by row: panels of AMX_MR rows, row i = kq pair words (k contiguous).
#define AMX_MR 32
static inline int round_up32(int x) { return (x + 31) / 32 * 32; }
PK_TARGET static void pack_a_amx(const bf_args *g, int i0, int mc, int k0, int kc, int kq, uint32_t *restrict Ap) {
  int kp = (kc + 1) / 2;
  for (int ip = 0; ip < mc; ip += AMX_MR, Ap += (size_t)AMX_MR * kq) {
    int m = mc - ip < AMX_MR ? mc - ip : AMX_MR;
    if (!g->transA) {  // rows along k: convert in place, 16 pairs at a time
      for (int i = 0; i < AMX_MR; i++) {
        uint32_t *d = Ap + (size_t)i * kq;
        if (i >= m) {
          memset(d, 0, (size_t)kq * sizeof(uint32_t));
          continue;
        }
        const float *x = g->A + (size_t)(i0 + ip + i) * g->lda + k0;
        for (int p = 0; p < kq; p += 16) {
          int left = kc - 2 * p;
          _mm512_storeu_si512(d + p, left > 0 ? pairs16(x + 2 * p, left) : _mm512_setzero_si512());
        }
      }
    } else {  // columns across k: done below for all panels at once
      break;
    }
  }
  if (!g->transA) return;
  // op(A) = Aᵀ, A (K, M): each k row of A holds a piece of every panel's rows. For 32 k rows
  // at a time, across all the columns (each of the 32 rows read in one run, which the
  // prefetchers follow; one panel's 128-byte pieces at a 4·M-byte stride they do not): 16
  // columns of 16 row pairs as pair words in 16 registers, one 16 x 16 transpose, 16 stores.
  // (Through a 16 x 256 scratch, as before, it ran at 13 GB/s of source; in registers, 18.)
  int mq = round_up32(mc);
  for (int p0 = 0; p0 < kq; p0 += 16) {
    int np = kp - p0 < 16 ? (kp - p0 > 0 ? kp - p0 : 0) : 16;
    for (int c = 0; c < mq; c += 16) {
      int n = mc - c < 16 ? (mc - c > 0 ? mc - c : 0) : 16;
      __mmask16 m = (__mmask16)((1u << n) - 1);
      __m512i q[16];
      for (int p = 0; p < 16; p++) {
        int k = 2 * (p0 + p);
        const float *lo = g->A + (size_t)(k0 + k) * g->lda + i0 + c;
        __m512 l = p < np ? _mm512_maskz_loadu_ps(m, lo) : _mm512_setzero_ps();
        __m512 h = p < np && k + 1 < kc ? _mm512_maskz_loadu_ps(m, lo + g->lda) : _mm512_setzero_ps();
        q[p] = rowpairs16(l, h);
      }
      transpose16i(q);
      uint32_t *d = Ap + (size_t)(c / AMX_MR) * AMX_MR * kq + (size_t)(c % AMX_MR) * kq + p0;
      for (int i = 0; i < 16; i++) _mm512_storeu_si512(d + (size_t)i * kq, q[i]);
    }
  }
}
#endif

// ---- micro-kernels: C[MR, NR] = alpha · Σ_p Ap[p] · Bp[p] + beta · C ----

static inline void store_tile(vf c[MR][NV], float *restrict C, ptrdiff_t ldc, float alpha, float beta) {
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) {
      vf x = alpha * c[i][v], *r = (vf *)(C + i * ldc + v * VL);
      vf old;
      if (beta != 0) {
        memcpy(&old, r, sizeof old);
        x += beta * old;
      }
      memcpy(r, &x, sizeof x);
    }
}

static inline float bits2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// The fallback: each word's high (odd k) product, then its low one, on float32 vectors.
static void ukernel_fallback(int kp, const uint32_t *restrict Ap, const uint32_t *restrict Bp, float *restrict C,
                             ptrdiff_t ldc, float alpha, float beta) {
  vf c[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) c[i][v] = (vf){0};
  const vu him = (vu){0} + 0xffff0000u;
  for (int p = 0; p < kp; p++, Ap += MR, Bp += NR) {
    vf bh[NV], bl[NV];
    for (int v = 0; v < NV; v++) {
      vu b;
      memcpy(&b, Bp + v * VL, sizeof b);
      bh[v] = (vf)(b & him);
      bl[v] = (vf)(b << 16);
    }
    for (int i = 0; i < MR; i++) {
      float ah = bits2f(Ap[i] & 0xffff0000u), al = bits2f(Ap[i] << 16);
      for (int v = 0; v < NV; v++) {
        c[i][v] += ah * bh[v];
        c[i][v] += al * bl[v];
      }
    }
  }
  store_tile(c, C, ldc, alpha, beta);
}

#if defined(__AVX512F__)
// VDPBF16PS: 24 accumulators, each instruction 16 lanes x 2 products.
BF16_TARGET static void ukernel_dp(int kp, const uint32_t *restrict Ap, const uint32_t *restrict Bp, float *restrict C,
                                   ptrdiff_t ldc, float alpha, float beta) {
  __m512 c[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int p = 0; p < kp; p++, Ap += MR, Bp += NR) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(Bp), b1 = (__m512bh)_mm512_load_si512(Bp + 16);
    _mm_prefetch((const char *)(Bp + 8 * NR), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[i]);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
    }
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < 2; v++) {
      float *r = C + i * ldc + 16 * v;
      __m512 x = _mm512_mul_ps(va, c[i][v]);
      if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(r), x);
      _mm512_storeu_ps(r, x);
    }
}

// AMX: C (32 x 32) in four 16 x 16 float32 tiles; per 32 k, two A tiles (16 rows x 16 pairs,
// from the row-major panel) and two B tiles (16 pairs x 16 columns, from the NR = 32 panel
// with a 128-byte row stride); TDPBF16PS does 16 x 16 x 32 multiply-adds at once.
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16")))

// Packing of the next panel of op(A) (rows along k: NT and NN) done a few pieces at a time
// inside the tile loop: TDPBF16PS keeps the tile unit busy 16 cycles while the core's vector
// ports are free, so the conversion and, above all, the waits for A's float32 source lines
// from memory run in the tile work's shadow instead of between panels.
typedef struct {
  const float *src;  // row 0 of the source panel (op(A) rows along k)
  size_t ld;
  uint32_t *dst;     // the packed panel: row i at dst + i·kq
  int kq, kc, rows;  // pair rows, k values, source rows (< AMX_MR: the rest zero, done first)
  int u, n, per;     // next piece, pieces (rows x kq/16), pieces per tile step
} a_packer;

PK_TARGET static inline void a_pack_some(a_packer *k, int count) {
  int upr = k->kq / 16;
  for (; count > 0 && k->u < k->n; count--, k->u++) {
    int i = k->u / upr, p = (k->u - i * upr) * 16, left = k->kc - 2 * p;
    _mm512_storeu_si512(k->dst + (size_t)i * k->kq + p, left > 0 ? pairs16(k->src + (size_t)i * k->ld + 2 * p, left) : _mm512_setzero_si512());
  }
}

// The finished C rows of a panel, copied from the scratch block the tiles wrote (L2) to C a
// few cache lines at a time inside the next panel's tile loop. A line of C that the panel
// covers whole is written with a non-temporal store (no read for ownership: the line goes to
// memory without being fetched first); when the rows are whole rows of C, a line shared by
// two rows is one line too, so only the block's first and last lines are part lines, written
// with masked plain stores (fetched for writing ahead: a plain store that misses holds up
// every store after it). Only copies bits: the sums are the tiles'. Copied line by line,
// sequentially: the same stores scattered block by block (two lines of each of 32 rows)
// measured 10-27 % slower, and the copy as a burst between panels no faster.
typedef struct {
  const float *src;  // scratch row i (column j0)
  size_t ss;         // its row stride (floats)
  float *dst;        // C row i (column j0)
  size_t ld;
  int w;             // columns
  int rows, i, c;    // rows to copy; the next line starts at row i, column c
  int per;           // lines per tile step
} c_writer;

// When the rows are whole rows of C (w == ld), row i's last line is row i + 1's first: one
// line, one non-temporal store, so only the block's first and last lines are part lines.
static inline c_writer c_writer_make(const float *src, size_t ss, float *dst, size_t ld, int w, int rows) {
  c_writer cw = {src, ss, dst, ld, w, rows, 0, 0, 0};
  // the part line at the start (shared with the rows before): fetched for writing now, so
  // that its plain store does not wait for memory
  if (((uintptr_t)dst & 63) != 0) __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)dst));
  float *end = dst + (size_t)(rows - 1) * ld + w;
  if (((uintptr_t)end & 63) != 0) __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)(end - 1)));
  return cw;
}

// Copies up to `count` lines of C.
AMX_TARGET static inline void c_write_some(c_writer *cw, int count) {
  const int flat = cw->ld == (size_t)cw->w;
  for (; count > 0 && cw->i < cw->rows; count--) {
    float *row = cw->dst;
    const float *x = cw->src;
    int c = cw->c, o = (int)(((uintptr_t)(row + c) & 63) / 4);  // floats past the line start
    int n = cw->w - c < 16 - o ? cw->w - c : 16 - o;             // this row's floats in the line
    if (n == 16) {
      _mm512_stream_ps(row + c, _mm512_loadu_ps(x + c));
      cw->c = c + 16;
    } else {
      unsigned k = ((1u << n) - 1) << o;
      __m512 v = _mm512_maskz_loadu_ps((__mmask16)k, x + c - o);
      float *line = row + c - o;
      cw->c = c + n;
      if (cw->c == cw->w && flat && cw->i + 1 < cw->rows) {  // the next row's first floats
        unsigned k2 = 0xffffu & ~((1u << (o + n)) - 1);
        v = _mm512_mask_loadu_ps(v, (__mmask16)k2, x + cw->ss - (o + n));
        k |= k2;
        cw->c = -(o + n);  // the next row goes on after these
      }
      if (k == 0xffffu) _mm512_stream_ps(line, v);
      else _mm512_mask_storeu_ps(line, (__mmask16)k, v);
    }
    if (cw->c >= cw->w || cw->c < 0) {
      cw->c = cw->c < 0 ? 16 + cw->c : 0;
      cw->i++;
      cw->dst += cw->ld;
      cw->src += cw->ss;
    }
  }
}

// The K loop of one 32 x 32 block: tiles 0–3 += the panel's A (two 16-row tiles, 4 and 5)
// times B (two 16-column tiles, 6 and 7), 16 pair rows of k at a time; on the way, a few pieces
// of the next panel's packing (pk) and of the previous panel's copy to C (cw), either NULL.
AMX_TARGET static inline __attribute__((always_inline)) void tiles_k(int kq, const uint32_t *restrict Ap, const uint32_t *restrict Bp,
                                                                     a_packer *pk, c_writer *cw) {
  const int sa = kq * 4;
  for (int p = 0; p < kq; p += 16) {
    _tile_loadd(4, Ap + p, sa);
    _tile_loadd(6, Bp + (size_t)p * NR, NR * 4);
    _tile_loadd(7, Bp + (size_t)p * NR + 16, NR * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, Ap + (size_t)16 * kq + p, sa);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    if (pk) a_pack_some(pk, pk->per);
    if (cw) c_write_some(cw, cw->per);
  }
}

AMX_TARGET static inline void ukernel_amx_pk(int kq, const uint32_t *restrict Ap, const uint32_t *restrict Bp, float *restrict C,
                                             ptrdiff_t ldc, float alpha, float beta, a_packer *pk) {
  _Alignas(64) float acc[AMX_MR * NR];
  // alpha 1 and beta 0 or 1 (every training product): the tiles start from C (or zero) and are
  // stored straight into it; otherwise through acc and the alpha/beta merge below.
  const int direct = alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
  mynah_amx_c_begin(C, (size_t)ldc, direct && beta != 0);
  tiles_k(kq, Ap, Bp, pk, NULL);
  if (direct) {
    mynah_amx_c_store(C, (size_t)ldc);
    return;
  }
  mynah_amx_c_store(acc, NR);
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < AMX_MR; i++)
    for (int v = 0; v < 2; v++) {
      float *r = C + i * ldc + 16 * v;
      __m512 x = _mm512_mul_ps(va, _mm512_load_ps(acc + i * NR + 16 * v));
      if (beta != 0) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(r), x);
      _mm512_storeu_ps(r, x);
    }
}

// One 32 x 32 block for the scratch path: the tiles start from `init` (row stride il floats;
// NULL: zero), add the panel's products, and are stored to `out` (row stride ol floats); a
// few pieces of the next panel's packing and of the previous panel's copy to C run on the way.
AMX_TARGET static inline void ukernel_amx_s(int kq, const uint32_t *restrict Ap, const uint32_t *restrict Bp, const float *init,
                                            size_t il, float *out, size_t ol, a_packer *pk, c_writer *cw) {
  mynah_amx_c_begin(init, il, init != NULL);
  tiles_k(kq, Ap, Bp, pk, cw);
  mynah_amx_c_store(out, ol);
}

AMX_TARGET static void ukernel_amx(int kq, const uint32_t *restrict Ap, const uint32_t *restrict Bp, float *restrict C,
                                   ptrdiff_t ldc, float alpha, float beta) {
  ukernel_amx_pk(kq, Ap, Bp, C, ldc, alpha, beta, NULL);
}

// Palette 1, every tile 16 rows x 64 bytes (amx.h); loaded by each thread before its AMX work.
AMX_TARGET static void amx_begin(void) { mynah_amx_begin_16x64(); }
AMX_TARGET static void amx_end(void) { mynah_amx_release(); }
#endif

typedef void (*ukernel_fn)(int, const uint32_t *, const uint32_t *, float *, ptrdiff_t, float, float);


static int use_dp = -1, use_amx = -1;  // decided once per process

// VDPBF16PS: unless MYNAH_SIMD_DISABLE names avx512bf16.
static int have_dp(void) {
  if (use_dp < 0) {
#if defined(__AVX512F__)
    use_dp = mynah_avx512bf16_usable();
#else
    use_dp = 0;
#endif
  }
  return use_dp;
}

// AMX tiles: unless MYNAH_SIMD_DISABLE names amx (or avx512bf16: then the fallback runs).
static int have_amx(void) {
  if (use_amx < 0) {
#if defined(__AVX512F__)
    use_amx = mynah_amx_bf16_usable();
#else
    use_amx = 0;
#endif
  }
  return use_amx;
}

// Flush-to-zero (and denormals-are-zero) while the fallback runs, as VDPBF16PS computes.
static unsigned ftz_on(void) {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned old = _mm_getcsr();
  _mm_setcsr(old | 0x8040);
  return old;
#else
  return 0;
#endif
}
static void ftz_off(unsigned old) {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_setcsr(old);
#else
  (void)old;
#endif
}

// ---- the driver (gemm.c's, on packed pairs) ----

#define AMX_B_CACHED (1L << 20)  // packed B of all slices up to this many bytes: slices inside
#define AMX_KOUT_ROWS 256        // slices outside: op(A) rows packed at a time (256 KiB at KC 512)

typedef struct plan_s {
  const bf_args *g;
  ukernel_fn uk;
  int fallback, amx;
  int mr;             // rows per A panel: MR, or AMX_MR
  int js, ns, nsp;
  int kstep, slices;  // kstep even
  int q0, nq;
  uint32_t *Bs;       // slice q at Bs + (q - q0) * (kstep / 2) * nsp
  int npack, mchunk, nchunk, mt, nt;
  int kout;           // AMX: K slices outside the panel loop (compute_task_amx), one slice of B per group
} plan;

static uint32_t *buf_a[MAX_POOL];

// Pair rows of a panel for kc values of k: AMX steps 16 pairs at a time (zeros after kp).
static int pair_rows(const void *plan_, int kc) {
  const struct plan_s *s = plan_;
  int kp = (kc + 1) / 2;
  return s->amx ? (kp + 15) / 16 * 16 : kp;
}

static void pack_b_task(void *ctx, int task, int thread) {
  (void)thread;
  const plan *s = ctx;
  int q = s->q0 + task / s->npack, part = task % s->npack;
  int pc = q * s->kstep, kc = s->g->K - pc < s->kstep ? s->g->K - pc : s->kstep, kq = pair_rows(s, kc);
  int panels = s->nsp / NR;
  int p0 = (int)((long)panels * part / s->npack), p1 = (int)((long)panels * (part + 1) / s->npack);
  int j1 = p1 * NR < s->ns ? p1 * NR : s->ns;
  uint32_t *Bq = s->Bs + (size_t)(q - s->q0) * (s->kstep / 2) * s->nsp;
  if (p0 * NR < j1) pack_b(s->g, pc, kc, kq, s->js + p0 * NR, j1 - p0 * NR, Bq + (size_t)p0 * NR * kq);
}

// Task `task`'s block of C: rows [i0, i1), columns [j0, j1) of the split; 0 when it is empty.
static int task_block(const plan *s, int task, int *i0, int *i1, int *j0, int *j1) {
  *i0 = (task / s->nt) * s->mchunk;
  *j0 = (task % s->nt) * s->nchunk;
  *i1 = *i0 + s->mchunk < s->g->M ? *i0 + s->mchunk : s->g->M;
  *j1 = *j0 + s->nchunk < s->ns ? *j0 + s->nchunk : s->ns;
  return *i0 < *i1 && *j0 < *j1;
}

static void compute_task(void *ctx, int task, int thread) {
  const plan *s = ctx;
  const bf_args *g = s->g;
  int i0, i1, j0, j1;
  if (!task_block(s, task, &i0, &i1, &j0, &j1)) return;
  int mc = i1 - i0;
  unsigned csr = s->fallback ? ftz_on() : 0;
#if defined(__AVX512F__)
  if (s->amx) amx_begin();
#endif
  uint32_t *Ap = buf_a[thread];
  const int MRx = s->mr;
  _Alignas(64) float tile[32 * NR];
  for (int q = s->q0; q < s->q0 + s->nq; q++) {
    int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep, kq = pair_rows(s, kc);
    float beta = q == 0 ? g->beta : 1.0f;
    const uint32_t *Bq = s->Bs + (size_t)(q - s->q0) * (s->kstep / 2) * s->nsp;
#if defined(__AVX512F__)
    if (s->amx) pack_a_amx(g, i0, mc, pc, kc, kq, Ap);
    else
#endif
      pack_a(g, i0, mc, pc, kc, kq, Ap);
    for (int jc = j0; jc < j1; jc += NC) {
      int nc = j1 - jc < NC ? j1 - jc : NC;
      for (int ir = 0; ir < mc; ir += MRx) {
        int m = mc - ir < MRx ? mc - ir : MRx;
        const uint32_t *a = Ap + (size_t)ir * kq;
        for (int jr = 0; jr < nc; jr += NR) {
          int n = nc - jr < NR ? nc - jr : NR;
          const uint32_t *b = Bq + (size_t)(jc + jr) * kq;
          float *c = g->C + (size_t)(i0 + ir) * g->ldc + s->js + jc + jr;
          if (m == MRx && n == NR) {
            s->uk(kq, a, b, c, g->ldc, g->alpha, beta);
          } else {
            s->uk(kq, a, b, tile, NR, 1.0f, 0.0f);
            for (int i = 0; i < m; i++)
              for (int j = 0; j < n; j++) {
                float *d = c + (size_t)i * g->ldc + j;
                *d = g->alpha * tile[i * NR + j] + (beta == 0 ? 0 : beta * *d);
              }
          }
        }
      }
    }
  }
#if defined(__AVX512F__)
  if (s->amx) amx_end();
#endif
  if (s->fallback) ftz_off(csr);
}

#if defined(__AVX512F__)
// Prefetch part `part` of `parts` of the float32 source lines of op(A) rows [i, i + 32), k
// [k0, k0 + kc): the panel packed next, pulled in while the tiles work on this one.
static inline void prefetch_a(const bf_args *g, int i, int m, int k0, int kc, int part, int parts) {
  int rows = g->transA ? kc : m;                       // source rows
  int len = (g->transA ? m : kc) * 4;                  // bytes each
  int r0 = (int)((long)rows * part / parts), r1 = (int)((long)rows * (part + 1) / parts);
  for (int r = r0; r < r1; r++) {
    const char *x = g->transA ? (const char *)(g->A + (size_t)(k0 + r) * g->lda + i) : (const char *)(g->A + (size_t)(i + r) * g->lda + k0);
    for (int b = 0; b < len + 63; b += 64) _mm_prefetch(x + (b < len ? b : len - 1), _MM_HINT_T1);
  }
}

// Prefetch for writing the 32 x 32 block of C at c (the next one the tiles store): its
// lines are read for ownership while this block computes instead of when its tiles store.
static inline void prefetch_c(const float *c, ptrdiff_t ldc, int m, int n) {
  if (ldc * 4 >= 4096) return;  // rows of a page or more: the L2 streamer follows each row (prefetching measured 4 % slower)
  for (int i = 0; i < m; i++) {
    const char *r = (const char *)(c + (size_t)i * ldc);
    __asm__ __volatile__("prefetchw %0" : : "m"(*r));
    __asm__ __volatile__("prefetchw %0" : : "m"(*(r + (n * 4 - 1 < 64 ? n * 4 - 1 : 64))));
    if (n * 4 > 128) __asm__ __volatile__("prefetchw %0" : : "m"(*(r + n * 4 - 1)));
  }
}

// The AMX task: one 32-row panel of op(A) at a time, packed just before its tiles use it (so
// it stays in L1), against every column block of the task; the next panel's float32 source
// and the next C block are prefetched while the tiles compute, so the memory traffic these
// shapes need (A read once, C written once) runs under the tile work instead of between it.
// Two loop orders, the same sums (each element of C adds its K slices in ascending order):
//   - K slices inside the panel loop when all the packed slices of B fit in L2 (y = x·Wᵀ and
//     dX = dY·W, K = 384 or 1,024: the weights): the panel's C rows stay in cache across the
//     slices and go to memory once;
//   - K slices outside when they do not (dW = dYᵀ·X, K = 16,384 tokens): one packed B slice
//     stays in L2 for all the task's panels, and the task's (small) C in cache across slices.

typedef struct {
  const plan *s;
  uint32_t *Ap;
  float *tile;
  int j0, j1, nb, i1;
} amx_task;

// The tiles of one packed panel (op(A) rows [ir, ir + m), slice q, at ap) times every column
// block of the task; on the way, part `part0 + b` of `parts` of the float32 source of op(A)
// rows [pi, pi + pm), slice pq (the next thing packed; pm = 0: none) is prefetched, and the
// next C block the tiles store (the next panel's first when this one ends at column j1).
static void amx_panel(const amx_task *t, int ir, int m, int q, const uint32_t *ap, int pi, int pm, int pq, int part0,
                      int parts, a_packer *pk) {
  const plan *s = t->s;
  const bf_args *g = s->g;
  int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep, kq = pair_rows(s, kc);
  float beta = q == 0 ? g->beta : 1.0f;
  const uint32_t *Bq = s->Bs + (size_t)(q - s->q0) * (s->kstep / 2) * s->nsp;
  int pn = pq * s->kstep, kn = g->K - pn < s->kstep ? g->K - pn : s->kstep;
  int in = ir + AMX_MR, mn = t->i1 - in < AMX_MR ? t->i1 - in : AMX_MR;
  for (int b = 0, jr = t->j0; jr < t->j1; jr += NR, b++) {
    int n = t->j1 - jr < NR ? t->j1 - jr : NR;
    float *c = g->C + (size_t)ir * g->ldc + s->js + jr;
    if (jr + NR < t->j1) prefetch_c(c + NR, g->ldc, m, t->j1 - jr - NR < NR ? t->j1 - jr - NR : NR);
    else if (mn > 0) prefetch_c(g->C + (size_t)in * g->ldc + s->js + t->j0, g->ldc, mn, t->j1 - t->j0 < NR ? t->j1 - t->j0 : NR);
    if (pm > 0) prefetch_a(g, pi, pm, pn, kn, part0 + b, parts);
    const uint32_t *bp = Bq + (size_t)jr * kq;
    if (m == AMX_MR && n == NR) {
      ukernel_amx_pk(kq, ap, bp, c, g->ldc, g->alpha, beta, pk);
    } else {
      ukernel_amx_pk(kq, ap, bp, t->tile, NR, 1.0f, 0.0f, pk);
      for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
          float *d = c + (size_t)i * g->ldc + j;
          *d = g->alpha * t->tile[i * NR + j] + (beta == 0 ? 0 : beta * *d);
        }
    }
  }
  if (pk) a_pack_some(pk, pk->n);  // whatever the tile steps left
}

// The scratch path of amx_panel (alpha 1, beta 0 or 1: every training product), for the
// slices-inside order: the panel's C block (rows [ir, ir + m), the task's columns) lives in
// the scratch S (row stride ss) across the slices and leaves for C once, from the next
// panel's tile loop (c_writer). The same sums as amx_panel: a whole 32 x 32 block's tiles
// start from C (this call's first slice, beta 1), from S (later slices) or zero (beta 0); a
// partial block is summed from zero and added to C's (or S's) value, as amx_panel does.
static void amx_panel_s(const amx_task *t, int ir, int m, int q, const uint32_t *ap, float *S, size_t ss, int pi, int pm, int pq,
                        a_packer *pk, c_writer *cw) {
  const plan *s = t->s;
  const bf_args *g = s->g;
  int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep, kq = pair_rows(s, kc);
  float beta = q == 0 ? g->beta : 1.0f;
  int from_c = q == s->q0 && beta != 0, zero = beta == 0;
  const uint32_t *Bq = s->Bs + (size_t)(q - s->q0) * (s->kstep / 2) * s->nsp;
  int pn = pq * s->kstep, kn = g->K - pn < s->kstep ? g->K - pn : s->kstep;
  for (int b = 0, jr = t->j0; jr < t->j1; jr += NR, b++) {
    int n = t->j1 - jr < NR ? t->j1 - jr : NR;
    float *c = g->C + (size_t)ir * g->ldc + s->js + jr, *sc = S + (jr - t->j0);
    if (from_c && jr + NR < t->j1)
      for (int i = 0; i < m; i++) _mm_prefetch((const char *)(c + NR + (size_t)i * g->ldc), _MM_HINT_T0);
    if (pm > 0) prefetch_a(g, pi, pm, pn, kn, b, t->nb);
    const uint32_t *bp = Bq + (size_t)jr * kq;
    if (m == AMX_MR && n == NR) {
      ukernel_amx_s(kq, ap, bp, zero ? NULL : from_c ? c : sc, from_c ? (size_t)g->ldc : ss, sc, ss, pk, cw);
    } else {
      ukernel_amx_s(kq, ap, bp, NULL, 0, t->tile, NR, pk, cw);
      for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
          float old = zero ? 0 : from_c ? c[(size_t)i * g->ldc + j] : sc[(size_t)i * ss + j];
          sc[(size_t)i * ss + j] = t->tile[i * NR + j] + old;
        }
    }
  }
  if (pk) a_pack_some(pk, pk->n);
}

// Per thread: two scratch C blocks of 32 rows x (NS + 48) floats (the one the tiles fill, the
// one being copied out); a row stride 16 floats past a multiple of 32 keeps a tile's 16 rows
// off one L1 set.
#define SCR_LD (NS + 48)
static float *buf_c[MAX_POOL];

static void compute_task_amx(void *ctx, int task, int thread) {
  const plan *s = ctx;
  const bf_args *g = s->g;
  int i0, i1, j0, j1;
  if (!task_block(s, task, &i0, &i1, &j0, &j1)) return;
  amx_begin();
  _Alignas(64) float tile[32 * NR];
  amx_task t = {s, buf_a[thread], tile, j0, j1, (j1 - j0 + NR - 1) / NR, i1};
  int qe = s->q0 + s->nq;
  if (!s->kout) {
    // panel by panel, each in L1, slices inside; with rows along k (NT, NN) the next panel
    // is packed inside this one's tile loop (a_packer), into the other half of the buffer
    uint32_t *cur = t.Ap, *nxt = t.Ap + (size_t)AMX_MR * (KC / 2);
    int fused = !g->transA, packed = 0;
    // the scratch path: several slices (one slice: the old direct stores measured as fast),
    // alpha 1, beta 0 or 1, C on 4-byte boundaries (Float32Array's are)
    int scratch = s->nq > 1 && (size_t)g->ldc * 4 < 4096 && g->alpha == 1.0f && (g->beta == 0.0f || g->beta == 1.0f) && ((uintptr_t)g->C & 3) == 0 && buf_c[thread];
    int w = j1 - j0, P = (w + 15) / 16 + 1;
    size_t ss = (size_t)round_up32(w) + 16;
    int steps = 0;  // tile steps of one panel (all its slices): the copy of the previous panel's P lines per row is spread over them
    for (int x = s->q0; x < qe; x++) {
      int kx = g->K - x * s->kstep < s->kstep ? g->K - x * s->kstep : s->kstep;
      steps += t.nb * (pair_rows(s, kx) / 16);
    }
    c_writer cw = {0};
    for (int ir = i0, np = 0; ir < i1; ir += AMX_MR, np++)
      for (int q = s->q0; q < qe; q++) {
        int m = i1 - ir < AMX_MR ? i1 - ir : AMX_MR, last = q + 1 == qe, ni = last ? ir + AMX_MR : ir, nq = last ? s->q0 : q + 1;
        int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep, kq = pair_rows(s, kc);
        int mn = ni < i1 ? (i1 - ni < AMX_MR ? i1 - ni : AMX_MR) : 0;
        if (!packed) pack_a_amx(g, ir, m, pc, kc, kq, cur);
        a_packer pk, *pkp = NULL;
        if (fused && mn > 0) {
          int pn = nq * s->kstep, kn = g->K - pn < s->kstep ? g->K - pn : s->kstep, kqn = pair_rows(s, kn);
          pk = (a_packer){g->A + (size_t)ni * g->lda + pn, (size_t)g->lda, nxt, kqn, kn, mn, 0, mn * (kqn / 16), 0};
          if (mn < AMX_MR) memset(nxt + (size_t)mn * kqn, 0, (size_t)(AMX_MR - mn) * kqn * sizeof(uint32_t));
          int steps = t.nb * (kq / 16);
          pk.per = (pk.n + steps - 1) / steps;
          pkp = &pk;
        }
        // prefetched: the panel packed next, or with fusion the one after it (the fused
        // packing's loads then find their lines in L2)
        int fi = ni, fq = nq, fm = mn;
        if (pkp) {
          fi = nq + 1 < qe ? ni : ni + AMX_MR;
          fq = nq + 1 < qe ? nq + 1 : s->q0;
          fm = fi < i1 ? (i1 - fi < AMX_MR ? i1 - fi : AMX_MR) : 0;
        }
        if (scratch) {
          float *S = buf_c[thread] + 16 + (size_t)(np & 1) * AMX_MR * SCR_LD;
          if (q == s->q0 && ir > i0) {  // the previous panel's rows leave during this panel's tiles
            float *Sp = buf_c[thread] + 16 + (size_t)((np - 1) & 1) * AMX_MR * SCR_LD;
            int pm = ir - AMX_MR;
            cw = c_writer_make(Sp, ss, g->C + (size_t)pm * g->ldc + s->js + j0, (size_t)g->ldc, w, AMX_MR);
            cw.per = (AMX_MR * P + steps - 1) / steps;
          }
          amx_panel_s(&t, ir, m, q, cur, S, ss, fi, fm, fq, pkp, ir > i0 ? &cw : NULL);
          if (last) {
            if (ir > i0) c_write_some(&cw, INT32_MAX);
            if (ir + AMX_MR >= i1) {  // the task's last panel: out now
              cw = c_writer_make(S, ss, g->C + (size_t)ir * g->ldc + s->js + j0, (size_t)g->ldc, w, m);
              c_write_some(&cw, INT32_MAX);
            }
          }
        } else {
          amx_panel(&t, ir, m, q, cur, fi, fm, fq, 0, t.nb, pkp);
        }
        packed = pkp != NULL;
        if (packed) {
          uint32_t *x = cur;
          cur = nxt;
          nxt = x;
        }
      }
    if (scratch) _mm_sfence();  // the non-temporal stores of C are seen before the task counts as done
  } else {
    // slice by slice (one slice of B, just packed, in L2): the task's op(A) rows for the
    // slice packed AMX_KOUT_ROWS at a time (long source runs; the packed rows stay in L2 beside
    // B; the next chunk's source prefetched under the tiles), each chunk's panels against B
    const int RC = AMX_KOUT_ROWS;
    for (int q = s->q0; q < qe; q++) {
      int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep, kq = pair_rows(s, kc);
      for (int rc = i0; rc < i1; rc += RC) {
        int rn = i1 - rc < RC ? i1 - rc : RC, panels = (rn + AMX_MR - 1) / AMX_MR;
        int pi = rc + rn < i1 ? rc + rn : i0, pq = rc + rn < i1 ? q : q + 1;  // packed next
        int pm = pq < qe ? (i1 - pi < RC ? i1 - pi : RC) : 0;
        pack_a_amx(g, rc, rn, pc, kc, kq, t.Ap);
        for (int ir = rc, x = 0; ir < rc + rn; ir += AMX_MR, x++)
          amx_panel(&t, ir, rc + rn - ir < AMX_MR ? rc + rn - ir : AMX_MR, q, t.Ap + (size_t)(ir - rc) * kq, pi, pm, pq,
                    x * t.nb, panels * t.nb, NULL);
      }
    }
  }
  amx_end();
}
#endif

static void run_tasks(pool_task_fn fn, void *ctx, int ntasks, int threads) {
  if (threads > 1 && ntasks > 1)
    pool_run(fn, ctx, ntasks);
  else
    for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
}

static int round_up(int x, int q) { return (x + q - 1) / q * q; }

// Returns 0 when the packing buffers could not be allocated.
static int gemm_bf16_blocked(const bf_args *g, int threads) {
  static uint32_t *Bs;
  static size_t bs_words;
  plan s = {.g = g};
  s.mr = MR;
#if defined(__AVX512F__)
  s.amx = have_amx();
  s.uk = s.amx ? ukernel_amx : have_dp() ? ukernel_dp : ukernel_fallback;
  if (s.amx) s.mr = AMX_MR;
#else
  s.uk = ukernel_fallback;
#endif
  s.fallback = !have_dp();
#if defined(__AVX512F__)
  cvt_hw = have_dp();
#endif
  s.slices = (g->K + KC - 1) / KC;
  s.kstep = round_up((g->K + s.slices - 1) / s.slices, 32);
  if (s.kstep > KC) s.kstep = KC;
  s.slices = (g->K + s.kstep - 1) / s.kstep;
  int ncols = g->N < NS ? g->N : NS;
  long per = BS_WORDS / ((long)(s.kstep / 2) * round_up(ncols, NR));
  int group = per < 1 ? 1 : per > s.slices ? s.slices : (int)per;
  size_t need = (size_t)group * (s.kstep / 2) * round_up(ncols, NR);
  if (need > bs_words) {
    free(Bs);
    Bs = aligned_alloc(64, need * sizeof(uint32_t));
    bs_words = Bs ? need : 0;
  }
  for (int t = 0; t < threads; t++)
    if (!buf_a[t]) buf_a[t] = aligned_alloc(64, (size_t)MC * (KC / 2) * sizeof(uint32_t));
#if defined(__AVX512F__)
  if (s.amx)  // the scratch C blocks (optional: without them the tiles store into C directly)
    for (int t = 0; t < threads; t++)
      if (!buf_c[t]) buf_c[t] = aligned_alloc(64, ((size_t)2 * AMX_MR * SCR_LD + 32) * sizeof(float));
#endif
  if (!Bs) return 0;
  for (int t = 0; t < threads; t++)
    if (!buf_a[t]) return 0;
  s.Bs = Bs;
  int want = threads == 1 ? 1 : 4 * threads;
  for (s.js = 0; s.js < g->N; s.js += ncols) {
    s.ns = g->N - s.js < ncols ? g->N - s.js : ncols;
    s.nsp = round_up(s.ns, NR);
    int mchunk = round_up((g->M + want - 1) / want, s.mr);
    s.mchunk = mchunk > MC ? MC : mchunk;
    s.mt = (g->M + s.mchunk - 1) / s.mchunk;
    // AMX: split columns only when there are fewer row chunks than threads (each column
    // chunk packs the same op(A) rows again: for dW = dYᵀ·X that is a second pass over dY)
    int nt = s.mt >= (s.amx ? threads : want) ? 1 : ((s.amx ? threads : want) + s.mt - 1) / s.mt;
    int panels = s.nsp / NR;
    if (nt > panels) nt = panels;
    s.nchunk = round_up((s.ns + nt - 1) / nt, NR);
    s.nt = (s.ns + s.nchunk - 1) / s.nchunk;
    s.npack = threads < panels ? threads : panels;
    // AMX, when the packed slices of B pass L2: slices outside the panel loop, and B packed one
    // slice at a time, just before the tiles read it (in L2, not evicted by the next ones)
    s.kout = s.amx && s.slices > 1 && (long)s.slices * (s.kstep / 2) * s.nchunk * 4 > AMX_B_CACHED;
    int grp = s.kout ? 1 : group;
    for (s.q0 = 0; s.q0 < s.slices; s.q0 += grp) {
      s.nq = s.slices - s.q0 < grp ? s.slices - s.q0 : grp;
      run_tasks(pack_b_task, &s, s.nq * s.npack, threads);
#if defined(__AVX512F__)
      if (s.amx) run_tasks(compute_task_amx, &s, s.mt * s.nt, threads);
      else
#endif
        run_tasks(compute_task, &s, s.mt * s.nt, threads);
    }
  }
  return 1;
}

// The plainest bf16 GEMM (same rounding of the operands, float64 sums): used only when the
// packing buffers cannot be allocated.
static void gemm_bf16_naive(const bf_args *g) {
  for (int i = 0; i < g->M; i++)
    for (int j = 0; j < g->N; j++) {
      double s = 0;
      for (int k = 0; k < g->K; k++) {
        float a = g->transA ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
        float b = g->transB ? g->B[(size_t)j * g->ldb + k] : g->B[(size_t)k * g->ldb + j];
        s += (double)bits2f(bf16_bits(f2u(a)) << 16) * bits2f(bf16_bits(f2u(b)) << 16);
      }
      float *c = &g->C[(size_t)i * g->ldc + j];
      *c = g->alpha * (float)s + (g->beta == 0 ? 0 : g->beta * *c);
    }
}

static void gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float *c = &C[(size_t)i * ldc + j];
        *c = beta == 0 ? 0 : beta * *c;
      }
    return;
  }
  double flops = 2.0 * M * N * K;
  int threads = flops < MT_FLOPS ? 1 : pool_threads();
  bf_args g = {transA, transB, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  if (!gemm_bf16_blocked(&g, threads)) gemm_bf16_naive(&g);
}

// ---- machine peaks: register-only loops (one core), best of many short tries ----
//
// Why short tries, and many: on a VM shared with other work (this project's machines) a
// single long loop is preempted or loses its core to the host, and its rate is whatever
// share it got: one 1,000,000-iteration AMX loop (~30 ms) read 980 GFLOP/s in one run and
// 2,292 in another minutes apart, and measured against its own thread CPU time the same long
// loop reads ~2x its wall-clock rate under load. It is not a frequency licence: a sustained
// loop's rate per CPU-second stays at the short loops' 2.1-2.3 TFLOP/s. A try of ~1 ms fits
// between preemptions, the first few tries also warm the unit up (the first AMX instructions
// after idle run slower), and the best of PEAK_TRIES is the unit's rate.

#define PEAK_TRIES 40
#define PEAK_ITERS 100000L  // VDPBF16PS: 12 x 100k instructions, ~1-2 ms a try
#define AMX_ITERS 20000L    // TDPBF16PS: 4 x 20k, 16 cycles each: ~1.4 ms a try at 2.3 GHz

#if defined(__AVX512F__)
static float peak_sink[1];

BF16_TARGET static float peak_loop(long iters) {
  __m512 x[12];
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33d633d6);  // 1.0, ~1e-7
  for (int i = 0; i < 12; i++) x[i] = _mm512_set1_ps((float)i);
  for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) x[i] = _mm512_dpbf16_ps(x[i], a, b);
    __asm__ __volatile__("" : "+v"(a), "+v"(b));  // keep the loop from being folded
  }
  for (int i = 1; i < 12; i++) x[0] = _mm512_add_ps(x[0], x[i]);
  return _mm512_reduce_add_ps(x[0]);
}

// Four independent accumulator tiles (latency ~4 issues of 16 cycles), TDPBF16PS on tiles
// that never leave the unit.
AMX_TARGET static float amx_peak_loop(long iters) {
  _Alignas(64) static uint32_t one[256];
  _Alignas(64) float out[256];
  for (int i = 0; i < 256; i++) one[i] = 0x3f803f80u;
  _tile_loadd(4, one, 64);
  _tile_loadd(5, one, 64);
  _tile_loadd(6, one, 64);
  _tile_loadd(7, one, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long n = 0; n < iters; n++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  return out[0];
}
#endif

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// One core's AMX TDPBF16PS rate in GFLOP/s (16 x 16 x 32 multiply-adds each), 0 without AMX.
static double amx_peak_gflops(void) {
#if defined(__AVX512F__)
  if (!have_amx()) return 0;
  double best = 0;
  amx_begin();
  for (int t = 0; t < PEAK_TRIES; t++) {
    double t0 = now_s();
    peak_sink[0] = amx_peak_loop(AMX_ITERS);
    __asm__ __volatile__("" : : "r"(peak_sink) : "memory");
    double g = AMX_ITERS * 4 * 16384.0 / (now_s() - t0) / 1e9;
    best = g > best ? g : best;
  }
  amx_end();
  return best;
#else
  return 0;
#endif
}

// One core's VDPBF16PS rate in GFLOP/s (12 chains x 16 lanes x 2 products x 2 FLOP), or 0
// when this CPU (or this build level) has no AVX512_BF16.
static double bf16_peak_gflops(void) {
#if defined(__AVX512F__)
  if (!have_dp()) return 0;
  double best = 0;
  for (int t = 0; t < PEAK_TRIES; t++) {
    double t0 = now_s();
    peak_sink[0] = peak_loop(PEAK_ITERS);
    __asm__ __volatile__("" : : "r"(peak_sink) : "memory");
    double g = PEAK_ITERS * 12 * 16 * 4 / (now_s() - t0) / 1e9;
    best = g > best ? g : best;
  }
  return best;
#else
  return 0;
#endif
}

// ---- memory bandwidth: what the layer shapes' float32 operands and outputs cost ----
//
// The training shapes read float32 operands of 25-64 MiB and write float32 outputs of the
// same size, far past L2; at K = 384 a 32-row block of C costs 2·32·384·384 FLOP (4 us of
// AMX at 2.3 TFLOP/s) against 48 KiB of A read and 48 KiB of C written. So the bench sets
// each GEMM beside the rate its memory traffic allows, measured here on the same threads:
// each thread streams its own BW_BYTES region (read: sum of loads; write: plain stores, whose
// lines are first read for ownership; stream: non-temporal stores), best of BW_TRIES.
#define BW_BYTES (24L << 20)
#define BW_TRIES 6

typedef struct {
  float *buf;
  int kind;  // 0 read, 1 write, 2 non-temporal write
} bw_ctx;

static volatile float bw_sink[MAX_POOL * 16];  // volatile: the sums are never read, the loads must stay

static void bw_task(void *ctx_, int task, int thread) {
  (void)thread;
  const bw_ctx *c = ctx_;
  float *p = c->buf + (size_t)task * (BW_BYTES / 4);
  size_t n = BW_BYTES / 4;
#if defined(__AVX512F__)
  if (c->kind == 0) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
      s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
      s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 16));
      s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 32));
      s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 48));
    }
    bw_sink[task * 16] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  } else if (c->kind == 1) {
    for (size_t i = 0; i < n; i += 16) _mm512_store_ps(p + i, _mm512_set1_ps((float)task));
  } else {
    for (size_t i = 0; i < n; i += 16) _mm512_stream_ps(p + i, _mm512_set1_ps((float)task));
    _mm_sfence();
  }
#else
  if (c->kind == 0) {
    float s = 0;
    for (size_t i = 0; i < n; i += 16) s += p[i];
    bw_sink[task * 16] = s;
  } else {
    memset(p, task, n * 4);
  }
#endif
  __asm__ __volatile__("" : : "r"(p) : "memory");
}

// GB/s of `threads` threads together: out[0] read, out[1] write, out[2] non-temporal write.
static int stream_bandwidth(int threads, double out[3]) {
  float *buf = aligned_alloc(64, (size_t)threads * BW_BYTES);
  if (!buf) return 0;
  memset(buf, 1, (size_t)threads * BW_BYTES);
  for (int kind = 0; kind < 3; kind++) {
    bw_ctx c = {buf, kind};
    double best = 0;
    for (int t = 0; t < BW_TRIES; t++) {
      double t0 = now_s();
      if (threads > 1) pool_run(bw_task, &c, threads);
      else bw_task(&c, 0, 0);
      double g = (double)threads * BW_BYTES / (now_s() - t0) / 1e9;
      best = g > best ? g : best;
    }
    out[kind] = best;
  }
  free(buf);
  return 1;
}

// ---- Node-API ----

// gemmBf16(transA, transB, M, N, K, alpha, A, B, beta, C): as gemm(), with bf16 operands.
static napi_value js_gemm_bf16(napi_env env, napi_callback_info info) {
  ARGS("gemmBf16", 10);
  bool ta, tb;
  int64_t M, N, K;
  double alpha, beta;
  float *A, *B, *C;
  const char *op = "gemmBf16";
  if (!get_bool(env, argv[0], op, "transA", &ta) || !get_bool(env, argv[1], op, "transB", &tb) ||
      !get_int(env, argv[2], op, "M", &M) || !get_int(env, argv[3], op, "N", &N) ||
      !get_int(env, argv[4], op, "K", &K) || !get_num(env, argv[5], op, "alpha", &alpha) ||
      !get_f32(env, argv[6], op, "A", MUL2(M, K), &A) || !get_f32(env, argv[7], op, "B", MUL2(K, N), &B) ||
      !get_num(env, argv[8], op, "beta", &beta) || !get_f32(env, argv[9], op, "C", MUL2(M, N), &C))
    return NULL;
  if (M > INT32_MAX / 2 || N > INT32_MAX / 2 || K > INT32_MAX / 2) {
    throw_err(env, op, "M, N and K must each be below 2^30");
    return NULL;
  }
  gemm_bf16(ta, tb, (int)M, (int)N, (int)K, (float)alpha, A, ta ? (int)M : (int)K, B, tb ? (int)K : (int)N,
            (float)beta, C, (int)N);
  return NULL;
}

// gemmBf16PeakGflops(): one core's measured peak (GFLOP/s) of the unit gemmBf16 runs on (AMX
// tiles, or VDPBF16PS), 0 for the float32 fallback.
static napi_value js_peak(napi_env env, napi_callback_info info) {
  (void)info;
  return make_num(env, have_amx() ? amx_peak_gflops() : bf16_peak_gflops());
}

// gemmBf16Peaks(): { vdpbf16ps, amx }: each unit's one-core peak (GFLOP/s), 0 where absent or disabled.
static napi_value js_peaks(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_object(env, &r);
  napi_set_named_property(env, r, "vdpbf16ps", make_num(env, bf16_peak_gflops()));
  napi_set_named_property(env, r, "amx", make_num(env, amx_peak_gflops()));
  return r;
}

// gemmBf16Bandwidth(): { read, write, stream } GB/s of the pool's threads streaming their own
// 24 MiB each (plain loads; plain stores; non-temporal stores), best of a few tries.
static napi_value js_bandwidth(napi_env env, napi_callback_info info) {
  (void)info;
  double bw[3] = {0, 0, 0};
  int threads = pool_threads();
  if (!stream_bandwidth(threads, bw)) {
    throw_err(env, "gemmBf16Bandwidth", "out of memory");
    return NULL;
  }
  napi_value r;
  napi_create_object(env, &r);
  napi_set_named_property(env, r, "read", make_num(env, bw[0]));
  napi_set_named_property(env, r, "write", make_num(env, bw[1]));
  napi_set_named_property(env, r, "stream", make_num(env, bw[2]));
  napi_set_named_property(env, r, "threads", make_num(env, threads));
  return r;
}

// gemmBf16Info(): which micro-kernel runs, and the blocking.
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  char s[200];
  snprintf(s, sizeof s, "%s %s MRxNR=%dx%d KC=%d NC=%d", ISA,
           have_amx() ? "AMX" : have_dp() ? "VDPBF16PS" : "fallback (float32 FMA on bf16-rounded operands)",
           have_amx() ? 32 : MR, NR, KC, NC);
  napi_value r;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
  return r;
}

void register_gemm_bf16(napi_env env, napi_value exports) {
  export_fn(env, exports, "gemmBf16", js_gemm_bf16);
  export_fn(env, exports, "gemmBf16PeakGflops", js_peak);
  export_fn(env, exports, "gemmBf16Peaks", js_peaks);
  export_fn(env, exports, "gemmBf16Info", js_info);
  export_fn(env, exports, "gemmBf16Bandwidth", js_bandwidth);
}

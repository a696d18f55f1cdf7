// Q8_0 weights × int8-quantized activations, the integer dot products of batch-1 decoding.
// Included by gemv_quant.c (one copy per ISA level).
//
// Why: a Q8_0 weight is 8 bits, and batch-1 decoding reads each one once per token. Converting
// every weight to float32 and multiplying in float32 costs four times the instructions per
// weight of an integer dot product (AVX-512 VNNI's VPDPBUSD: 64 u8×s8 products summed four at a
// time into 16 int32 lanes, one instruction). So, as llama.cpp does for q8_0, each row of x is
// rounded once per product to the same 32-blocks (scale dx = max|x|/127 kept in float32, 32 int8
// qx), and each (weight block, activation block) pair is an exact int32 sum times dw·dx.
//
// Weight layout ("panels", made by packQ8_0Panels in src/infer/weight-dtype.ts from ggml's
// Q8_0 blocks; same numbers, reordered): rows go 16 to a panel (the last one padded with zero
// weights); a panel of a K-wide matrix (nb = K/32 blocks) is 17·K bytes:
//   quants  [nb][8][16][4] u8: byte i of group g of block b of row r at ((b·8 + g)·16 + r)·4 + i,
//           holding q + 128 (q the int8 of ggml's block, weight k = 32b + 4g + i);
//   scales  [nb][16] F16 at 16·K + (b·16 + r)·2 (ggml's d of that block).
// So one 64-byte load holds 4 consecutive weights of 16 rows: one VPDPBUSD against the 4 int8
// of x broadcast to all lanes adds those products into each row's own lane; no horizontal
// sums. The +128 makes the weights the instruction's unsigned operand; the 128·Σqx it adds is
// taken off by starting the block's int32 sum at −128·Σqx (computed once per activation block).
//
// The result, on every path (VNNI zmm, AVX-VNNI ymm, AVX2 maddubs, portable C), bit for bit:
//   S_b = Σ_{k in block b} q_w·q_x            exact int32 (|S_b| ≤ 32·128·127)
//   acc = fma(f16(d_w,b)·dx_b, (float)S_b, acc) for b = 0, 1, …, nb−1 in order, acc from 0
//   y   = acc (or y + acc when accumulating).
// Each row is computed whole by one task, so the result does not depend on the thread count.
//
// Error against x·w̃ᵀ with the decoded weights w̃ = d_w·q_w: the activation rounding
// |x − dx·qx| ≤ dx/2 per value gives |Δ| ≤ Σ_b (dx_b/2)·Σ_{k∈b}|w̃_k|, plus float32 rounding
// of the nb products and sums (≤ nb·2⁻²³·Σ|x̃·w̃| for the chain, far smaller in practice).
#pragma once
#include <stdint.h>
#include <string.h>
#include "amx.h"

#define Q8P_ROWS 16
// Software prefetch distance along the weight stream (bytes): the conversion or dot-product
// work per byte keeps too few cache misses in flight for the hardware prefetcher alone.
#define Q8P_PREFETCH 4096

// x row (K values) → int8 qx [K], dx [nb] (float32 scale), ncorr [nb] = −128·Σ qx.
// ggml's rounding (quantize_row_q8_0: d = amax/127, q = round(x·(1/d))), but d is kept in float32.
// roundf rounds halves away from zero; the vector version does the same exactly: t = trunc(v),
// v − t is exact, and |v − t| ≥ 0.5 adds ±1 (so every level gives the same qx).
static void q8_quantize_row(const float *x, int K, int8_t *qx, float *dx, int32_t *ncorr) {
  int b0 = 0;
#if defined(__AVX512F__)
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (; b0 < K / 32; b0++) {
    const float *xb = x + b0 * 32;
    __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask)));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    __m512i q[2];
    for (int h = 0; h < 2; h++) {
      __m512 v = _mm512_mul_ps(h ? v1 : v0, _mm512_set1_ps(id));
      __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      __mmask16 up = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_sub_ps(v, t), absmask), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
      // ±1 with v's sign (t + copysign(1, v)): an exact integer add
      __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_andnot_ps(absmask, v));
      t = _mm512_mask_add_ps(t, up, t, one);
      __m512i qi = _mm512_cvttps_epi32(t);
      q[h] = _mm512_max_epi32(_mm512_min_epi32(qi, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
      _mm_storeu_si128((__m128i *)(qx + b0 * 32 + h * 16), _mm512_cvtepi32_epi8(q[h]));
    }
    dx[b0] = d;
    ncorr[b0] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
  }
#endif
  for (int b = b0; b < K / 32; b++) {
    const float *xb = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; i++) {
      float a = fabsf(xb[i]);
      amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < 32; i++) {
      int q = (int)roundf(xb[i] * id);
      q = q > 127 ? 127 : q < -127 ? -127 : q;
      qx[b * 32 + i] = (int8_t)q;
      s += q;
    }
    dx[b] = d;
    ncorr[b] = -128 * s;
  }
}

typedef struct {
  int M, N, K, ntasks, accumulate;
  const uint8_t *w;  // panels
  const int8_t *qx;  // [M][K]
  const float *dx;   // [M][nb]
  const int32_t *ncorr;  // [M][nb]
  float *y;          // [M][N]
  int mpad;          // rows that qx, dx and ncorr hold (≥ M; zeros past M), so AMX may read
                     // a whole 16-row tile at the tail; 0 = M
} q8p_args;

static float q8p_half(uint16_t h);  // half → float (gemv_quant.c: half_to_float)

// Stores acc[0..15] (row r of the panel → y[m][j0 + r]) for the rows that exist.
static inline void q8p_store(const q8p_args *a, int m, int j0, const float *acc) {
  int n = a->N - j0 < Q8P_ROWS ? a->N - j0 : Q8P_ROWS;
  float *y = a->y + (size_t)m * a->N + j0;
  for (int r = 0; r < n; r++) y[r] = a->accumulate ? y[r] + acc[r] : acc[r];
}

// Portable: the reference arithmetic, written out.
static void q8p_panel_portable(const q8p_args *a, int p, int m0, int m1) {
  int K = a->K, nb = K / 32;
  const uint8_t *pw = a->w + (size_t)p * 17 * K;
  const uint16_t *ps = (const uint16_t *)(pw + (size_t)16 * K);
  for (int m = m0; m < m1; m++) {
    float acc[Q8P_ROWS] = {0};
    const int8_t *qx = a->qx + (size_t)m * K;
    for (int b = 0; b < nb; b++) {
      int32_t s[Q8P_ROWS];
      for (int r = 0; r < Q8P_ROWS; r++) s[r] = a->ncorr[(size_t)m * nb + b];
      for (int g = 0; g < 8; g++) {
        const uint8_t *wg = pw + (size_t)(b * 8 + g) * 64;
        const int8_t *xg = qx + b * 32 + g * 4;
        for (int r = 0; r < Q8P_ROWS; r++)
          for (int i = 0; i < 4; i++) s[r] += (int32_t)wg[r * 4 + i] * xg[i];
      }
      float dx = a->dx[(size_t)m * nb + b];
      for (int r = 0; r < Q8P_ROWS; r++) {
        uint16_t h;
        memcpy(&h, ps + b * 16 + r, 2);
        acc[r] = fmaf(q8p_half(h) * dx, (float)s[r], acc[r]);
      }
    }
    q8p_store(a, m, p * Q8P_ROWS, acc);
  }
}

#if defined(__AVX2__)
// ymm paths: a panel's 16 rows as two halves of 8 lanes (bytes 0..31 and 32..63 of each group).
// DOT(acc, u, x) adds the 4-products of the stored bytes u and signed x into acc's int32 lanes;
// CORR: whether DOT multiplies u = w + 128 (then the sums start at −128·Σqx) or w itself.
// (The body takes M as a constant, so that the accumulators stay in registers.)
#define Q8P_YMM_KERNEL(NAME, ATTR, DOT, CORR)                                                  \
  ATTR __attribute__((always_inline)) static inline void NAME##_m(const q8p_args *a, int p, int mc, const int M) { \
    int K = a->K, nb = K / 32;                                                                 \
    const uint8_t *pw = a->w + (size_t)p * 17 * K;                                             \
    const uint16_t *ps = (const uint16_t *)(pw + (size_t)16 * K);                              \
    {                                                                                          \
      __m256 acc[4][2];                                                                        \
      for (int m = 0; m < M; m++) acc[m][0] = acc[m][1] = _mm256_setzero_ps();                 \
      for (int b = 0; b < nb; b++) {                                                           \
        __m256i s[4][2];                                                                       \
        for (int m = 0; m < M; m++)                                                            \
          s[m][0] = s[m][1] = _mm256_set1_epi32(CORR ? a->ncorr[(size_t)(mc + m) * nb + b] : 0); \
        for (int g = 0; g < 8; g++) {                                                          \
          const uint8_t *wg = pw + (size_t)(b * 8 + g) * 64;                                   \
          __builtin_prefetch(wg + Q8P_PREFETCH);                                               \
          __m256i w0 = _mm256_loadu_si256((const __m256i *)wg);                                \
          __m256i w1 = _mm256_loadu_si256((const __m256i *)(wg + 32));                         \
          for (int m = 0; m < M; m++) {                                                        \
            int32_t x4;                                                                        \
            memcpy(&x4, a->qx + (size_t)(mc + m) * K + b * 32 + g * 4, 4);                     \
            __m256i xv = _mm256_set1_epi32(x4);                                                \
            s[m][0] = DOT(s[m][0], w0, xv);                                                    \
            s[m][1] = DOT(s[m][1], w1, xv);                                                    \
          }                                                                                    \
        }                                                                                      \
        __m256 d0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ps + b * 16)));          \
        __m256 d1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ps + b * 16 + 8)));      \
        for (int m = 0; m < M; m++) {                                                          \
          __m256 dx = _mm256_set1_ps(a->dx[(size_t)(mc + m) * nb + b]);                        \
          acc[m][0] = _mm256_fmadd_ps(_mm256_mul_ps(d0, dx), _mm256_cvtepi32_ps(s[m][0]), acc[m][0]); \
          acc[m][1] = _mm256_fmadd_ps(_mm256_mul_ps(d1, dx), _mm256_cvtepi32_ps(s[m][1]), acc[m][1]); \
        }                                                                                      \
      }                                                                                        \
      for (int m = 0; m < M; m++) {                                                            \
        float out[16];                                                                         \
        _mm256_storeu_ps(out, acc[m][0]);                                                      \
        _mm256_storeu_ps(out + 8, acc[m][1]);                                                  \
        q8p_store(a, mc + m, p * Q8P_ROWS, out);                                               \
      }                                                                                        \
    }                                                                                          \
  }                                                                                            \
  ATTR static void NAME(const q8p_args *a, int p, int m0, int m1) {                            \
    for (int mc = m0; mc < m1; mc += 4) switch (m1 - mc < 4 ? m1 - mc : 4) {                   \
      case 1: NAME##_m(a, p, mc, 1); break;                                                    \
      case 2: NAME##_m(a, p, mc, 2); break;                                                    \
      case 3: NAME##_m(a, p, mc, 3); break;                                                    \
      default: NAME##_m(a, p, mc, 4); break;                                                   \
    }                                                                                          \
  }

// AVX2 without VNNI: u8×s8 pairs with VPMADDUBSW saturate at ±32767 (255·127·2 > 32767), so
// the weights go back to signed (w = u ^ 0x80) and the sign moves onto x: |w|·(x·sign w), pairs
// ≤ 2·128·127 < 32767, exact; then pairs → int32 with VPMADDWD by ones. This sums w·x itself,
// so its block sums start at 0 rather than at −128·Σqx.
static inline __m256i q8p_dot_maddubs(__m256i s, __m256i u, __m256i x) {
  __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
  __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
  return _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
Q8P_YMM_KERNEL(q8p_panel_avx2, , q8p_dot_maddubs, 0)
#define Q8P_DOT_AVXVNNI(s, w, x) _mm256_dpbusd_avx_epi32(s, w, x)
Q8P_YMM_KERNEL(q8p_panel_avxvnni, __attribute__((target("avxvnni"))), Q8P_DOT_AVXVNNI, 1)
#endif

#if defined(__AVX512F__)
// AVX-512 VNNI: one zmm holds a group's 16 rows × 4 bytes; up to 8 rows of x at once.
__attribute__((target("avx512vnni"), always_inline)) static inline void q8p_vnni512_m(const q8p_args *a, int p, int mc, const int M) {
  int K = a->K, nb = K / 32;
  const uint8_t *pw = a->w + (size_t)p * 17 * K;
  const uint16_t *ps = (const uint16_t *)(pw + (size_t)16 * K);
  {
    __m512 acc[8];
    for (int m = 0; m < M; m++) acc[m] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
      __m512i s[8];
      for (int m = 0; m < M; m++) s[m] = _mm512_set1_epi32(a->ncorr[(size_t)(mc + m) * nb + b]);
      const uint8_t *wb = pw + (size_t)b * 8 * 64;
      __builtin_prefetch((const char *)(ps + b * 16) + Q8P_PREFETCH / 8);
      for (int g = 0; g < 8; g++) {
        __builtin_prefetch(wb + g * 64 + Q8P_PREFETCH);
        __m512i w = _mm512_loadu_si512((const void *)(wb + g * 64));
        for (int m = 0; m < M; m++) {
          int32_t x4;
          memcpy(&x4, a->qx + (size_t)(mc + m) * K + b * 32 + g * 4, 4);
          s[m] = _mm512_dpbusd_epi32(s[m], w, _mm512_set1_epi32(x4));
        }
      }
      __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ps + b * 16)));
      for (int m = 0; m < M; m++)
        acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a->dx[(size_t)(mc + m) * nb + b])), _mm512_cvtepi32_ps(s[m]), acc[m]);
    }
    // y (+)= acc, masked to the panel's real rows of W (the same single add as q8p_store)
    int j0 = p * Q8P_ROWS, n = a->N - j0 < 16 ? a->N - j0 : 16;
    __mmask16 k = (__mmask16)((1u << n) - 1);
    for (int m = 0; m < M; m++) {
      float *y = a->y + (size_t)(mc + m) * a->N + j0;
      _mm512_mask_storeu_ps(y, k, a->accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(k, y), acc[m]) : acc[m]);
    }
  }
}
__attribute__((target("avx512vnni"))) static void q8p_panel_vnni512(const q8p_args *a, int p, int m0, int m1) {
  for (int mc = m0; mc < m1; mc += 8) switch (m1 - mc < 8 ? m1 - mc : 8) {
    case 1: q8p_vnni512_m(a, p, mc, 1); break;
    case 2: q8p_vnni512_m(a, p, mc, 2); break;
    case 3: q8p_vnni512_m(a, p, mc, 3); break;
    case 4: q8p_vnni512_m(a, p, mc, 4); break;
    case 5: q8p_vnni512_m(a, p, mc, 5); break;
    case 6: q8p_vnni512_m(a, p, mc, 6); break;
    case 7: q8p_vnni512_m(a, p, mc, 7); break;
    default: q8p_vnni512_m(a, p, mc, 8); break;
  }
}
#endif

#if defined(__AVX512F__)
// AMX-INT8 (Intel Sapphire Rapids and later): one TDPBSSD multiplies a 16 × 32 tile of int8
// activations (16 rows of x, one 32-block each: qx rows at stride K) by an 8 × 64 tile of one
// block of the panel's weights (8 groups × 16 rows × 4 bytes, 512 bytes in panel order, which
// is exactly the B-tile layout: row = 4 consecutive k, 16 columns × 4 bytes) into a 16 × 16
// int32 tile: the exact block sums S_b of 16 rows of x × 16 rows of W, 8,192 products in one
// instruction (a VPDPBUSD does 64). The panel's q + 128 bytes go back to signed q once per
// panel (XOR 0x80 into a buffer of 16·K bytes, shared by every 16 rows of x), so no −128·Σqx
// correction is needed. Stored to L1 and read back row by row, each S_b gets the same
// acc = fma(d_w·dx, (float)S_b, acc) as the VNNI path, block by block in order: the results
// are bitwise those of every other path.
// Measured here (1 thread, TSC cycles per 16 × 16 × 32 block): TILEZERO before each product
// costs ~30 (the sums start from a tile of zeros loaded from memory instead: ~1); product +
// store ~24; the scaling ~30 (3 vector instructions a row, 16 rows); all of it with the loads
// and the stores of y ~70, against ~112 for the VNNI kernel on the same 16 rows.
// Tiles: 0–3 block sums, 4–5 activations, 6–7 weights.
#define Q8P_AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512vnni")))

_Alignas(64) static const int32_t q8p_zero_tile[256] = {0};

Q8P_AMX_TARGET static void q8p_amx_begin(void) {
  mynah_amx_config c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 4; t++) mynah_amx_config_set(&c, t, 16, 64);
  mynah_amx_config_set(&c, 4, 16, 32);
  mynah_amx_config_set(&c, 5, 16, 32);
  mynah_amx_config_set(&c, 6, 8, 64);
  mynah_amx_config_set(&c, 7, 8, 64);
  mynah_amx_load_config(&c);
}

// Block b's sums S_b of the 16 rows at qx (stride K) by the signed weights wq into tile T,
// through activation tile A and weight tile W.
#define Q8P_AMX_BLOCK(T, A, W, b)                            \
  do {                                                       \
    _tile_loadd(T, q8p_zero_tile, 64);                       \
    _tile_loadd(A, qx + (b) * 32, K);                        \
    _tile_loadd(W, wq + (size_t)(b) * 512, 64);              \
    _tile_dpbssd(T, A, W);                                   \
  } while (0)

// Rows [mc, mc + 16) of x against panel p, whose quants are in wq as signed bytes; rows at or
// past m1 are padding (qx and dx hold zeros there, q8_gemm allocates them) and are not stored.
Q8P_AMX_TARGET static void q8p_amx_16(const q8p_args *a, const int8_t *wq, int p, int mc, int m1) {
  int K = a->K, nb = K / 32;
  const uint16_t *ps = (const uint16_t *)(a->w + (size_t)p * 17 * K + (size_t)16 * K);
  const int8_t *qx = a->qx + (size_t)mc * K;
  const float *dxm = a->dx + (size_t)mc * nb;
  _Alignas(64) int32_t S[2][4][256];
  __m512 acc[16];
  for (int m = 0; m < 16; m++) acc[m] = _mm512_setzero_ps();
  // Groups of 4 blocks, software-pipelined one group deep: while the tile unit computes group
  // g + 1, the vector units scale group g − 1 from sums stored an iteration earlier (loads of
  // a tile store that has not yet left the core would wait for it), so S is double-buffered.
  int groups = nb / 4;
  if (groups > 0) {
    Q8P_AMX_BLOCK(0, 4, 6, 0);
    Q8P_AMX_BLOCK(1, 5, 7, 1);
    Q8P_AMX_BLOCK(2, 4, 6, 2);
    Q8P_AMX_BLOCK(3, 5, 7, 3);
  }
  for (int g = 0; g <= groups; g++) {
    if (g < groups) {
      int32_t(*Sg)[256] = S[g & 1];
      _tile_stored(0, Sg[0], 64);
      _tile_stored(1, Sg[1], 64);
      _tile_stored(2, Sg[2], 64);
      _tile_stored(3, Sg[3], 64);
      if (g + 1 < groups) {
        Q8P_AMX_BLOCK(0, 4, 6, 4 * g + 4);
        Q8P_AMX_BLOCK(1, 5, 7, 4 * g + 5);
        Q8P_AMX_BLOCK(2, 4, 6, 4 * g + 6);
        Q8P_AMX_BLOCK(3, 5, 7, 4 * g + 7);
      }
    }
    if (g == 0) continue;
    int32_t(*Sp)[256] = S[(g - 1) & 1];
    int b = 4 * (g - 1);
    __m512 d[4];
    for (int j = 0; j < 4; j++) d[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ps + (b + j) * 16)));
    // row by row, its four blocks in order (one accumulator live at a time)
    for (int m = 0; m < 16; m++) {
      __m512 t = acc[m];
      for (int j = 0; j < 4; j++)
        t = _mm512_fmadd_ps(_mm512_mul_ps(d[j], _mm512_set1_ps(dxm[(size_t)m * nb + b + j])),
                            _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(Sp[j] + m * 16))), t);
      acc[m] = t;
    }
  }
  for (int b = groups * 4; b < nb; b++) {
    Q8P_AMX_BLOCK(0, 4, 6, b);
    _tile_stored(0, S[0][0], 64);
    __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ps + b * 16)));
    for (int m = 0; m < 16; m++)
      acc[m] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(dxm[(size_t)m * nb + b])),
                               _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(S[0][0] + m * 16))), acc[m]);
  }
  // y rows (+)= acc, 16 lanes at once (masked to the panel's real rows of W); the same single
  // float add per value as q8p_store (measured: the scalar store cost a third of the kernel)
  int rows = m1 - mc < 16 ? m1 - mc : 16, j0 = p * Q8P_ROWS, n = a->N - j0 < 16 ? a->N - j0 : 16;
  __mmask16 k = (__mmask16)((1u << n) - 1);
  for (int m = 0; m < rows; m++) {
    float *y = a->y + (size_t)(mc + m) * a->N + j0;
    __m512 v = a->accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(k, y), acc[m]) : acc[m];
    _mm512_mask_storeu_ps(y, k, v);
  }
}

// When tiles pay (measured here, 1 thread, bench/native/q8_micro.c: against the VNNI kernel
// 0.4× at 4 rows of x, 0.85–1.06× at 16, 1.06–1.2× at 32, 1.3–1.4× at 64–128): products with
// at least Q8P_AMX_MIN_M rows of x; within them, a tail of fewer than 16 rows is padded to a
// tile when it has Q8P_AMX_MIN_ROWS or more (a tile costs about the same whatever its rows),
// else left to VNNI. Decoding (M = 1) and batched decoding of up to 16 streams stay on VNNI.
#ifndef Q8P_AMX_MIN_M
#define Q8P_AMX_MIN_M 32
#endif
#ifndef Q8P_AMX_MIN_ROWS
#define Q8P_AMX_MIN_ROWS 12
#endif
// Rows [m0, m1) against panel p: whole 16-row tiles on AMX, a tail on AMX when the buffers
// are padded and it has Q8P_AMX_MIN_ROWS or more, else on VNNI (bitwise the same results).
// wq: 16·K bytes of scratch (64-byte aligned) for the panel's signed quants. q8p_amx_begin has run.
Q8P_AMX_TARGET static void q8p_panel_amx(const q8p_args *a, int8_t *wq, int p, int m0, int m1) {
  int mpad = a->mpad > a->M ? a->mpad : a->M, K = a->K;
  int mc = m0;
  int tiles = 0;
  for (; mc < m1; mc += 16) {
    int r = m1 - mc;
    if (r < 16 && (r < Q8P_AMX_MIN_ROWS || mc + 16 > mpad)) break;
    if (!tiles++) {  // q + 128 → q, once per panel
      const uint8_t *pw = a->w + (size_t)p * 17 * K;
      for (int i = 0; i < 16 * K; i += 64)
        _mm512_store_si512((void *)(wq + i), _mm512_xor_si512(_mm512_loadu_si512((const void *)(pw + i)), _mm512_set1_epi8((char)0x80)));
    }
    q8p_amx_16(a, wq, p, mc, m1);
  }
  if (mc < m1) q8p_panel_vnni512(a, p, mc, m1);
}
#endif

typedef void (*q8p_panel_fn)(const q8p_args *a, int p, int m0, int m1);

#if defined(__x86_64__) && (defined(__AVX2__) || defined(__AVX512F__))
#include <cpuid.h>
static int q8p_cpu_avx512vnni(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
}
// AMX-INT8 with the OS's permission (amx.h), unless MYNAH_SIMD_DISABLE names amx or amx-int8.
static int q8p_cpu_amx_int8(void) {
#if defined(__AVX512F__)
  return q8p_cpu_avx512vnni() && !mynah_simd_disabled("avx512vnni") && !mynah_simd_disabled("amx") && !mynah_simd_disabled("amx-int8") && mynah_amx_usable(MYNAH_AMX_INT8);
#else
  return 0;
#endif
}
static int q8p_cpu_avxvnni(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}
#endif

// The paths this build has, best first; q8p_path picks one (the harness forces each in turn).
enum { Q8P_PORTABLE, Q8P_AVX2, Q8P_AVXVNNI, Q8P_VNNI512, Q8P_AMX };
static const char *const q8p_path_names[] = {"portable", "avx2 (maddubs)", "avx-vnni (ymm)", "avx512-vnni (zmm)", "amx-int8 (tiles)"};
static int q8p_forced = -1;

static int q8p_best_path(void) {
// MYNAH_SIMD_DISABLE=amx (or amx-int8), avx512vnni, avxvnni skip a path (tests reach each one so).
#if defined(__AVX512F__)
  if (q8p_cpu_amx_int8()) return Q8P_AMX;
  if (q8p_cpu_avx512vnni() && !mynah_simd_disabled("avx512vnni")) return Q8P_VNNI512;
#endif
#if defined(__AVX2__)
  if (q8p_cpu_avxvnni() && !mynah_simd_disabled("avxvnni")) return Q8P_AVXVNNI;
  return Q8P_AVX2;
#else
  return Q8P_PORTABLE;
#endif
}

static int q8p_path(void) {
  static int best = -1;
  if (q8p_forced >= 0) return q8p_forced;
  if (best < 0) best = q8p_best_path();
  return best;
}

static q8p_panel_fn q8p_fn(int path) {
  switch (path) {
#if defined(__AVX512F__)
    case Q8P_AMX:  // (q8_task runs the tiles itself; this is the fallback for rows too few for a tile)
    case Q8P_VNNI512: return q8p_panel_vnni512;
#endif
#if defined(__AVX2__)
    case Q8P_AVXVNNI: return q8p_panel_avxvnni;
    case Q8P_AVX2: return q8p_panel_avx2;
#endif
    default: return q8p_panel_portable;
  }
}

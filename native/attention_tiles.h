// Register-blocked attention tiles for head sizes D = 16, 32, 64, 96, 128 (included by attention.c).
//
// Written with GCC/Clang vector extensions sized to the machine's registers: VW floats per
// vector (16 with AVX-512, 8 with AVX/AVX2, 4 otherwise: SSE, NEON) and NACC accumulators per
// register block (16 of AVX-512's 32 registers, 8 of the 16 elsewhere), so the same code is
// the fast path everywhere. Every kernel works on column chunks of NVC ∈ {4, 2, 1} vectors (the
// largest that divides D/VW) and ROWS = min(8, NACC / NVC) rows, so a block's accumulators stay
// in registers over the long loop. D must be a multiple of VW and a compile-time constant.
//
// Shapes as in attention.c. Tiles (S, P, dS) are (rows, BK); head rows (D).
// forward tile (BQ queries × BK keys):
//   S = Qs·Kt (Qs already scaled)  →  row-wise online softmax (attention.c)  →
//   O = corr·O + P·V, each block of O held in registers over the keys.
// backward tile (RB query rows × BK keys, for one key tile whose k, v were gathered):
//   P = exp(Q·Kt·scale − lse), dP = dO·Vt, dS = P∘(dP − Δ)·scale (attention.c);
//   dV += Pᵀ·dO and dK += dSᵀ·Q (dO, Q blocks in registers), dQ += dS·K (dQ block in registers).
// RB and BQ (attention.c) must be multiples of every ROWS (at most 8) and of SR.
#pragma once
#include "ops_common.h"

#if defined(__AVX512F__)
#define VW 16
#define NACC 16
#elif defined(__AVX__)
#define VW 8
#define NACC 8
#else
#define VW 4
#define NACC 8
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4)));  // unaligned loads/stores
#define VLD(p) (*(const vfu *)(p))
#define VST(p, x) (*(vfu *)(p) = (x))
#define NVC(D) ((D) / VW % 4 == 0 ? 4 : (D) / VW % 2 == 0 ? 2 : 1)  // vectors per column chunk
#define ROWS(D) (NACC / NVC(D) < 8 ? NACC / NVC(D) : 8)             // rows per register block
#define SC (BK / VW < 4 ? BK / VW : 4)        // vectors per column chunk of a score row
#define SR (NACC / SC)                        // rows per block of S

#if defined(__AVX512F__)
#include <immintrin.h>
// dst row c (stride ldd) = column c of the 16 × 16 block whose rows are r[0..15].
static inline void transpose16(__m512 r[16], float *dst, size_t ldd) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {  // pairs of rows interleaved within each 128-bit lane
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {  // r[4i+k], lane L: column 4L+k of rows 4i..4i+3
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; k++) {  // 4 × 4 transpose of the 128-bit lanes of r[k], r[4+k], r[8+k], r[12+k]
    __m512 u0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), u1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    _mm512_storeu_ps(dst + (size_t)k * ldd, _mm512_shuffle_f32x4(u0, u2, 0x88));
    _mm512_storeu_ps(dst + (size_t)(4 + k) * ldd, _mm512_shuffle_f32x4(u1, u3, 0x88));
    _mm512_storeu_ps(dst + (size_t)(8 + k) * ldd, _mm512_shuffle_f32x4(u0, u2, 0xdd));
    _mm512_storeu_ps(dst + (size_t)(12 + k) * ldd, _mm512_shuffle_f32x4(u1, u3, 0xdd));
  }
}
#endif

#if defined(__AVX512F__)
static inline __mmask16 first_lanes(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// The online-softmax step of 16 score rows (S, BK per row, jn[u] of them visible) over one
// key tile: running max m[u] ← max(m[u], scale·max_j S[u][j]), corr[u] = e^(m_old − m_new)
// (0 while m_old is −∞), S[u][j] ← e^(S[u][j]·scale − m_new) (0 past jn[u]), l[u] ← l[u]·corr[u]
// + Σ_j S[u][j]. The caller rescales its output rows by corr. The max and the sum are taken 16
// rows at once, lanes = rows, through a 16 × 16 transpose of per-row partial vectors: row by
// row, each row's chain of dependent max and add steps set the pace (1.6 × on the bf16
// forward). The sum adds each row's 16 lane partials in lane order, as a row-by-row loop does.
static inline void softmax16(float *S, const int *jn, float *m, float *l, float *corr, float scale) {
  _Alignas(64) float t[256], mx[16], mnew[16], sum[16];
  __m512 r[16];
  for (int u = 0; u < 16; u++) {  // per row, the max of each lane over its visible keys
    __m512 v = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < BK; j += 16) v = _mm512_mask_max_ps(v, first_lanes(jn[u] - j), v, _mm512_loadu_ps(S + u * BK + j));
    r[u] = v;
  }
  transpose16(r, t, 16);
  __m512 M = _mm512_load_ps(t);
  for (int c = 1; c < 16; c++) M = _mm512_max_ps(M, _mm512_load_ps(t + 16 * c));
  _mm512_store_ps(mx, M);
  for (int u = 0; u < 16; u++) {
    const float x = mx[u] * scale;  // scale > 0: the max of the scaled scores
    mnew[u] = x > m[u] ? x : m[u];
    corr[u] = m[u] == -INFINITY ? 0.0f : exp_fast(m[u] - mnew[u]);
  }
  for (int u = 0; u < 16; u++) {
    float *s = S + u * BK, acc[LANES] = {0};
    const float mn = mnew[u];
    const int n = jn[u];
    for (int j = 0; j < BK; j += LANES)
      for (int v = 0; v < LANES; v++) {
        const float e = j + v < n ? exp_fast(s[j + v] * scale - mn) : 0.0f;
        s[j + v] = e;
        acc[v] += e;
      }
    r[u] = _mm512_loadu_ps(acc);
  }
  transpose16(r, t, 16);
  __m512 sv = _mm512_load_ps(t);
  for (int c = 1; c < 16; c++) sv = _mm512_add_ps(sv, _mm512_load_ps(t + 16 * c));
  _mm512_store_ps(sum, sv);
  for (int u = 0; u < 16; u++) {
    l[u] = l[u] * corr[u] + sum[u];
    m[u] = mnew[u];
  }
}
#endif

// One row of the backward's elementwise step, in place over BK columns: P = e^(S·scale − L)
// (S's scale applied here, L the row's lse) and dS = P∘(dP − Δ)·scale (the scale of S = scale·q·kᵀ
// folded in), for the jn visible columns; both 0 past jn (whatever the tile left there).
static inline void p_ds_row(float *restrict s, float *restrict dp, int jn, float L, float Dt, float scale) {
  for (int j = 0; j < BK; j++) {
    const float pj = j < jn ? exp_fast(s[j] * scale - L) : 0.0f;
    dp[j] = j < jn ? pj * (dp[j] - Dt) * scale : 0.0f;
    s[j] = pj;
  }
}

// Bt[d][j] = X[j][d] for j < n (rows of X at stride ldx), 0 for n ≤ j < ncols (a multiple of
// 16); Bt rows of stride ldb. Done in 16 × 16 blocks: in registers with AVX-512, else with
// 16 source rows at a time (their reads stay in L1; each destination row gets 16 floats).
static inline __attribute__((always_inline)) void transpose_rows(float *restrict Bt, size_t ldb, const float *restrict X,
                                                                size_t ldx, int n, int ncols, const int D) {
  for (int j0 = 0; j0 < ncols; j0 += 16) {
    const int m = n - j0 < 16 ? (n - j0 > 0 ? n - j0 : 0) : 16;
#if defined(__AVX512F__)
    if (D % 16 == 0) {
      for (int d0 = 0; d0 < D; d0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = i < m ? _mm512_loadu_ps(X + (size_t)(j0 + i) * ldx + d0) : _mm512_setzero_ps();
        transpose16(r, Bt + (size_t)d0 * ldb + j0, ldb);
      }
      continue;
    }
#endif
    for (int d = 0; d < D; d++) {
      float *dst = Bt + (size_t)d * ldb + j0;
      for (int jj = 0; jj < 16; jj++) dst[jj] = jj < m ? X[(size_t)(j0 + jj) * ldx + d] : 0.0f;
    }
  }
}

// S[i][0..BK) = Σ_d A[i][d]·Bt[d][0..BK) for i < rows (a multiple of SR; A rows of stride
// lda). Bt (D, ≥ BK) is the transposed key (or value) tile, rows of stride ldb.
static inline __attribute__((always_inline)) void tile_scores(float *restrict S, const float *restrict A, size_t lda,
                                                             const float *restrict Bt, size_t ldb, int rows,
                                                             const int D) {
  for (int i = 0; i < rows; i += SR)
    for (int c0 = 0; c0 < BK / VW; c0 += SC) {
      vf acc[NACC];
      for (int x = 0; x < NACC; x++) acc[x] = (vf){0};
      for (int d = 0; d < D; d++) {
        vf b[SC];
        for (int c = 0; c < SC; c++) b[c] = VLD(Bt + d * ldb + (c0 + c) * VW);
        for (int r = 0; r < SR; r++) {
          const float a = A[(size_t)(i + r) * lda + d];
          for (int c = 0; c < SC; c++) acc[r * SC + c] += a * b[c];
        }
      }
      for (int r = 0; r < SR; r++)
        for (int c = 0; c < SC; c++) VST(S + (i + r) * BK + (c0 + c) * VW, acc[r * SC + c]);
    }
}

// O[i] = corr[i]·O[i] + Σ_{j<jmax} P[i][j]·V[j] for i < rows (a multiple of ROWS(D)); V rows
// of stride ldv. P is zero past each row's causal limit, so one jmax serves every row.
static inline __attribute__((always_inline)) void tile_pv(float *restrict O, const float *restrict P, const float *corr,
                                                         const float *restrict V, size_t ldv, int rows, int jmax,
                                                         const int D) {
  const int nvc = NVC(D), R = ROWS(D);
  for (int i = 0; i < rows; i += R)
    for (int c0 = 0; c0 < D / VW; c0 += nvc) {
      vf acc[NACC];
      for (int r = 0; r < R; r++)
        for (int c = 0; c < nvc; c++) acc[r * nvc + c] = VLD(O + (i + r) * D + (c0 + c) * VW) * corr[i + r];
      for (int j = 0; j < jmax; j++) {
        const float *vj = V + (size_t)j * ldv + c0 * VW;
        vf v[4];
        for (int c = 0; c < nvc; c++) v[c] = VLD(vj + c * VW);
        for (int r = 0; r < R; r++) {
          const float p = P[(i + r) * BK + j];
          for (int c = 0; c < nvc; c++) acc[r * nvc + c] += p * v[c];
        }
      }
      for (int r = 0; r < R; r++)
        for (int c = 0; c < nvc; c++) VST(O + (i + r) * D + (c0 + c) * VW, acc[r * nvc + c]);
    }
}

// dX[j] += Σ_{r<ROWS} W[r][j]·Y[r] for j < jmax: W (ROWS, BK) weights, Y (ROWS, D) rows of
// stride ldy (held in registers), dX (BK, D): each dX row chunk is loaded and stored once.
static inline __attribute__((always_inline)) void tile_accum_t(float *restrict dX, const float *restrict W,
                                                              const float *restrict Y, size_t ldy, int jmax,
                                                              const int D) {
  const int nvc = NVC(D), R = ROWS(D);
  for (int c0 = 0; c0 < D / VW; c0 += nvc) {
    vf y[NACC];
    for (int r = 0; r < R; r++)
      for (int c = 0; c < nvc; c++) y[r * nvc + c] = VLD(Y + r * ldy + (c0 + c) * VW);
    for (int j = 0; j < jmax; j++) {
      vf x[4];
      float *xj = dX + j * D + c0 * VW;
      for (int c = 0; c < nvc; c++) x[c] = VLD(xj + c * VW);
      for (int r = 0; r < R; r++) {
        const float w = W[r * BK + j];
        for (int c = 0; c < nvc; c++) x[c] += w * y[r * nvc + c];
      }
      for (int c = 0; c < nvc; c++) VST(xj + c * VW, x[c]);
    }
  }
}

// dQ[r] += Σ_{j<jmax} W[r][j]·K[j] for r < ROWS: dQ rows of stride ldq, W (ROWS, BK), K (BK, D).
static inline __attribute__((always_inline)) void tile_accum(float *restrict dQ, size_t ldq, const float *restrict W,
                                                            const float *restrict K, int jmax, const int D) {
  const int nvc = NVC(D), R = ROWS(D);
  for (int c0 = 0; c0 < D / VW; c0 += nvc) {
    vf acc[NACC];
    for (int x = 0; x < NACC; x++) acc[x] = (vf){0};
    for (int j = 0; j < jmax; j++) {
      vf k[4];
      for (int c = 0; c < nvc; c++) k[c] = VLD(K + j * D + (c0 + c) * VW);
      for (int r = 0; r < R; r++) {
        const float w = W[r * BK + j];
        for (int c = 0; c < nvc; c++) acc[r * nvc + c] += w * k[c];
      }
    }
    for (int r = 0; r < R; r++)
      for (int c = 0; c < nvc; c++) {
        float *q = dQ + r * ldq + (c0 + c) * VW;
        VST(q, VLD(q) + acc[r * nvc + c]);
      }
  }
}

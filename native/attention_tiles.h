// Register-blocked attention tiles for head sizes D = 32, 64, 128 (included by attention.c).
//
// Shapes as in attention.c; VW floats per vector, NV = D / VW vectors per head row, and
// R = 16 / NV rows per register block, so a block (R rows × D) is 16 vector registers.
// Written with GCC/Clang vector extensions: on AVX-512 a vector is one zmm register, on
// other targets the compiler splits it into what the machine has (AVX2: two ymm), so the
// same code is the portable fallback.
//
// forward tile (BQ queries × BK keys):
//   S = Qs·Kt (Qs already scaled)  →  row-wise online softmax (attention.c's helper)  →
//   O = corr·O + P·V, with each R-row block of O held in registers over the keys.
// backward tile (R query rows × BK keys, for one key tile whose k, v were gathered):
//   P = exp(Q·Kt·scale − lse), dP = dO·Vt, dS = P∘(dP − Δ)·scale;
//   dV += Pᵀ·dO and dK += dSᵀ·Q (dO, Q blocks in registers), dQ += dS·K (dQ block in registers).
// RB (attention.c) must be a multiple of SR, of every 16 / NV and of every ACC_T_ROWS.
#pragma once
#include "ops_common.h"

#define VW 16
typedef float vf __attribute__((vector_size(VW * 4)));
typedef float vfu __attribute__((vector_size(VW * 4), aligned(4)));  // unaligned loads/stores
#define VLD(p) (*(const vfu *)(p))
#define VST(p, x) (*(vfu *)(p) = (x))
#define SR 4  // rows per block of S = Q·Kt (SR × BK/VW = 16 accumulators at BK = 64)

// Bt[d][j] = X[j][d] for j < n (rows of X at stride ldx), 0 for n ≤ j < ncols; Bt rows of
// stride ldb. Blocks of 16 source rows keep the reads in L1 while each destination row is
// written 16 floats at a time.
static inline __attribute__((always_inline)) void transpose_rows(float *restrict Bt, size_t ldb, const float *restrict X,
                                                                size_t ldx, int n, int ncols, const int D) {
  for (int j0 = 0; j0 < ncols; j0 += 16) {
    const int m = n - j0 < 16 ? (n - j0 > 0 ? n - j0 : 0) : 16;
    for (int d = 0; d < D; d++) {
      float *dst = Bt + (size_t)d * ldb + j0;
      for (int jj = 0; jj < 16; jj++) dst[jj] = jj < m ? X[(size_t)(j0 + jj) * ldx + d] : 0.0f;
    }
  }
}

// S[i][0..BK) = Σ_d A[i][d]·Bt[d][0..BK) for i < rows (rows a multiple of SR; A rows of stride
// lda). Bt (D, ≥ BK) is the transposed key (or value) tile, rows of stride ldb.
static inline __attribute__((always_inline)) void tile_scores(float *restrict S, const float *restrict A, size_t lda,
                                                             const float *restrict Bt, size_t ldb, int rows,
                                                             const int D) {
  for (int i = 0; i < rows; i += SR) {
    vf acc[SR][BK / VW];
    for (int r = 0; r < SR; r++)
      for (int c = 0; c < BK / VW; c++) acc[r][c] = (vf){0};
    for (int d = 0; d < D; d++) {
      vf b[BK / VW];
      for (int c = 0; c < BK / VW; c++) b[c] = VLD(Bt + d * ldb + c * VW);
      for (int r = 0; r < SR; r++) {
        const float a = A[(size_t)(i + r) * lda + d];
        for (int c = 0; c < BK / VW; c++) acc[r][c] += a * b[c];
      }
    }
    for (int r = 0; r < SR; r++)
      for (int c = 0; c < BK / VW; c++) VST(S + (i + r) * BK + c * VW, acc[r][c]);
  }
}

// O[i] = corr[i]·O[i] + Σ_{j<jmax} P[i][j]·V[j] for i < rows (a multiple of 16/NV); V rows of
// stride ldv. P is zero past each row's causal limit, so one jmax serves a whole block.
static inline __attribute__((always_inline)) void tile_pv(float *restrict O, const float *restrict P, const float *corr,
                                                         const float *restrict V, size_t ldv, int rows, int jmax,
                                                         const int D) {
  const int nv = D / VW, R = 16 / (D / VW);
  for (int i = 0; i < rows; i += R) {
    vf acc[16];
    for (int r = 0; r < R; r++)
      for (int c = 0; c < nv; c++) acc[r * nv + c] = VLD(O + (i + r) * D + c * VW) * corr[i + r];
    for (int j = 0; j < jmax; j++) {
      const float *vj = V + (size_t)j * ldv;
      vf v[16];
      for (int c = 0; c < nv; c++) v[c] = VLD(vj + c * VW);
      for (int r = 0; r < R; r++) {
        const float p = P[(i + r) * BK + j];
        for (int c = 0; c < nv; c++) acc[r * nv + c] += p * v[c];
      }
    }
    for (int r = 0; r < R; r++)
      for (int c = 0; c < nv; c++) VST(O + (i + r) * D + c * VW, acc[r * nv + c]);
  }
}

// dX[j] += Σ_{r<RT} W[r][j]·Y[r] for j < jmax: W (RT, BK) weights, Y (RT, D) rows of stride
// ldy, dX (BK, D). Each row of dX is loaded and stored once per call, so the rows are taken
// RT = 16 / NVC at a time over column chunks of NVC ≤ 4 vectors: 16 FMAs per NVC loads and stores.
#define ACC_T_ROWS(D) (16 / ((D) / VW < 4 ? (D) / VW : 4))
static inline __attribute__((always_inline)) void tile_accum_t(float *restrict dX, const float *restrict W,
                                                              const float *restrict Y, size_t ldy, int jmax,
                                                              const int D) {
  const int nv = D / VW, nvc = nv < 4 ? nv : 4, R = 16 / nvc;
  for (int c0 = 0; c0 < nv; c0 += nvc) {
    vf y[16];
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

// dQ[r] += Σ_{j<jmax} W[r][j]·K[j] for r < R: dQ rows of stride ldq, K (BK, D).
static inline __attribute__((always_inline)) void tile_accum(float *restrict dQ, size_t ldq, const float *restrict W,
                                                            const float *restrict K, int jmax, const int D) {
  const int nv = D / VW, R = 16 / (D / VW);
  vf acc[16];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < nv; c++) acc[r * nv + c] = (vf){0};
  for (int j = 0; j < jmax; j++) {
    vf k[16];
    for (int c = 0; c < nv; c++) k[c] = VLD(K + j * D + c * VW);
    for (int r = 0; r < R; r++) {
      const float w = W[r * BK + j];
      for (int c = 0; c < nv; c++) acc[r * nv + c] += w * k[c];
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < nv; c++) VST(dQ + r * ldq + c * VW, VLD(dQ + r * ldq + c * VW) + acc[r * nv + c]);
}

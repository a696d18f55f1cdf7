// Attention with bf16 matmul operands on AMX tiles, for mixed-precision training
// (`--precision bf16`). Included by attention.c at the avx512 level only; the Node-API entry
// points there say plainly when the CPU (or MYNAH_SIMD_DISABLE) rules it out.
//
// The math is attention.c's (same shapes, same causal mask, same FlashAttention tiling and
// tasks); only the five matmuls move to the tile unit:
//   forward   S = q·kᵀ                 (then scale, the online softmax and lse in float32)
//             O = corr·O + P̃·v        (P̃ = e^(S − m), m the running max)
//   backward  S = q·kᵀ, dP = dout·vᵀ   (P = e^(S·scale − lse), dS = P∘(dP − Δ)·scale in float32)
//             dvᵀ += doutᵀ·P, dkᵀ += qᵀ·dS, dq += dS·k
// Each operand is rounded to bfloat16 (nearest even, VCVTNE(2)PS2BF16) where it enters a
// matmul: q, k, v and dout as they arrive, P̃, P and dS after their float32 computation.
// Products of two bf16 values are exact in float32 and TDPBF16PS sums them in float32; every
// accumulator (O, dq, dk, dv), the softmax statistics, Δ = Σ dout·out and the outputs stay
// float32. test/attention-bf16.test.ts bounds the error against float64 attention.
//
// Operand layouts (TDPBF16PS: A is rows × k in bf16, row-major; B is k/2 "pair rows", each
// word holding the (k even, k odd) values of one column):
//   rows    bf16 [n][D]         A with k = d            (q, dout, P̃, dS row by row)
//   dpairs  u32  [D/2][ld]      B with k = d, column j  (kᵀ, vᵀ: word (p, j) = (x[j][2p], x[j][2p+1]))
//   rpairs  u32  [n/2][ld]      B with k = row          (v, k; P and dS over query pairs)
//   trans   bf16 [D][ld]        A with k = row          (qᵀ, doutᵀ)
// dk and dv are accumulated transposed (dkᵀ, dvᵀ: [D][KB]) so that P and dS enter as B over
// query pairs (two rows interleaved, cheap) rather than transposed as A; they are turned back
// once per key tile. Every product is a sequence of 32 × 32 blocks (blk32: four C tiles, two
// A and two B tiles per 32 values of k, the same block as gemm_bf16.c's); blocks wholly above
// the causal diagonal are skipped, and partial ones rely on P̃, P, dS being zero there.
#pragma once
#include <immintrin.h>
#include "amx.h"

#define AMX_ATT_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))
#define KB 64  // keys per tile (= BK: the backward's key-range split and softmax16 are in these units)
_Static_assert(KB == BK, "attention_amx.h's key tiles are attention.c's");
#define QBB 64 // queries per backward block (the forward's query tiles are attention.c's BQ = 32)

typedef uint16_t bf16_t;

// ---------------------------------------------------------------- tiles

// C[32][32] (float32, row stride ldc floats) = (acc ? C : 0) + Σ_{s0 ≤ s < s1} A_s·B_s, where A_s
// is columns 32s .. 32s+31 of A (bf16 rows, stride lda values) and B_s pair rows 16s .. 16s+15
// of B (stride ldb words, 32 columns). Tiles 0–3 hold C, 4–5 A, 6–7 B.
AMX_ATT_TARGET static inline void blk32(float *C, size_t ldc, int acc, const bf16_t *A, size_t lda, const uint32_t *B,
                                        size_t ldb, int s0, int s1) {
  const long sa = (long)lda * 2, sb = (long)ldb * 4;
  mynah_amx_c_begin(C, ldc, acc);
  for (int s = s0; s < s1; s++) {
    const bf16_t *a = A + (size_t)s * 32;
    const uint32_t *b = B + (size_t)s * 16 * ldb;
    _tile_loadd(4, a, sa);
    _tile_loadd(6, b, sb);
    _tile_loadd(7, b + 16, sb);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a + 16 * lda, sa);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  mynah_amx_c_store(C, ldc);
}

// ---------------------------------------------------------------- packing (float32 → bf16 layouts)

// 32 floats → 32 bf16 in memory order (= 16 pair words).
AMX_ATT_TARGET static inline __m512i bf32(const float *x) {
  return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}
// rows: dst[r][·] = bf16(src row r) for r < n, zero for n ≤ r < rows.
AMX_ATT_TARGET static void pack_rows(bf16_t *dst, const float *src, size_t lds, int n, int rows, int D) {
  for (int r = 0; r < rows; r++)
    for (int d = 0; d < D; d += 32)
      _mm512_storeu_si512(dst + (size_t)r * D + d, r < n ? bf32(src + (size_t)r * lds + d) : _mm512_setzero_si512());
}

// dpairs: dst[p][j] = (x[j][2p], x[j][2p+1]) for j < n, zero for n ≤ j < cols (a multiple of 16).
AMX_ATT_TARGET static void pack_dpairs(uint32_t *dst, size_t ldd, const float *src, size_t lds, int n, int cols, int D) {
  for (int j0 = 0; j0 < cols; j0 += 16)
    for (int p0 = 0; p0 < D / 2; p0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = _mm512_castsi512_ps(j0 + i < n ? bf32(src + (size_t)(j0 + i) * lds + 2 * p0) : _mm512_setzero_si512());
      transpose16(r, (float *)(dst + (size_t)p0 * ldd + j0), ldd);
    }
}

// rpairs: dst[r][d] = (x[2r][d], x[2r+1][d]) (rows ≥ n are zero), r < rows/2, d < D.
AMX_ATT_TARGET static void pack_rpairs(uint32_t *dst, size_t ldd, const float *src, size_t lds, int n, int rows, int D) {
  for (int r = 0; r < rows / 2; r++) {
    const float *a = src + (size_t)(2 * r) * lds, *b = a + lds;
    for (int d = 0; d < D; d += 16) {
      __m512 x = 2 * r < n ? _mm512_loadu_ps(a + d) : _mm512_setzero_ps();
      __m512 y = 2 * r + 1 < n ? _mm512_loadu_ps(b + d) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + (size_t)r * ldd + d, mynah_bf16_rowpairs16(x, y));
    }
  }
}

// trans: dst[d][r] = bf16(x[r][d]) for r < n, zero for n ≤ r < rows (a multiple of 16).
AMX_ATT_TARGET static void pack_trans(bf16_t *dst, size_t ldd, const float *src, size_t lds, int n, int rows, int D) {
  _Alignas(64) float t[16 * 16];
  for (int r0 = 0; r0 < rows; r0 += 16)
    for (int d0 = 0; d0 < D; d0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; i++) r[i] = r0 + i < n ? _mm512_loadu_ps(src + (size_t)(r0 + i) * lds + d0) : _mm512_setzero_ps();
      transpose16(r, t, 16);
      for (int c = 0; c < 16; c++)
        _mm256_storeu_si256((__m256i *)(dst + (size_t)(d0 + c) * ldd + r0), (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(t + 16 * c)));
    }
}

// Rows [r0, r1) of a tensor (stride ld, D floats each) fetched ahead, for writing (w) or
// reading. Inputs and outputs are several MB and a head's rows lie 1–2 KiB apart, a stride
// the hardware prefetcher does not follow: without this each row's loads (or, for an output,
// its stores) wait on memory; asked for a block ahead, they arrive while the tiles work.
static inline void prefetch_rows(const float *p, size_t ld, int r0, int r1, int D, int w) {
  for (int r = r0; r < r1; r++) {
    const char *row = (const char *)(p + (size_t)r * ld);
    for (int b = 0; b < D * 4 + 63; b += 64) {  // every line of the row (rows need not start on one)
      const char *x = row + (b < D * 4 ? b : D * 4 - 1);
      if (w) __asm__ __volatile__("prefetchw %0" : : "m"(*x));
      else _mm_prefetch(x, _MM_HINT_T0);
    }
  }
}


// ---------------------------------------------------------------- forward

// Scratch (floats) of a forward task: kᵀ and v of the keys it sees, one query tile's q, S, P̃, O.
static size_t fwd_amx_scratch(int D, int T) {
  const size_t Tp = (size_t)(T + KB - 1) / KB * KB, ld = Tp + 16;
  return (size_t)D / 2 * ld + Tp / 2 * D + (size_t)BQ * D / 2 + (size_t)BQ * KB + (size_t)BQ * KB / 2 + (size_t)BQ * D + 3 * BQ + 64;
}

// One forward task (b, h, range of query tiles); training shapes (pos0 = 0, kT = T).
AMX_ATT_TARGET static void fwd_head_amx(const attn_args *a, int task, float *scr) {
  const int T = a->T, H = a->H, Hkv = a->Hkv, D = a->D;
  int bh, qt0, qt1;
  fwd_task_range(a, task, &bh, &qt0, &qt1);
  const int b = bh / H, h = bh % H, kvh = h / (H / Hkv);
  const int tEnd = qt1 * BQ < T ? qt1 * BQ : T;  // this task's queries end here, and so do the keys they see
  const int Tp = (tEnd + KB - 1) / KB * KB, ld = Tp + 16;  // a row of kᵀ is padded (see attention.c's Kt)
  const float scale = 1.0f / sqrtf((float)D);
  const size_t kstride = (size_t)Hkv * D;
  uint32_t *Kt = (uint32_t *)scr, *Vp = Kt + (size_t)D / 2 * ld;
  bf16_t *Qb = (bf16_t *)(Vp + (size_t)Tp / 2 * D);
  float *S = (float *)(Qb + (size_t)BQ * D);
  bf16_t *Pb = (bf16_t *)(S + BQ * KB);
  float *O = (float *)(Pb + BQ * KB), *m = O + BQ * D, *l = m + BQ, *corr = l + BQ;
  const float *kb = a->k + ((size_t)b * T * Hkv + kvh) * D, *vb = a->v + ((size_t)b * T * Hkv + kvh) * D;
  pack_dpairs(Kt, ld, kb, kstride, tEnd, Tp, D);
  pack_rpairs(Vp, D, vb, kstride, tEnd, Tp, D);
  for (int t0 = qt0 * BQ; t0 < tEnd; t0 += BQ) {
    const int nq = T - t0 < BQ ? T - t0 : BQ, kend = t0 + nq;
    const float *qrow = a->q + (((size_t)b * T + t0) * H + h) * D;
    pack_rows(Qb, qrow, (size_t)H * D, nq, BQ, D);
    const int next = tEnd - t0 - BQ < BQ ? tEnd - t0 - BQ : BQ;  // rows of the task's next query tile (≤ 0: none)
    prefetch_rows(qrow, (size_t)H * D, BQ, BQ + next, D, 0);
    prefetch_rows(a->out + (((size_t)b * T + t0) * H + h) * D, (size_t)H * D, 0, nq, D, 1);  // this tile's out, written at its end
    memset(O, 0, sizeof(float) * BQ * D);
    for (int i = 0; i < BQ; i++) { m[i] = -INFINITY; l[i] = 0; }
    for (int k0 = 0; k0 < kend; k0 += KB) {
      const int nk = kend - k0 < KB ? kend - k0 : KB;
      for (int kj = 0; kj < KB / 32 && k0 + 32 * kj < kend; kj++) blk32(S + 32 * kj, KB, 0, Qb, D, Kt + k0 + 32 * kj, ld, 0, D / 32);
      for (int i0 = 0; i0 < BQ; i0 += 16) {
        int jn[16];  // visible keys of each row (0 for the tile's padding rows)
        for (int u = 0; u < 16; u++) {
          const int i = i0 + u, vis = t0 + i - k0 + 1;
          jn[u] = i >= nq ? 0 : vis < nk ? vis : nk;
        }
        softmax16(S + i0 * KB, jn, m + i0, l + i0, corr + i0, scale);
      }
      for (int i = 0; i < BQ; i++) {  // P̃ rounded for the tiles; O rescaled where the max grew
        for (int j = 0; j < KB; j += 32) _mm512_storeu_si512(Pb + i * KB + j, bf32(S + i * KB + j));
        if (corr[i] != 1.0f)
          for (int d = 0; d < D; d++) O[(size_t)i * D + d] *= corr[i];
      }
      const int ks = (nk + 31) / 32;  // 32-key steps with a visible key
      for (int dj = 0; dj < D / 32; dj++) blk32(O + 32 * dj, D, 1, Pb, KB, Vp + (size_t)k0 / 2 * D + 32 * dj, D, 0, ks);
    }
    for (int i = 0; i < nq; i++) {
      float *dst = a->out + (((size_t)b * T + t0 + i) * H + h) * D, inv = 1.0f / l[i];
      for (int d = 0; d < D; d++) dst[d] = O[(size_t)i * D + d] * inv;
      a->lse[((size_t)b * H + h) * T + t0 + i] = m[i] + logf(l[i]);
    }
  }
}

// ---------------------------------------------------------------- backward

static size_t bwd_amx_scratch(int D, int T) {
  const size_t Tp = (size_t)(T + KB - 1) / KB * KB, ld = Tp + 16;
  return (size_t)D * ld              // kᵀ, vᵀ (dpairs)
         + Tp / 2 * D                // k (rpairs)
         + Tp * D                    // q, dout rows (bf16)
         + (size_t)D * ld            // qᵀ, doutᵀ (bf16)
         + Tp * D + Tp               // dq accumulator, Δ
         + 2 * (size_t)QBB * KB      // S (then P), dP (then dS)
         + (size_t)QBB * KB          // P, dS over query pairs
         + (size_t)QBB * KB / 2      // dS rows (bf16)
         + 2 * (size_t)D * KB        // dkᵀ, dvᵀ
         + 256 + 64;
}

// dst rows j < n (stride lds) (+)= columns j of the transposed accumulator At [D][KB]: `add`
// 0 for the group's first head (dst's old contents are not read), 1 after.
AMX_ATT_TARGET static void put_transposed(float *dst, size_t lds, const float *At, int n, int D, int add) {
  _Alignas(64) float t[16 * 16];
  for (int j0 = 0; j0 < n; j0 += 16)
    for (int d0 = 0; d0 < D; d0 += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(At + (size_t)(d0 + i) * KB + j0);
      transpose16(r, t, 16);
      for (int c = 0; c < 16 && j0 + c < n; c++) {
        float *x = dst + (size_t)(j0 + c) * lds + d0;
        const __m512 y = _mm512_load_ps(t + 16 * c);
        _mm512_storeu_ps(x, add ? _mm512_add_ps(_mm512_loadu_ps(x), y) : y);
      }
    }
}

// One backward task (b, kv head, range of key tiles): attention.c's bwd_group_fast, on tiles.
AMX_ATT_TARGET static void bwd_group_amx(const attn_args *a, int task, float *scr) {
  const int T = a->T, H = a->H, Hkv = a->Hkv, D = a->D, group = H / Hkv, BHkv = a->B * Hkv;
  const int b = task % BHkv / Hkv, kvh = task % Hkv, part = task / BHkv;
  const int nkt = (T + KB - 1) / KB, kt0 = (int)((int64_t)part * nkt / a->parts), kt1 = (int)((int64_t)(part + 1) * nkt / a->parts);
  const int kbeg = kt0 * KB, kfin = kt1 * KB < T ? kt1 * KB : T, kpad = (kt1 - kt0) * KB;  // this task's keys
  const int Tp = nkt * KB, ld = Tp + 16, qpad = Tp - kbeg;  // queries from kbeg on see these keys
  const float scale = 1.0f / sqrtf((float)D);
  const size_t kstride = (size_t)Hkv * D, qstride = (size_t)H * D;
  uint32_t *Kt = (uint32_t *)scr, *Vt = Kt + (size_t)D / 2 * ld, *Kp = Vt + (size_t)D / 2 * ld;
  bf16_t *Qr = (bf16_t *)(Kp + (size_t)Tp / 2 * D), *dOr = Qr + (size_t)Tp * D, *Qt = dOr + (size_t)Tp * D, *dOt = Qt + (size_t)D * ld;
  float *dQ = (float *)(dOt + (size_t)D * ld), *Delta = dQ + (size_t)Tp * D, *S = Delta + Tp, *dP = S + QBB * KB;
  uint32_t *Pp = (uint32_t *)(dP + QBB * KB), *dSp = Pp + QBB / 2 * KB;
  bf16_t *dSb = (bf16_t *)(dSp + QBB / 2 * KB);
  float *dKt = (float *)(dSb + QBB * KB), *dVt = dKt + (size_t)D * KB;
  const float *kb = a->k + ((size_t)b * T * Hkv + kvh) * D, *vb = a->v + ((size_t)b * T * Hkv + kvh) * D;
  float *dkb = a->dk + ((size_t)b * T * Hkv + kvh) * D, *dvb = a->dv + ((size_t)b * T * Hkv + kvh) * D;
  float *dq = a->parts > 1 ? a->dq_part + (size_t)part * a->B * T * H * D : a->dq;
  pack_dpairs(Kt + kbeg, ld, kb + (size_t)kbeg * kstride, kstride, kfin - kbeg, kpad, D);
  pack_dpairs(Vt + kbeg, ld, vb + (size_t)kbeg * kstride, kstride, kfin - kbeg, kpad, D);
  pack_rpairs(Kp + (size_t)kbeg / 2 * D, D, kb + (size_t)kbeg * kstride, kstride, kfin - kbeg, kpad, D);
  for (int h = kvh * group; h < (kvh + 1) * group; h++) {
    const float *qb = a->q + ((size_t)b * T * H + h) * D, *dob = a->dout + ((size_t)b * T * H + h) * D;
    const float *ob = a->o + ((size_t)b * T * H + h) * D, *lse = a->lse + ((size_t)b * H + h) * T;
    float *dqb = dq + ((size_t)b * T * H + h) * D;
    pack_rows(Qr + (size_t)kbeg * D, qb + kbeg * qstride, qstride, T - kbeg, qpad, D);
    pack_rows(dOr + (size_t)kbeg * D, dob + kbeg * qstride, qstride, T - kbeg, qpad, D);
    pack_trans(Qt + kbeg, ld, qb + kbeg * qstride, qstride, T - kbeg, qpad, D);
    pack_trans(dOt + kbeg, ld, dob + kbeg * qstride, qstride, T - kbeg, qpad, D);
    for (int t = kbeg; t < T; t++) {  // Δ_t = dout_t · out_t (float32 inputs, float32 sum)
      __m512 acc = _mm512_setzero_ps();
      for (int d = 0; d < D; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(dob + t * qstride + d), _mm512_loadu_ps(ob + t * qstride + d), acc);
      Delta[t] = _mm512_reduce_add_ps(acc);
    }
    for (int k0 = kbeg; k0 < kfin; k0 += KB) {
      const int nk = T - k0 < KB ? T - k0 : KB, khalves = (nk + 31) / 32, nqb = (T - k0 + QBB - 1) / QBB;
      for (int t0 = k0, qb = 0; t0 < T; t0 += QBB, qb++) {
        const int nr = T - t0 < QBB ? T - t0 : QBB, qhalves = (nr + 31) / 32;
        if (h == kvh * group) {  // this key tile's dk, dv rows (the first head stores them), a slice per query block
          prefetch_rows(dkb + (size_t)k0 * kstride, kstride, qb * nk / nqb, (qb + 1) * nk / nqb, D, 1);
          prefetch_rows(dvb + (size_t)k0 * kstride, kstride, qb * nk / nqb, (qb + 1) * nk / nqb, D, 1);
        }
        if (k0 == kbeg) prefetch_rows(dqb, qstride, t0, t0 + nr, D, 1);  // the head's dq rows, written at its end
        // S and dP, 32 × 32 blocks with a visible key (key block start ≤ the block's last query)
        for (int qi = 0; qi < qhalves; qi++)
          for (int kj = 0; kj < khalves && k0 + 32 * kj <= t0 + 32 * qi + 31; kj++) {
            blk32(S + 32 * qi * KB + 32 * kj, KB, 0, Qr + (size_t)(t0 + 32 * qi) * D, D, Kt + k0 + 32 * kj, ld, 0, D / 32);
            blk32(dP + 32 * qi * KB + 32 * kj, KB, 0, dOr + (size_t)(t0 + 32 * qi) * D, D, Vt + k0 + 32 * kj, ld, 0, D / 32);
          }
        // P = e^(S·scale − lse), dS = P∘(dP − Δ)·scale, zero where masked (in place: S → P, dP → dS)
        for (int i = 0; i < QBB; i++) {
          const int t = t0 + i, jn = t >= T ? 0 : t - k0 + 1 < nk ? t - k0 + 1 : nk;
          p_ds_row(S + i * KB, dP + i * KB, jn, t < T ? lse[t] : 0.0f, t < T ? Delta[t] : 0.0f, scale);
        }
        for (int r = 0; r < QBB / 2; r++)
          for (int j = 0; j < KB; j += 16) {
            const float *p = S + 2 * r * KB + j, *ds = dP + 2 * r * KB + j;
            _mm512_storeu_si512(Pp + r * KB + j, mynah_bf16_rowpairs16(_mm512_loadu_ps(p), _mm512_loadu_ps(p + KB)));
            _mm512_storeu_si512(dSp + r * KB + j, mynah_bf16_rowpairs16(_mm512_loadu_ps(ds), _mm512_loadu_ps(ds + KB)));
          }
        for (int i = 0; i < QBB; i++)
          for (int j = 0; j < KB; j += 32) _mm512_storeu_si512(dSb + i * KB + j, bf32(dP + i * KB + j));
        // dvᵀ += doutᵀ·P, dkᵀ += qᵀ·dS over the query halves that see key half kj (the key tile's
        // first query block, t0 = k0, starts them from zero: no step at all stores zeros)
        for (int kj = 0; kj < khalves; kj++) {
          const int s0 = k0 + 32 * kj > t0 + 31 ? 1 : 0, s1 = qhalves > s0 ? qhalves : s0;  // s0 = 1: t0 = k0, kj = 1
          if (t0 != k0 && s0 == s1) continue;
          for (int di = 0; di < D / 32; di++) {
            blk32(dVt + (size_t)32 * di * KB + 32 * kj, KB, t0 != k0, dOt + (size_t)32 * di * ld + t0, ld, Pp + 32 * kj, KB, s0, s1);
            blk32(dKt + (size_t)32 * di * KB + 32 * kj, KB, t0 != k0, Qt + (size_t)32 * di * ld + t0, ld, dSp + 32 * kj, KB, s0, s1);
          }
        }
        // dq += dS·k over the key halves query half qi sees (the task's first key tile starts dq:
        // every query from kbeg on sees its first key)
        for (int qi = 0; qi < qhalves; qi++) {
          const int vis = (t0 + 32 * qi + 31 - k0) / 32 + 1, s1 = vis < khalves ? vis : khalves;
          for (int dj = 0; dj < D / 32; dj++)
            blk32(dQ + (size_t)(t0 + 32 * qi) * D + 32 * dj, D, k0 != kbeg, dSb + 32 * qi * KB, KB, Kp + (size_t)k0 / 2 * D + 32 * dj, D, 0, s1);
        }
      }
      put_transposed(dkb + (size_t)k0 * kstride, kstride, dKt, nk, D, h != kvh * group);
      put_transposed(dvb + (size_t)k0 * kstride, kstride, dVt, nk, D, h != kvh * group);
    }
    for (int t = kbeg; t < T; t++) memcpy(dqb + t * qstride, dQ + (size_t)t * D, sizeof(float) * D);
  }
}

// The tasks as attention.c's, with the tile configuration loaded for each (and released after,
// so that the OS need not save the tile state on a switch).
AMX_ATT_TARGET static void attention_forward_amx_task(void *ctx, int task, int thread) {
  mynah_amx_begin_16x64();
  fwd_head_amx(ctx, task, scratch.buf[thread]);
  mynah_amx_release();
}
AMX_ATT_TARGET static void attention_backward_amx_task(void *ctx, int task, int thread) {
  mynah_amx_begin_16x64();
  bwd_group_amx(ctx, task, scratch.buf[thread]);
  mynah_amx_release();
}

// Causal grouped-query attention, FlashAttention-style, and its KV-cache decode form.
//
// Shapes: B batch, T time, H query heads, Hkv key/value heads (H % Hkv == 0), D head size.
//   q, out, dq, dout (B, T, H, D); k, v, dk, dv (B, T, Hkv, D); lse (B, H, T)
//   query head h reads kv head h / (H / Hkv); scale = 1/sqrt(D); key s visible to query t iff s ≤ t.
//
// forward:  S = scale·q·kᵀ (causal), P = softmax(S), out = P·v, lse = logsumexp(S) per query.
//   Tiles of BQ queries × BK keys with an online softmax (running max m and sum l per query,
//   the output rescaled by e^(m_old − m_new) when the max grows), so memory is O(T) per head.
//   Tasks: (b, h), claimed dynamically; each transposes its K once (D, T) and runs its query
//   tiles, so K is not re-gathered for every query tile. When B·H is below twice the thread
//   count, each head's query tiles are also cut into a few ranges (tasks (b, h, part)).
// backward (FlashAttention-2): with P recomputed from lse and Δ_t = Σ_d dout·out,
//   dv += Pᵀ·dout;  dP = dout·vᵀ;  dS = P∘(dP − Δ);  dq = scale·dS·k;  dk += scale·dSᵀ·q.
//   Tasks: (b, kv head): a task owns every query head of its group, so its dk, dv and dq rows
//   are written by no one else (no races, no atomics). When B·Hkv is below BWD_TASKS, the key
//   tiles are also cut into ranges (how many depends on the shapes only, so the result is the
//   same at any thread count): each (b, kv head, range) owns its dk, dv rows and writes dq
//   into a private copy, and the copies are summed after, in range order. Within a task, for each key tile the
//   tile's k, v are gathered (and transposed) once and the tile's dk, dv accumulate locally
//   while the later query rows stream past.
// cached (decode): q (B, Tq, H, D) at positions pos0.., kCache, vCache (B, maxT, Hkv, D);
//   tasks (b, h), one pass of scores over the cache per query (memory-bound). A prefill chunk
//   (Tq ≥ 16, D = 16/32/64/96/128) runs the forward tiles instead, with keys read from the cache.
//
// Two implementations: for D = 16, 32, 64, 96, 128 the register-blocked tiles of attention_tiles.h
// (vector extensions sized to the machine); for any other D the plain tiled kernels below,
// whose inner loops run over a contiguous D or a BK-wide row of the transposed tile (the
// compiler vectorizes them). Both are tested against the TypeScript reference.
#include "ops_common.h"
#include "thread_scratch.h"

#define BQ 32       // queries per forward tile
#define BK 64       // keys per tile
#define MAX_D 256   // largest head size (scratch is sized by it)

// ---------------------------------------------------------------- per-thread scratch

static thread_scratch scratch;

typedef struct {
  float *out, *lse, *dq, *dk, *dv;
  const float *q, *k, *v, *dout, *o;
  int B, T, H, Hkv, D, ntiles;
  // Forward only (the fast path): queries sit at positions pos0 .. pos0+T−1 and k, v hold
  // kT rows per batch (T in training; the cache length maxT for a prefill through the cache).
  int pos0, kT;
  // Forward tasks are (b, h, part): the query tiles of a head are cut into `parts` ranges when
  // B·H alone would leave threads idle (e.g. a one-sequence prefill).
  int parts;
  // Backward: with B·Hkv below twice the thread count, tasks are (b, kv head, key-tile range)
  // and each range writes its dq into its own slice of dq_part ([parts][B, T, H, D]), summed after.
  float *dq_part;
  int sum_tasks;  // tasks of the dq sum over the parts
} attn_args;

// The query tiles [*qt0, *qt1) of a forward task, and its (b, h); the last (longest, causal)
// parts come first so that the dynamic claiming ends on short tasks.
static void fwd_task_range(const attn_args *a, int task, int *bh, int *qt0, int *qt1) {
  const int BH = a->B * a->H, part = a->parts - 1 - task / BH;
  *bh = task % BH;
  *qt0 = (int)((int64_t)part * a->ntiles / a->parts);
  *qt1 = (int)((int64_t)(part + 1) * a->ntiles / a->parts);
}

static int fwd_parts(int BH, int ntiles) {
  const int threads = pool_threads();
  if (BH >= 2 * threads) return 1;
  const int p = (4 * threads + BH - 1) / BH;
  return p < ntiles ? p : ntiles;
}

// ---------------------------------------------------------------- forward

// One (b, h, query tile), any D: the plain tiled kernel (rows of scores, no register blocking).
static void fwd_tile(const attn_args *a, int b, int h, int qt, float *scr, const int D) {
  const int T = a->T, H = a->H, Hkv = a->Hkv, kvh = h / (H / Hkv);
  const int t0 = qt * BQ, nq = T - t0 < BQ ? T - t0 : BQ;
  const float scale = 1.0f / sqrtf((float)D);
  float *Qs = scr, *O = Qs + BQ * D, *Kt = O + BQ * D, *S = Kt + (size_t)D * BK, *m = S + BK, *l = m + BQ;
  for (int i = 0; i < nq; i++) {
    const float *src = a->q + (((size_t)b * T + t0 + i) * H + h) * D;
    for (int d = 0; d < D; d++) { Qs[i * D + d] = src[d] * scale; O[i * D + d] = 0; }
    m[i] = -INFINITY;
    l[i] = 0;
  }
  const size_t kstride = (size_t)Hkv * D;
  const float *kb = a->k + ((size_t)b * T * Hkv + kvh) * D, *vb = a->v + ((size_t)b * T * Hkv + kvh) * D;
  for (int k0 = 0; k0 < t0 + nq; k0 += BK) {
    const int nk = t0 + nq - k0 < BK ? t0 + nq - k0 : BK;
    for (int j = 0; j < nk; j++)
      for (int d = 0; d < D; d++) Kt[d * BK + j] = kb[(size_t)(k0 + j) * kstride + d];
    for (int j = nk; j < BK; j++)
      for (int d = 0; d < D; d++) Kt[d * BK + j] = 0;
    for (int i = 0; i < nq; i++) {
      const int jn = t0 + i - k0 + 1 < nk ? t0 + i - k0 + 1 : nk;  // visible keys of this tile
      if (jn <= 0) continue;
      float *restrict s = S;
      const float *restrict qi = Qs + i * D;
      for (int j = 0; j < BK; j++) s[j] = 0;
      for (int d = 0; d < D; d++) {
        const float qd = qi[d];
        const float *restrict kt = Kt + d * BK;
        for (int j = 0; j < BK; j++) s[j] += qd * kt[j];
      }
      float mx = max_f32(s, jn), mnew = mx > m[i] ? mx : m[i];
      float corr = m[i] == -INFINITY ? 0.0f : exp_fast(m[i] - mnew), sum = 0;
      for (int j = 0; j < jn; j++) { s[j] = exp_fast(s[j] - mnew); sum += s[j]; }
      l[i] = l[i] * corr + sum;
      m[i] = mnew;
      float *restrict o = O + i * D;
      for (int d = 0; d < D; d++) o[d] *= corr;
      for (int j = 0; j < jn; j++) {
        const float p = s[j];
        const float *restrict vj = vb + (size_t)(k0 + j) * kstride;
        for (int d = 0; d < D; d++) o[d] += p * vj[d];
      }
    }
  }
  for (int i = 0; i < nq; i++) {
    float *dst = a->out + (((size_t)b * T + t0 + i) * H + h) * D, inv = 1.0f / l[i];
    for (int d = 0; d < D; d++) dst[d] = O[i * D + d] * inv;
    a->lse[((size_t)b * H + h) * T + t0 + i] = m[i] + logf(l[i]);
  }
}

static size_t fwd_scratch(int D) { return (size_t)2 * BQ * D + (size_t)D * BK + BK + 2 * BQ + 16; }

// ---------------------------------------------------------------- backward

// One (b, kv head), any D: every query head of the group, every key tile, one query row at a time.
static void bwd_group(const attn_args *a, int task, float *scr, const int D) {
  const int T = a->T, H = a->H, Hkv = a->Hkv, group = H / Hkv;
  const int b = task / Hkv, kvh = task % Hkv;
  const float scale = 1.0f / sqrtf((float)D);
  const size_t kstride = (size_t)Hkv * D, qstride = (size_t)H * D;
  float *Kj = scr, *Kt = Kj + BK * D, *Vt = Kt + (size_t)D * BK, *dKj = Vt + (size_t)D * BK, *dVj = dKj + BK * D;
  float *p = dVj + BK * D, *dp = p + BK, *Delta = dp + BK;
  const float *kb = a->k + ((size_t)b * T * Hkv + kvh) * D, *vb = a->v + ((size_t)b * T * Hkv + kvh) * D;
  float *dkb = a->dk + ((size_t)b * T * Hkv + kvh) * D, *dvb = a->dv + ((size_t)b * T * Hkv + kvh) * D;
  for (int t = 0; t < T; t++) {
    memset(dkb + t * kstride, 0, sizeof(float) * D);
    memset(dvb + t * kstride, 0, sizeof(float) * D);
  }
  for (int h = kvh * group; h < (kvh + 1) * group; h++) {
    const float *qb = a->q + ((size_t)b * T * H + h) * D, *dob = a->dout + ((size_t)b * T * H + h) * D;
    const float *ob = a->o + ((size_t)b * T * H + h) * D, *lse = a->lse + ((size_t)b * H + h) * T;
    float *dqb = a->dq + ((size_t)b * T * H + h) * D;
    for (int t = 0; t < T; t++) {
      Delta[t] = dot_f32(dob + t * qstride, ob + t * qstride, D);
      memset(dqb + t * qstride, 0, sizeof(float) * D);
    }
    for (int k0 = 0; k0 < T; k0 += BK) {
      const int nk = T - k0 < BK ? T - k0 : BK;
      for (int j = 0; j < BK; j++)
        for (int d = 0; d < D; d++) {
          const float kv = j < nk ? kb[(size_t)(k0 + j) * kstride + d] : 0.0f;
          const float vv = j < nk ? vb[(size_t)(k0 + j) * kstride + d] : 0.0f;
          Kj[j * D + d] = kv;
          Kt[d * BK + j] = kv;
          Vt[d * BK + j] = vv;
          dKj[j * D + d] = 0;
          dVj[j * D + d] = 0;
        }
      for (int t = k0; t < T; t++) {
        const int jn = t - k0 + 1 < nk ? t - k0 + 1 : nk;
        const float *restrict qt = qb + t * qstride, *restrict dot = dob + t * qstride;
        float *restrict dqt = dqb + t * qstride;
        for (int j = 0; j < BK; j++) { p[j] = 0; dp[j] = 0; }
        for (int d = 0; d < D; d++) {
          const float qd = qt[d] * scale, gd = dot[d];
          const float *restrict kt = Kt + d * BK, *restrict vt = Vt + d * BK;
          for (int j = 0; j < BK; j++) { p[j] += qd * kt[j]; dp[j] += gd * vt[j]; }
        }
        const float L = lse[t], Dt = Delta[t];
        for (int j = 0; j < BK; j++) {
          const float pj = j < jn ? exp_fast(p[j] - L) : 0.0f;
          p[j] = pj;
          dp[j] = pj * (dp[j] - Dt) * scale;  // dS, with the scale of S = scale·q·kᵀ folded in
        }
        float acc[MAX_D];
        for (int d = 0; d < D; d++) acc[d] = dqt[d];
        for (int j = 0; j < jn; j++) {
          const float pj = p[j], sj = dp[j];
          float *restrict dv = dVj + j * D, *restrict dk = dKj + j * D;
          const float *restrict kj = Kj + j * D;
          for (int d = 0; d < D; d++) {
            dv[d] += pj * dot[d];
            dk[d] += sj * qt[d];
            acc[d] += sj * kj[d];
          }
        }
        for (int d = 0; d < D; d++) dqt[d] = acc[d];
      }
      for (int j = 0; j < nk; j++)
        for (int d = 0; d < D; d++) {
          dkb[(size_t)(k0 + j) * kstride + d] += dKj[j * D + d];
          dvb[(size_t)(k0 + j) * kstride + d] += dVj[j * D + d];
        }
    }
  }
}

static size_t bwd_scratch(int D, int T) { return (size_t)5 * BK * D + 2 * BK + T + 16; }

// ---------------------------------------------------------------- register-blocked paths (D = 16, 32, 64, 96, 128)

#include "attention_tiles.h"

#define RB 8  // query rows per backward block (a multiple of SR and of every ROWS(D))

static size_t fwd_fast_scratch(int D, int T) {
  return (size_t)2 * BQ * D + (size_t)D * ((T + BK - 1) / BK * BK + 16) + (size_t)BQ * BK + 3 * BQ + 16;
}

// One (b, h): K of the kv head is transposed once into Kt (D, Tp), then the query tiles run.
static inline __attribute__((always_inline)) void fwd_head_fast(const attn_args *a, int task, float *scr, const int D) {
  // Query row t (position pos0 + t) sees keys 0 .. pos0 + t; all Tk = pos0 + T keys are used.
  // Kt's row stride is padded by 16 floats so that its D rows do not share a few cache sets.
  const int T = a->T, H = a->H, Hkv = a->Hkv, P0 = a->pos0, Tp = (P0 + T + BK - 1) / BK * BK + 16;
  int bh, qt0, qt1;
  fwd_task_range(a, task, &bh, &qt0, &qt1);
  const int b = bh / H, h = bh % H, kvh = h / (H / Hkv);
  const int Tk = P0 + (qt1 * BQ < T ? qt1 * BQ : T);  // keys this task's queries can see
  const float scale = 1.0f / sqrtf((float)D);
  float *Kt = scr, *Qs = Kt + (size_t)D * Tp, *O = Qs + BQ * D, *S = O + BQ * D, *m = S + BQ * BK, *l = m + BQ, *corr = l + BQ;
  const size_t kstride = (size_t)Hkv * D;
  const float *kb = a->k + ((size_t)b * a->kT * Hkv + kvh) * D, *vb = a->v + ((size_t)b * a->kT * Hkv + kvh) * D;
  transpose_rows(Kt, Tp, kb, kstride, Tk, (Tk + BK - 1) / BK * BK, D);
  for (int t0 = qt0 * BQ; t0 < qt1 * BQ && t0 < T; t0 += BQ) {
    const int nq = T - t0 < BQ ? T - t0 : BQ, rows = (nq + RB - 1) / RB * RB, kend = P0 + t0 + nq;
    for (int i = 0; i < rows; i++) {
      const float *src = a->q + (((size_t)b * T + t0 + i) * H + h) * D;
      for (int d = 0; d < D; d++) { Qs[i * D + d] = i < nq ? src[d] * scale : 0.0f; O[i * D + d] = 0; }
    }
    for (int i = 0; i < BQ; i++) { m[i] = -INFINITY; l[i] = 0; }
    for (int k0 = 0; k0 < kend; k0 += BK) {
      const int nk = kend - k0 < BK ? kend - k0 : BK;
      tile_scores(S, Qs, D, Kt + k0, Tp, rows, D);
#if defined(__AVX512F__)
      for (int i0 = 0; i0 < rows; i0 += 16) {  // 16 rows at once (attention_tiles.h); the same bits as the loop below
        int jn[16];
        for (int u = 0; u < 16; u++) {
          const int i = i0 + u, vis = P0 + t0 + i - k0 + 1;
          jn[u] = i >= nq ? 0 : vis < nk ? vis : nk;
        }
        softmax16(S + i0 * BK, jn, m + i0, l + i0, corr + i0, 1.0f);
      }
#else
      for (int i = 0; i < rows; i++) {
        float *s = S + i * BK;
        const int vis = P0 + t0 + i - k0 + 1, jn = i >= nq ? 0 : vis < nk ? vis : nk;  // visible keys
        if (jn <= 0) {
          for (int j = 0; j < BK; j++) s[j] = 0;
          corr[i] = 1;
          continue;
        }
        const float mx = max_f32(s, jn), mnew = mx > m[i] ? mx : m[i];
        corr[i] = m[i] == -INFINITY ? 0.0f : exp_fast(m[i] - mnew);
        float acc[LANES] = {0}, sum = 0;  // LANES partial sums: the loop stays vectorized
        for (int j = 0; j < BK; j += LANES)
          for (int u = 0; u < LANES; u++) {
            const float e = j + u < jn ? exp_fast(s[j + u] - mnew) : 0.0f;
            s[j + u] = e;
            acc[u] += e;
          }
        for (int u = 0; u < LANES; u++) sum += acc[u];
        l[i] = l[i] * corr[i] + sum;
        m[i] = mnew;
      }
#endif
      tile_pv(O, S, corr, vb + (size_t)k0 * kstride, kstride, rows, nk, D);
    }
    for (int i = 0; i < nq; i++) {
      float *dst = a->out + (((size_t)b * T + t0 + i) * H + h) * D, inv = 1.0f / l[i];
      for (int d = 0; d < D; d++) dst[d] = O[i * D + d] * inv;
      if (a->lse) a->lse[((size_t)b * H + h) * T + t0 + i] = m[i] + logf(l[i]);
    }
  }
}

static size_t bwd_fast_scratch(int D, int T) { return (size_t)5 * BK * D + (size_t)3 * RB * D + 2 * RB * BK + T + 16; }

static inline __attribute__((always_inline)) void bwd_group_fast(const attn_args *a, int task, float *scr, const int D) {
  const int T = a->T, H = a->H, Hkv = a->Hkv, group = H / Hkv, BHkv = a->B * Hkv;
  const int b = task % BHkv / Hkv, kvh = task % Hkv, part = task / BHkv;  // part 0 (most work) first
  const int nkt = (T + BK - 1) / BK, kt0 = (int)((int64_t)part * nkt / a->parts), kt1 = (int)((int64_t)(part + 1) * nkt / a->parts);
  const int kbeg = kt0 * BK, kfin = kt1 * BK < T ? kt1 * BK : T;  // this task's keys
  const float scale = 1.0f / sqrtf((float)D);
  const size_t kstride = (size_t)Hkv * D, qstride = (size_t)H * D;
  float *Kj = scr, *Kt = Kj + BK * D, *Vt = Kt + (size_t)D * BK, *dKj = Vt + (size_t)D * BK, *dVj = dKj + BK * D;
  float *Qb = dVj + BK * D, *dOb = Qb + RB * D, *dQb = dOb + RB * D, *P = dQb + RB * D, *dS = P + RB * BK, *Delta = dS + RB * BK;
  const float *kb = a->k + ((size_t)b * T * Hkv + kvh) * D, *vb = a->v + ((size_t)b * T * Hkv + kvh) * D;
  float *dkb = a->dk + ((size_t)b * T * Hkv + kvh) * D, *dvb = a->dv + ((size_t)b * T * Hkv + kvh) * D;
  float *dq = a->parts > 1 ? a->dq_part + (size_t)part * a->B * T * H * D : a->dq;
  for (int t = kbeg; t < kfin; t++) {
    memset(dkb + t * kstride, 0, sizeof(float) * D);
    memset(dvb + t * kstride, 0, sizeof(float) * D);
  }
  for (int h = kvh * group; h < (kvh + 1) * group; h++) {
    const float *qb = a->q + ((size_t)b * T * H + h) * D, *dob = a->dout + ((size_t)b * T * H + h) * D;
    const float *ob = a->o + ((size_t)b * T * H + h) * D, *lse = a->lse + ((size_t)b * H + h) * T;
    float *dqb = dq + ((size_t)b * T * H + h) * D;
    for (int t = kbeg; t < T; t++) {  // queries before kbeg see none of this task's keys
      vf acc = {0};  // Δ_t = dout_t · out_t
      for (int c = 0; c < D / VW; c++) acc += VLD(dob + t * qstride + c * VW) * VLD(ob + t * qstride + c * VW);
      float s = 0;
      for (int l = 0; l < VW; l++) s += acc[l];
      Delta[t] = s;
      memset(dqb + t * qstride, 0, sizeof(float) * D);
    }
    for (int k0 = kbeg; k0 < kfin; k0 += BK) {
      const int nk = T - k0 < BK ? T - k0 : BK;
      transpose_rows(Kt, BK, kb + (size_t)k0 * kstride, kstride, nk, BK, D);
      transpose_rows(Vt, BK, vb + (size_t)k0 * kstride, kstride, nk, BK, D);
      for (int j = 0; j < BK; j++)
        for (int d = 0; d < D; d++) {
          Kj[j * D + d] = j < nk ? kb[(size_t)(k0 + j) * kstride + d] : 0.0f;
          dKj[j * D + d] = 0;
          dVj[j * D + d] = 0;
        }
      for (int t0 = k0; t0 < T; t0 += RB) {
        const int nr = T - t0 < RB ? T - t0 : RB;
        for (int r = 0; r < RB; r++)
          for (int d = 0; d < D; d++) {
            Qb[r * D + d] = r < nr ? qb[(t0 + r) * qstride + d] : 0.0f;
            dOb[r * D + d] = r < nr ? dob[(t0 + r) * qstride + d] : 0.0f;
            dQb[r * D + d] = 0;
          }
        tile_scores(P, Qb, D, Kt, BK, RB, D);
        tile_scores(dS, dOb, D, Vt, BK, RB, D);
        for (int r = 0; r < RB; r++) {
          const int t = t0 + r, jn = r >= nr ? 0 : t - k0 + 1 < nk ? t - k0 + 1 : nk;
          p_ds_row(P + r * BK, dS + r * BK, jn, r < nr ? lse[t] : 0.0f, r < nr ? Delta[t] : 0.0f, scale);
        }
        const int jmax = t0 + nr - k0 < nk ? t0 + nr - k0 : nk;
        for (int r = 0; r < RB; r += ROWS(D)) {
          tile_accum_t(dVj, P + r * BK, dOb + r * D, D, jmax, D);
          tile_accum_t(dKj, dS + r * BK, Qb + r * D, D, jmax, D);
        }
        for (int r = 0; r < RB; r += ROWS(D)) tile_accum(dQb + r * D, D, dS + r * BK, Kj, jmax, D);
        for (int r = 0; r < nr; r++)
          for (int d = 0; d < D; d++) dqb[(t0 + r) * qstride + d] += dQb[r * D + d];
      }
      for (int j = 0; j < nk; j++)
        for (int d = 0; d < D; d++) {
          dkb[(size_t)(k0 + j) * kstride + d] += dKj[j * D + d];
          dvb[(size_t)(k0 + j) * kstride + d] += dVj[j * D + d];
        }
    }
  }
}

// ---------------------------------------------------------------- task dispatch

static void attention_forward_task(void *ctx, int task, int thread) {
  const attn_args *a = ctx;
  float *scr = scratch.buf[thread];
  switch (a->D) {
    case 16: fwd_head_fast(a, task, scr, 16); break;
    case 32: fwd_head_fast(a, task, scr, 32); break;
    case 64: fwd_head_fast(a, task, scr, 64); break;
    case 96: fwd_head_fast(a, task, scr, 96); break;
    case 128: fwd_head_fast(a, task, scr, 128); break;
    default: {
      int bh, qt0, qt1;
      fwd_task_range(a, task, &bh, &qt0, &qt1);
      for (int qt = qt0; qt < qt1; qt++) fwd_tile(a, bh / a->H, bh % a->H, qt, scr, a->D);
    }
  }
}

// dq = Σ_p dq_part[p], rows (b, t) cut into chunks, parts added in order (deterministic).
// Part p holds the key tiles from kbeg_p on, so it wrote (and only wrote) the query rows
// t ≥ kbeg_p: the sum for row t runs over the parts that begin at or before t.
static void dq_sum_task(void *ctx, int task, int thread) {
  (void)thread;
  const attn_args *a = ctx;
  const int64_t rows = (int64_t)a->B * a->T, row = (int64_t)a->H * a->D, n = rows * row;
  const int nkt = (a->T + BK - 1) / BK;
  int64_t lo, hi;
  chunk_range(rows, a->sum_tasks, task, &lo, &hi);
  for (int64_t r = lo; r < hi; r++) {
    const int t = (int)(r % a->T);
    int np = 0;  // parts whose first key tile starts at or before t
    while (np < a->parts && (int64_t)np * nkt / a->parts * BK <= t) np++;
    float *dst = a->dq + r * row;
    for (int64_t i = 0; i < row; i++) {
      float s = 0;
      for (int p = 0; p < np; p++) s += a->dq_part[p * n + r * row + i];
      dst[i] = s;
    }
  }
}

// The attention backward aims at BWD_TASKS tasks (4 per thread on 2 cores) when
// B·Hkv alone gives fewer; a fixed number, so results are the same at every thread count.
#define BWD_TASKS 8

static float *dq_part_buf;
static size_t dq_part_cap;

static void attention_backward_task(void *ctx, int task, int thread) {
  const attn_args *a = ctx;
  float *scr = scratch.buf[thread];
  switch (a->D) {
    case 16: bwd_group_fast(a, task, scr, 16); break;
    case 32: bwd_group_fast(a, task, scr, 32); break;
    case 64: bwd_group_fast(a, task, scr, 64); break;
    case 96: bwd_group_fast(a, task, scr, 96); break;
    case 128: bwd_group_fast(a, task, scr, 128); break;
    default: bwd_group(a, task, scr, a->D);
  }
}

// ---------------------------------------------------------------- cached (decode)

typedef struct {
  float *out;
  const float *q, *kc, *vc;
  int B, Tq, H, Hkv, D, pos0, maxT;
} cached_args;

static void attention_cached_task(void *ctx, int task, int thread) {
  const cached_args *a = ctx;
  const int b = task / a->H, h = task % a->H, kvh = h / (a->H / a->Hkv), D = a->D;
  const size_t kstride = (size_t)a->Hkv * D;
  const float *kb = a->kc + ((size_t)b * a->maxT * a->Hkv + kvh) * D, *vb = a->vc + ((size_t)b * a->maxT * a->Hkv + kvh) * D;
  const float scale = 1.0f / sqrtf((float)D);
  float *s = scratch.buf[thread], *o = s + a->maxT;
  for (int t = 0; t < a->Tq; t++) {
    const float *qt = a->q + (((size_t)b * a->Tq + t) * a->H + h) * D;
    const int L = a->pos0 + t + 1;
    for (int j = 0; j < L; j++) s[j] = dot_f32(qt, kb + (size_t)j * kstride, D) * scale;
    const float m = max_f32(s, L);
    float sum = 0;
    for (int j = 0; j < L; j++) { s[j] = exp_fast(s[j] - m); sum += s[j]; }
    for (int d = 0; d < D; d++) o[d] = 0;
    for (int j = 0; j < L; j++) {
      const float pj = s[j];
      const float *restrict vj = vb + (size_t)j * kstride;
      for (int d = 0; d < D; d++) o[d] += pj * vj[d];
    }
    float *dst = a->out + (((size_t)b * a->Tq + t) * a->H + h) * D, inv = 1.0f / sum;
    for (int d = 0; d < D; d++) dst[d] = o[d] * inv;
  }
}

// ---------------------------------------------------------------- Node-API

// Every dimension is below 2^30 (GET_DIM); task counts are products of B, H and a share of T,
// kept as C ints, so B·H·T must stay below 2^31 as well.
static int check_heads(napi_env env, const char *op, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D) {
  if (Hkv < 1 || H % Hkv) return throw_err(env, op, "H must be a positive multiple of Hkv");
  if (D < 1 || D > MAX_D) return throw_err(env, op, "head size D must be in [1, 256]");
  if (MUL3(B, H, T > 0 ? T : 1) > INT32_MAX) return throw_err(env, op, "B·H·T must be below 2^31");
  return 1;
}

// ---------------------------------------------------------------- bf16 operands on AMX (attention_amx.h)

#if defined(__AVX512F__)
#include "attention_amx.h"
#endif

// Whether attention's matmuls can run on AMX tiles with bf16 operands here: the avx512 level
// and amx.h's test, the one gemm_bf16.c decides by. Asked once, at registration.
static int amx_attention_usable(void) {
#if defined(__AVX512F__)
  return mynah_amx_bf16_usable();
#else
  return 0;
#endif
}

// attentionForward and attentionForwardBf16 (bf16 = 1: the matmuls on tiles; D a multiple of 32).
static napi_value attention_forward(napi_env env, napi_callback_info info, const char *OP, int bf16) {
  ARGS(OP, 10);
  GET_DIM(5, "B", B);
  GET_DIM(6, "T", T);
  GET_DIM(7, "H", H);
  GET_DIM(8, "Hkv", Hkv);
  GET_DIM(9, "D", D);
  if (!check_heads(env, OP, B, T, H, Hkv, D)) return NULL;
  if (bf16 && D % 32) { throw_err(env, OP, "head size D must be a multiple of 32"); return NULL; }
  GET_F32(0, "out", MUL4(B, T, H, D), out);
  GET_F32(1, "lse", MUL3(B, H, T), lse);
  GET_F32(2, "q", MUL4(B, T, H, D), q);
  GET_F32(3, "k", MUL4(B, T, Hkv, D), k);
  GET_F32(4, "v", MUL4(B, T, Hkv, D), v);
  if (B * T == 0) return NULL;
  size_t need = fwd_scratch((int)D) > fwd_fast_scratch((int)D, (int)T) ? fwd_scratch((int)D) : fwd_fast_scratch((int)D, (int)T);
#if defined(__AVX512F__)
  if (bf16) need = fwd_amx_scratch((int)D, (int)T);
#endif
  if (!thread_scratch_reserve(&scratch, need)) { throw_err(env, OP, "out of memory for scratch"); return NULL; }
  attn_args a = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .B = (int)B, .T = (int)T, .H = (int)H,
                 .Hkv = (int)Hkv, .D = (int)D, .ntiles = (int)((T + BQ - 1) / BQ), .pos0 = 0, .kT = (int)T};
  a.parts = fwd_parts(a.B * a.H, a.ntiles);
#if defined(__AVX512F__)
  if (bf16) { pool_run(attention_forward_amx_task, &a, a.B * a.H * a.parts); return NULL; }
#endif
  pool_run(attention_forward_task, &a, a.B * a.H * a.parts);
  return NULL;
}

static napi_value js_attention_forward(napi_env env, napi_callback_info info) {
  return attention_forward(env, info, "attentionForward", 0);
}
static napi_value js_attention_forward_bf16(napi_env env, napi_callback_info info) {
  return attention_forward(env, info, "attentionForwardBf16", 1);
}

// attentionBackward and attentionBackwardBf16 (bf16 = 1: the matmuls on tiles; D a multiple of 32).
static napi_value attention_backward(napi_env env, napi_callback_info info, const char *OP, int bf16) {
  ARGS(OP, 14);
  GET_DIM(9, "B", B);
  GET_DIM(10, "T", T);
  GET_DIM(11, "H", H);
  GET_DIM(12, "Hkv", Hkv);
  GET_DIM(13, "D", D);
  if (!check_heads(env, OP, B, T, H, Hkv, D)) return NULL;
  if (bf16 && D % 32) { throw_err(env, OP, "head size D must be a multiple of 32"); return NULL; }
  GET_F32(0, "dq", MUL4(B, T, H, D), dq);
  GET_F32(1, "dk", MUL4(B, T, Hkv, D), dk);
  GET_F32(2, "dv", MUL4(B, T, Hkv, D), dv);
  GET_F32(3, "dout", MUL4(B, T, H, D), dout);
  GET_F32(4, "q", MUL4(B, T, H, D), q);
  GET_F32(5, "k", MUL4(B, T, Hkv, D), k);
  GET_F32(6, "v", MUL4(B, T, Hkv, D), v);
  GET_F32(7, "out", MUL4(B, T, H, D), out);
  GET_F32(8, "lse", MUL3(B, H, T), lse);
  if (B * T == 0) return NULL;
  size_t need = bwd_scratch((int)D, (int)T) > bwd_fast_scratch((int)D, (int)T) ? bwd_scratch((int)D, (int)T) : bwd_fast_scratch((int)D, (int)T);
#if defined(__AVX512F__)
  if (bf16) need = bwd_amx_scratch((int)D, (int)T);
#endif
  if (!thread_scratch_reserve(&scratch, need)) { throw_err(env, OP, "out of memory for scratch"); return NULL; }
  attn_args a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .o = out, .lse = lse,
                 .B = (int)B, .T = (int)T, .H = (int)H, .Hkv = (int)Hkv, .D = (int)D};
  a.parts = 1;
  // Too few (b, kv head) tasks to keep the threads busy: split the key tiles too. The split
  // depends on the shapes only, never on the pool size: the partial dq copies are summed in
  // part order, so a split that followed the thread count would make the result (and a
  // resumed run) depend on it.
  const int nkt = (int)((T + BK - 1) / BK);
  const int fast = bf16 || D == 16 || D == 32 || D == 64 || D == 96 || D == 128;
  if (fast && B * Hkv < BWD_TASKS && nkt > 1) {
    const int p = (int)((BWD_TASKS + B * Hkv - 1) / (B * Hkv));
    const size_t need = (size_t)(p < nkt ? p : nkt) * B * T * H * D;
    if (dq_part_cap < need) {
      free(dq_part_buf);
      dq_part_buf = malloc(need * sizeof(float));
      dq_part_cap = dq_part_buf ? need : 0;
    }
    if (dq_part_buf) { a.parts = p < nkt ? p : nkt; a.dq_part = dq_part_buf; }
  }
#if defined(__AVX512F__)
  if (bf16) pool_run(attention_backward_amx_task, &a, (int)(B * Hkv) * a.parts);
  else
#endif
    pool_run(attention_backward_task, &a, (int)(B * Hkv) * a.parts);
  if (a.parts > 1) {
    a.sum_tasks = task_count(B * T * H * D, 1 << 14);
    if (a.sum_tasks > B * T) a.sum_tasks = (int)(B * T);
    pool_run(dq_sum_task, &a, a.sum_tasks);
  }
  return NULL;
}

static napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  return attention_backward(env, info, "attentionBackward", 0);
}
static napi_value js_attention_backward_bf16(napi_env env, napi_callback_info info) {
  return attention_backward(env, info, "attentionBackwardBf16", 1);
}

static napi_value js_attention_cached(napi_env env, napi_callback_info info) {
  const char *OP = "attentionCached";
  ARGS(OP, 11);
  GET_DIM(4, "B", B);
  GET_DIM(5, "Tq", Tq);
  GET_DIM(6, "H", H);
  GET_DIM(7, "Hkv", Hkv);
  GET_DIM(8, "D", D);
  GET_DIM(9, "pos0", pos0);
  GET_DIM(10, "maxT", maxT);
  if (!check_heads(env, OP, B, Tq, H, Hkv, D)) return NULL;
  if (pos0 + Tq > maxT) { throw_err(env, OP, "pos0 + Tq exceeds the cache length maxT"); return NULL; }
  GET_F32(0, "out", MUL4(B, Tq, H, D), out);
  GET_F32(1, "q", MUL4(B, Tq, H, D), q);
  GET_F32(2, "kCache", MUL4(B, maxT, Hkv, D), kc);
  GET_F32(3, "vCache", MUL4(B, maxT, Hkv, D), vc);
  if (B * Tq == 0) return NULL;
  if (Tq >= 16 && (D == 16 || D == 32 || D == 64 || D == 96 || D == 128)) {
    // A prefill chunk: the register-blocked forward tiles, reading keys straight from the cache.
    if (!thread_scratch_reserve(&scratch, fwd_fast_scratch((int)D, (int)(pos0 + Tq)))) { throw_err(env, OP, "out of memory for scratch"); return NULL; }
    attn_args f = {.out = out, .lse = NULL, .q = q, .k = kc, .v = vc, .B = (int)B, .T = (int)Tq, .H = (int)H,
                   .Hkv = (int)Hkv, .D = (int)D, .ntiles = (int)((Tq + BQ - 1) / BQ), .pos0 = (int)pos0, .kT = (int)maxT};
    f.parts = fwd_parts(f.B * f.H, f.ntiles);
    pool_run(attention_forward_task, &f, f.B * f.H * f.parts);
    return NULL;
  }
  if (!thread_scratch_reserve(&scratch, (size_t)maxT + MAX_D + 16)) { throw_err(env, OP, "out of memory for scratch"); return NULL; }
  cached_args a = {out, q, kc, vc, (int)B, (int)Tq, (int)H, (int)Hkv, (int)D, (int)pos0, (int)maxT};
  pool_run(attention_cached_task, &a, (int)(B * H));
  return NULL;
}

void register_attention(napi_env env, napi_value exports) {
  export_fn(env, exports, "attentionForward", js_attention_forward);
  export_fn(env, exports, "attentionBackward", js_attention_backward);
  export_fn(env, exports, "attentionCached", js_attention_cached);
  // Only where they run on tiles: elsewhere bf16 training keeps attention in float32.
  if (amx_attention_usable()) {
    export_fn(env, exports, "attentionForwardBf16", js_attention_forward_bf16);
    export_fn(env, exports, "attentionBackwardBf16", js_attention_backward_bf16);
  }
}

// The attention of one batched decoding step, in one call: rope, KV-cache write and attention
// for a ragged batch (every row its own sequence and position).
//
// Shapes: N rows (tokens), H query heads, Hkv key/value heads (H % Hkv == 0), D head size (even),
//   S cache slots of maxT positions.
//   q, out (N, H, D); k, v (N, Hkv, D); kCache, vCache (S, maxT, Hkv, D); cos, sin (maxT, D/2);
//   slot, pos (N): row n is the token at position pos[n] of sequence slot[n] (slot −1: skip the row).
// For every row n that is not skipped:
//   1. q[n], k[n] = rope(q[n]), rope(k[n]) at position pos[n], in place (rope.c's rotation);
//   2. kCache[slot, pos] = k[n], vCache[slot, pos] = v[n];
//   3. out[n, h] = softmax(scale · q[n, h] · K[slot, 0..pos]ᵀ) · V[slot, 0..pos], scale = 1/√D,
//      query head h reading kv head h / (H / Hkv).
// Step 3 starts after every row's step 2, so rows of one sequence at consecutive positions (a
// short chunk) see each other's keys, as attentionCached's queries do.
//
// Why one call: a decoding step of B sequences at B different positions used to make 3·B calls
// per layer (rope q, rope k, attention), each a Node-API crossing and a pool hand-off; for a
// small model those dominated the step (docs/benchmarks.md, Serving).
//
// Work: steps 1–2 on the calling thread (O(N·H·D)); step 3 in tasks (row, kv head), claimed
// dynamically. A task reads its sequence's keys and values of one kv head once from memory for
// all H/Hkv query heads of the group (the block of keys it works on stays in L1 while each query
// head of the group uses it): two passes, scores (then the softmax over the whole row, exact),
// then the weighted sum of values. Each (row, head) is computed by one task, in a fixed order,
// so the result does not depend on the thread count or on which other rows share the batch: a
// sequence decoded in a batch gets exactly the bits it gets alone.
//
// Vectorization: with AVX-512, scores go 16 keys at a time, each key's dot product in one zmm
// of partial sums (a masked load covers a D that is not a multiple of 16), and the 16 partial-sum
// vectors are reduced together by a shuffle tree into one vector of 16 scores (15 adds and 30
// shuffles per 16 keys, rather than a horizontal sum per key). Elsewhere, plain loops written with
// LANES partial sums (ops_common.h) that the compiler vectorizes for the level being built.
#include "ops_common.h"
#include "thread_scratch.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define MAX_D 256
// Per-thread scratch: scores (group, maxT rounded up to 16) and the scaled queries (group, D).
static thread_scratch scratch;

typedef struct {
  float *out;
  const float *q, *kc, *vc;
  const int32_t *slot, *pos;
  int N, H, Hkv, D, maxT, stride;  // stride: floats of scores per query head in scratch
} decode_args;

// ---------------------------------------------------------------- scores: s[j] = qs · k_j, j < L

#if defined(__AVX512F__)
// 16 vectors of partial sums -> one vector whose lane i is the full sum of a[PERM(i)]: pairs of
// vectors are folded by halves (256-bit, then 128-bit lanes, then 64-, then 32-bit elements).
// The tree leaves key i of a[] in lane (i % 4)·4 + i / 4, so callers put key j's partial sums
// in a[(j % 4)·4 + j / 4] (the map is its own inverse) and get the keys in order.
static inline __m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; i++)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; i++)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; i++)
    d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0x44), _mm512_shuffle_ps(c[2 * i], c[2 * i + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
}
#define SLOT16(j) (((j) % 4) * 4 + (j) / 4)

// Scores of 16 keys starting at kb, for one query qs (D floats). Keys past nk repeat key
// nk − 1 (valid memory; their scores lie past the row's last key and are never read). The key
// loop is unrolled whole so that the 16 accumulators stay in registers.
static inline __attribute__((always_inline)) __m512 scores16(const float *qs, const float *kb, size_t kstride, int nk, int D) {
  const float *row[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; j++) row[j] = kb + (size_t)(j < nk ? j : nk - 1) * kstride;
  __m512 acc[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
  int c = 0;
  for (; c + 16 <= D; c += 16) {
    const __m512 qv = _mm512_loadu_ps(qs + c);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[SLOT16(j)] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(row[j] + c), acc[SLOT16(j)]);
  }
  if (c < D) {
    const __mmask16 m = (__mmask16)((1u << (D - c)) - 1);
    const __m512 qv = _mm512_maskz_loadu_ps(m, qs + c);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[SLOT16(j)] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, row[j] + c), acc[SLOT16(j)]);
  }
  return reduce16(acc);
}
#endif

// s[h·stride + j] = qs[h] · k_j for the g query heads of a group, j < L; K rows at kb, kstride apart.
static void group_scores(float *s, int stride, const float *qs, int g, const float *kb, size_t kstride, int L, int D) {
#if defined(__AVX512F__)
  for (int j0 = 0; j0 < L; j0 += 16) {
    const int nk = L - j0 < 16 ? L - j0 : 16;
    const float *k0 = kb + (size_t)j0 * kstride;
    if (j0 + 32 < L) {  // the next block's rows: they are strided, so help the prefetcher
      for (int j = 0; j < 16; j++) _mm_prefetch((const char *)(k0 + (size_t)(j + 32) * kstride), _MM_HINT_T0);
    }
    for (int h = 0; h < g; h++) _mm512_storeu_ps(s + (size_t)h * stride + j0, scores16(qs + (size_t)h * D, k0, kstride, nk, D));
  }
#else
  for (int j = 0; j < L; j++) {
    const float *kj = kb + (size_t)j * kstride;
    for (int h = 0; h < g; h++) s[(size_t)h * stride + j] = dot_f32(qs + (size_t)h * D, kj, D);
  }
#endif
}

// ---------------------------------------------------------------- out = p · V

#if defined(__AVX512F__)
// o[h] = Σ_j p[h][j] · v_j for HN ≤ 2 heads of NC·16 values: NC zmm per head, two sets (keys 2
// at a time, so the FMA chains overlap), then scaled by inv[h] into out.
static inline __attribute__((always_inline)) void pv_heads(float *out, size_t ostride, const float *s, int stride, const float *inv,
                                                           const float *vb, size_t kstride, int L, const int NC, const int HN) {
  __m512 o0[2][8], o1[2][8];
  for (int h = 0; h < HN; h++)
    for (int c = 0; c < NC; c++) { o0[h][c] = _mm512_setzero_ps(); o1[h][c] = _mm512_setzero_ps(); }
  int j = 0;
  for (; j + 2 <= L; j += 2) {
    const float *v0 = vb + (size_t)j * kstride, *v1 = v0 + kstride;
    for (int h = 0; h < HN; h++) {
      const __m512 p0 = _mm512_set1_ps(s[(size_t)h * stride + j]), p1 = _mm512_set1_ps(s[(size_t)h * stride + j + 1]);
      for (int c = 0; c < NC; c++) {
        o0[h][c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), o0[h][c]);
        o1[h][c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c), o1[h][c]);
      }
    }
  }
  if (j < L) {
    const float *v0 = vb + (size_t)j * kstride;
    for (int h = 0; h < HN; h++) {
      const __m512 p0 = _mm512_set1_ps(s[(size_t)h * stride + j]);
      for (int c = 0; c < NC; c++) o0[h][c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), o0[h][c]);
    }
  }
  for (int h = 0; h < HN; h++) {
    const __m512 sc = _mm512_set1_ps(inv[h]);
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + (size_t)h * ostride + 16 * c, _mm512_mul_ps(_mm512_add_ps(o0[h][c], o1[h][c]), sc));
  }
}
#endif

// o[h] = Σ_j p[h][j] · v_j for the g heads (p at s + h·stride), then scaled by inv[h] into out.
static void group_pv(float *out, size_t ostride, const float *s, int stride, const float *inv, int g,
                     const float *vb, size_t kstride, int L, int D) {
#if defined(__AVX512F__)
  if (D % 16 == 0 && D <= 128) {
    // heads in sets of 2 when D ≤ 64 (at most 16 accumulators); NC, HN constants (pv_heads is
    // inlined per case) so that the accumulators stay in registers
    const int nc = D / 16, hs = nc <= 4 ? 2 : 1;
    for (int h0 = 0; h0 < g; h0 += hs) {
      const int hn = g - h0 < hs ? g - h0 : hs;
      const float *sh = s + (size_t)h0 * stride;
      float *oh = out + (size_t)h0 * ostride;
      switch (nc * 4 + hn) {
        case 5: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 1, 1); break;
        case 6: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 1, 2); break;
        case 9: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 2, 1); break;
        case 10: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 2, 2); break;
        case 13: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 3, 1); break;
        case 14: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 3, 2); break;
        case 17: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 4, 1); break;
        case 18: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 4, 2); break;
        case 21: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 5, 1); break;
        case 25: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 6, 1); break;
        case 29: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 7, 1); break;
        default: pv_heads(oh, ostride, sh, stride, inv + h0, vb, kstride, L, 8, 1); break;
      }
    }
    return;
  }
#endif
  for (int h = 0; h < g; h++) {
    float o[MAX_D];
    const float *p = s + (size_t)h * stride;
    for (int d = 0; d < D; d++) o[d] = 0;
    for (int j = 0; j < L; j++) {
      const float pj = p[j];
      const float *restrict vj = vb + (size_t)j * kstride;
      for (int d = 0; d < D; d++) o[d] += pj * vj[d];
    }
    float *dst = out + (size_t)h * ostride;
    for (int d = 0; d < D; d++) dst[d] = o[d] * inv[h];
  }
}

// ---------------------------------------------------------------- one task: (row, kv head)

static void decode_task(void *ctx, int task, int thread) {
  const decode_args *a = ctx;
  const int n = task / a->Hkv, kvh = task % a->Hkv, D = a->D, g = a->H / a->Hkv;
  if (a->slot[n] < 0) return;
  const int L = a->pos[n] + 1, stride = a->stride;
  const size_t kstride = (size_t)a->Hkv * D;
  const float *kb = a->kc + ((size_t)a->slot[n] * a->maxT * a->Hkv + kvh) * D;
  const float *vb = a->vc + ((size_t)a->slot[n] * a->maxT * a->Hkv + kvh) * D;
  float *s = scratch.buf[thread], *qs = s + (size_t)g * stride, *inv = qs + (size_t)g * D;
  const float scale = 1.0f / sqrtf((float)D);
  const float *q = a->q + ((size_t)n * a->H + (size_t)kvh * g) * D;
  for (int i = 0; i < g * D; i++) qs[i] = q[i] * scale;
  group_scores(s, stride, qs, g, kb, kstride, L, D);
  for (int h = 0; h < g; h++) {  // softmax over the row's L scores (exact: max first)
    float *p = s + (size_t)h * stride;
    const float m = max_f32(p, L);
    float acc[LANES] = {0}, sum = 0;
    int j = 0;
    for (; j + LANES <= L; j += LANES)
      for (int u = 0; u < LANES; u++) {
        const float e = exp_fast(p[j + u] - m);
        p[j + u] = e;
        acc[u] += e;
      }
    for (; j < L; j++) { p[j] = exp_fast(p[j] - m); sum += p[j]; }
    for (int u = 0; u < LANES; u++) sum += acc[u];
    inv[h] = 1.0f / sum;
  }
  group_pv(a->out + ((size_t)n * a->H + (size_t)kvh * g) * D, D, s, stride, inv, g, vb, kstride, L, D);
}

// ---------------------------------------------------------------- Node-API

static napi_value js_attention_decode(napi_env env, napi_callback_info info) {
  const char *OP = "attentionDecode";
  ARGS(OP, 16);
  GET_DIM(10, "N", N);
  GET_DIM(11, "H", H);
  GET_DIM(12, "Hkv", Hkv);
  GET_DIM(13, "D", D);
  GET_DIM(14, "S", S);
  GET_DIM(15, "maxT", maxT);
  if (Hkv < 1 || H % Hkv) { throw_err(env, OP, "H must be a positive multiple of Hkv"); return NULL; }
  if (D < 2 || D > MAX_D || D % 2) { throw_err(env, OP, "head size D must be even and in [2, 256]"); return NULL; }
  if (MUL2(N, H) > INT32_MAX) { throw_err(env, OP, "N·H must be below 2^31"); return NULL; }
  GET_F32(0, "out", MUL3(N, H, D), out);
  GET_F32(1, "q", MUL3(N, H, D), q);
  GET_F32(2, "k", MUL3(N, Hkv, D), k);
  GET_F32(3, "v", MUL3(N, Hkv, D), v);
  GET_F32(4, "kCache", MUL4(S, maxT, Hkv, D), kc);
  GET_F32(5, "vCache", MUL4(S, maxT, Hkv, D), vc);
  GET_F32(6, "cos", MUL2(maxT, D / 2), cos);
  GET_F32(7, "sin", MUL2(maxT, D / 2), sin);
  GET_I32(8, "slot", N, slot);
  GET_I32(9, "pos", N, pos);
  if (N == 0) return NULL;
  int64_t work = 0;  // multiply-adds of step 3
  for (int64_t n = 0; n < N; n++) {
    if (slot[n] < 0) continue;
    if (slot[n] >= S || pos[n] < 0 || pos[n] >= maxT) {
      char m[200];
      snprintf(m, sizeof m, "row %lld: slot %d, position %d is outside the cache (%lld slots of %lld positions)",
               (long long)n, slot[n], pos[n], (long long)S, (long long)maxT);
      throw_err(env, OP, m);
      return NULL;
    }
    work += (int64_t)(pos[n] + 1) * H * D * 2;
  }
  const int g = (int)(H / Hkv), stride = (int)((maxT + 15) / 16 * 16);
  if (!thread_scratch_reserve(&scratch, (size_t)g * stride + (size_t)g * D + g + 16)) { throw_err(env, OP, "out of memory for scratch"); return NULL; }

  // 1–2: rope (rope.c's rotation: x1' = x1·c − x2·s, x2' = x2·c + x1·s) and the cache writes
  const int64_t P = D / 2, kvw = Hkv * D;
  for (int64_t n = 0; n < N; n++) {
    if (slot[n] < 0) continue;
    const float *restrict c = cos + (int64_t)pos[n] * P, *restrict sn = sin + (int64_t)pos[n] * P;
    for (int64_t h = 0; h < H + Hkv; h++) {
      float *x1 = h < H ? q + (n * H + h) * D : k + (n * Hkv + h - H) * D, *x2 = x1 + P;
      for (int64_t i = 0; i < P; i++) {
        const float u = x1[i], w = x2[i];
        x1[i] = u * c[i] - w * sn[i];
        x2[i] = w * c[i] + u * sn[i];
      }
    }
    const size_t at = ((size_t)slot[n] * maxT + pos[n]) * kvw;
    memcpy(kc + at, k + n * kvw, sizeof(float) * kvw);
    memcpy(vc + at, v + n * kvw, sizeof(float) * kvw);
  }

  // 3: attention, tasks (row, kv head); a step too small to pay for waking a thread runs here
  decode_args a = {out, q, kc, vc, slot, pos, (int)N, (int)H, (int)Hkv, (int)D, (int)maxT, stride};
  const int tasks = (int)(N * Hkv);
  if (work < (1 << 17) || pool_threads() == 1) {
    for (int t = 0; t < tasks; t++) decode_task(&a, t, 0);
  } else {
    pool_run(decode_task, &a, tasks);
  }
  return NULL;
}

void register_attention_decode(napi_env env, napi_value exports) {
  export_fn(env, exports, "attentionDecode", js_attention_decode);
}

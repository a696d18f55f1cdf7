// Matrix products with 16-bit (F16) and 8-bit (Q8_0) weights for decoding: y = x·Wᵀ (+ y),
// W stored compactly, x and y float32.
//
// Shapes: x (M, K), W (N, K) row-major (a Hugging Face projection [out, in]), y (M, N).
// Batch-1 decoding reads every weight once per token, so its speed is the memory bandwidth
// divided by the bytes per weight: F16 halves the bytes of F32, Q8_0 (34 bytes per 32
// weights) nearly quarters them.
//
// F16 (M ≤ 8): converted to float32 in registers on the fly (AVX-512F vcvtph2ps on 16 lanes,
// F16C on 8, else bit manipulation). Like gemm_small.c, nothing is packed: each thread
// streams its own rows of W and uses each converted weight for all M rows of x while it sits
// in a register. Larger M (prefill) dequantizes W once (f16ToF32) and runs the float32 GEMM.
//
// Q8_0 (any M): integer dot products against x rounded to int8 per 32-block, on weights kept
// in 16-row panels: q8_panel.h says why and how, and gives the error bound. Prefill uses the
// same kernel (up to 8 rows of x per pass over a panel, which stays in cache).
//
// F16 accuracy against the float32 reference on the same stored weights: only summation order
// (float32 accumulators); against the original float32 weights, the rounding of the stored
// weights: F16 |w̃ − w| ≤ 2⁻¹¹|w|; Q8_0 |w̃ − w| ≤ d/2 + 127·|d − f16(d)| ≤ 0.57·d per weight.
#include "ops_common.h"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif
#include "q8_panel.h"

#if defined(__AVX512F__)
#define QV 16
#elif defined(__AVX2__)
#define QV 8
#else
#define QV 4
#endif
typedef float qvf __attribute__((vector_size(QV * 4), aligned(4)));
#define QINLINE static inline __attribute__((always_inline))

static float half_to_float(uint16_t h);
static float q8p_half(uint16_t h) { return half_to_float(h); }
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0) {
    if (m == 0) bits = sign;
    else {  // subnormal: normalize
      int shift = 0;
      while (!(m & 0x400)) m <<= 1, shift++;
      bits = sign | ((uint32_t)(113 - shift) << 23) | ((m & 0x3ff) << 13);
    }
  } else if (e == 0x1f) bits = sign | 0x7f800000 | (m << 13);
  else bits = sign | ((e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// QV halves → floats
QINLINE qvf load_f16(const uint16_t *p) {
#if defined(__AVX512F__)
  return (qvf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(__AVX2__) && defined(__F16C__)
  return (qvf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#else
  qvf v;
  for (int l = 0; l < QV; l++) v[l] = half_to_float(p[l]);
  return v;
#endif
}

// QV int8 → floats
QINLINE qvf load_q8(const int8_t *p) {
#if defined(__AVX512F__)
  return (qvf)_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
#elif defined(__AVX2__)
  return (qvf)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
#else
  qvf v;
  for (int l = 0; l < QV; l++) v[l] = (float)p[l];
  return v;
#endif
}

QINLINE float qhsum(qvf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps((__m512)v);
#else
  float s = 0;
  for (int l = 0; l < QV; l++) s += v[l];
  return s;
#endif
}

QINLINE qvf loadx(const float *p) {
  qvf v;
  memcpy(&v, p, sizeof v);
  return v;
}

typedef struct {
  int M, N, K, ntasks, accumulate;
  const float *x;
  const void *w;
  float *y;
} qgemv_args;

// F16: row j of W against all M rows of x, U independent accumulators per row of x along k
// (so that M·U ≥ 4 FMA chains are in flight). One row at a time: the weights are read in
// memory order, a single stream the hardware prefetcher follows (several rows walked side by
// side are several streams in one page, which it follows worse: measured slower here).
QINLINE void f16_row(const qgemv_args *a, int M, int U, int j) {
  qvf acc[8][4];
  for (int m = 0; m < M; m++)
    for (int u = 0; u < U; u++) acc[m][u] = (qvf){0};
  const uint16_t *w = (const uint16_t *)a->w + (size_t)j * a->K;
  int K = a->K, k = 0;
  for (; k + U * QV <= K; k += U * QV) {
    // 4 KB ahead: the hardware prefetcher alone left this loop latency-bound (measured +30 %)
    for (int o = 0; o < U * QV * 2; o += 64) __builtin_prefetch((const char *)(w + k) + Q8P_PREFETCH + o);
    qvf b[4];
    for (int u = 0; u < U; u++) b[u] = load_f16(w + k + u * QV);
    for (int m = 0; m < M; m++)
      for (int u = 0; u < U; u++) acc[m][u] += loadx(a->x + (size_t)m * K + k + u * QV) * b[u];
  }
  for (; k + QV <= K; k += QV) {
    qvf b = load_f16(w + k);
    for (int m = 0; m < M; m++) acc[m][0] += loadx(a->x + (size_t)m * K + k) * b;
  }
  for (int m = 0; m < M; m++) {
    for (int u = 1; u < U; u++) acc[m][0] += acc[m][u];
    float t = qhsum(acc[m][0]);
    for (int kk = k; kk < K; kk++) t += a->x[(size_t)m * K + kk] * half_to_float(w[kk]);
    float *y = &a->y[(size_t)m * a->N + j];
    *y = a->accumulate ? *y + t : t;
  }
}

#define F16_BY_M(a, j0, j1)                                                 \
  switch ((a)->M) {                                                         \
    case 1: for (int j = j0; j < j1; j++) f16_row(a, 1, 4, j); break;       \
    case 2: for (int j = j0; j < j1; j++) f16_row(a, 2, 2, j); break;       \
    case 3: for (int j = j0; j < j1; j++) f16_row(a, 3, 2, j); break;       \
    case 4: for (int j = j0; j < j1; j++) f16_row(a, 4, 1, j); break;       \
    case 5: for (int j = j0; j < j1; j++) f16_row(a, 5, 1, j); break;       \
    case 6: for (int j = j0; j < j1; j++) f16_row(a, 6, 1, j); break;       \
    case 7: for (int j = j0; j < j1; j++) f16_row(a, 7, 1, j); break;       \
    default: for (int j = j0; j < j1; j++) f16_row(a, 8, 1, j); break;      \
  }

static void f16_task(void *ctx, int task, int thread) {
  (void)thread;
  const qgemv_args *a = ctx;
  int64_t j0, j1;
  chunk_range(a->N, a->ntasks, task, &j0, &j1);
  F16_BY_M(a, (int)j0, (int)j1);
}

// Q8_0: the panels [p0, p1) of this task, all M rows of x (quantized beforehand).
static void q8_task(void *ctx, int task, int thread) {
  (void)thread;
  const q8p_args *a = ctx;
  int64_t p0, p1;
  chunk_range((a->N + Q8P_ROWS - 1) / Q8P_ROWS, a->ntasks, task, &p0, &p1);
  int path = q8p_path();
#if defined(__AVX512F__)
  if (path == Q8P_AMX) {
    int mpad = a->mpad > a->M ? a->mpad : a->M;
    if (a->M >= Q8P_AMX_MIN_M && (a->M >= 16 || mpad >= 16)) {
      int8_t *wq = aligned_alloc(64, (size_t)16 * a->K);  // 16·K: a multiple of 64 (K % 32 == 0, ×16)
      if (wq) {
        q8p_amx_begin();
        for (int64_t p = p0; p < p1; p++) q8p_panel_amx(a, wq, (int)p, 0, a->M);
        mynah_amx_release();
        free(wq);
        return;
      }
    }
    path = Q8P_VNNI512;  // too few rows for tiles to pay
  }
#endif
  q8p_panel_fn fn = q8p_fn(path);
  for (int64_t p = p0; p < p1; p++) fn(a, (int)p, 0, a->M);
}

typedef struct {
  const void *src;
  float *dst;
  int64_t n;  // values
  int ntasks;
  int K;      // Q8_0: row length
} deq_args;

static void f16_deq_task(void *ctx, int task, int thread) {
  (void)thread;
  const deq_args *a = ctx;
  int64_t lo, hi;
  chunk_range(a->n / QV, a->ntasks, task, &lo, &hi);
  const uint16_t *s = a->src;
  for (int64_t i = lo * QV; i < hi * QV; i += QV) {
    qvf v = load_f16(s + i);
    memcpy(a->dst + i, &v, sizeof v);
  }
  if (task == a->ntasks - 1)
    for (int64_t i = a->n / QV * QV; i < a->n; i++) a->dst[i] = half_to_float(s[i]);
}

// Q8_0 panels → float32 [N, K] (what the Q8_0 kernel multiplies x̃ by): one panel per task index.
static void q8_deq_task(void *ctx, int task, int thread) {
  (void)thread;
  const deq_args *a = ctx;  // n = N·K; ntasks = panels; K in a->K
  int K = a->K, nb = K / 32, N = (int)(a->n / K);
  int64_t p0, p1;
  chunk_range((N + Q8P_ROWS - 1) / Q8P_ROWS, a->ntasks, task, &p0, &p1);
  for (int64_t p = p0; p < p1; p++) {
    const uint8_t *pw = (const uint8_t *)a->src + (size_t)p * 17 * K;
    const uint16_t *ps = (const uint16_t *)(pw + (size_t)16 * K);
    for (int r = 0; r < Q8P_ROWS && p * Q8P_ROWS + r < N; r++)
      for (int b = 0; b < nb; b++) {
        uint16_t h;
        memcpy(&h, ps + b * 16 + r, 2);
        float d = half_to_float(h);
        for (int k = 0; k < 32; k++)
          a->dst[(size_t)(p * Q8P_ROWS + r) * K + b * 32 + k] = d * (float)((int)pw[(size_t)((b * 8 + k / 4) * 16 + r) * 4 + k % 4] - 128);
      }
  }
}

// ---------------------------------------------------------------- Node-API

static int get_bytes(napi_env env, napi_value v, napi_typedarray_type want, int elem, const char *op, const char *name,
                     int64_t need, void **p) {
  bool is;
  napi_typedarray_type t;
  size_t len, off;
  napi_value ab;
  const char *what = want == napi_uint16_array ? "Uint16Array" : "Uint8Array";
  char m[200];
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) {
    snprintf(m, sizeof m, "%s must be a %s", name, what);
    return throw_err(env, op, m);
  }
  napi_get_typedarray_info(env, v, &t, &len, p, &ab, &off);
  if (t != want) {
    snprintf(m, sizeof m, "%s must be a %s", name, what);
    return throw_err(env, op, m);
  }
  if (need < 0 || (int64_t)len < need) {
    if (need < 0) return throw_err(env, op, "the shapes overflow");
    snprintf(m, sizeof m, "%s has %zu %d-byte elements, the shapes need %lld", name, len, elem, (long long)need);
    return throw_err(env, op, m);
  }
  return 1;
}

// Q8_0 bytes of an [N, K] matrix in panels (q8_panel.h).
static int64_t q8_panel_bytes(int64_t N, int64_t K) { return (N + Q8P_ROWS - 1) / Q8P_ROWS * 17 * K; }

// y (+)= x̃·W̃ᵀ for Q8_0 panels: x's rows rounded to int8 blocks once, then the panels split
// among the pool's threads (a task owns whole panels, so no result depends on the split).
static void q8_gemm(int M, int N, int K, const float *x, const uint8_t *w, int accumulate, float *y) {
  int nb = K / 32;
  // rows padded with zeros to a multiple of 16, so that the AMX path may load whole tiles
  int mpad = (M + 15) / 16 * 16;
  int8_t *qx = aligned_alloc(64, ((size_t)mpad * K + 63) / 64 * 64);
  float *dx = calloc((size_t)mpad * nb, sizeof(float));
  int32_t *nc = calloc((size_t)mpad * nb, sizeof(int32_t));
  memset(qx + (size_t)M * K, 0, (size_t)(mpad - M) * K);
  for (int m = 0; m < M; m++) q8_quantize_row(x + (size_t)m * K, K, qx + (size_t)m * K, dx + (size_t)m * nb, nc + (size_t)m * nb);
  int panels = (N + Q8P_ROWS - 1) / Q8P_ROWS;
  q8p_args a = {M, N, K, 1, accumulate, w, qx, dx, nc, y, mpad};
  a.ntasks = task_count((int64_t)M * N * K, 1 << 16);
  if (a.ntasks > panels) a.ntasks = panels;
  pool_run(q8_task, &a, a.ntasks);
  free(qx), free(dx), free(nc);
}

// gemmF16(M, N, K, x, w, accumulate, y), M ≤ 8 / gemmQ8(M, N, K, x, panels, accumulate, y),
// any M: y (+)= x·Wᵀ
static napi_value js_gemm_quant(napi_env env, napi_callback_info info, int q8) {
  const char *OP = q8 ? "gemmQ8" : "gemmF16";
  ARGS(OP, 7);
  GET_DIM(0, "M", M);
  GET_DIM(1, "N", N);
  GET_DIM(2, "K", K);
  if (!q8 && M > 8) {
    throw_err(env, OP, "M must be at most 8 (dequantize the weights for larger products)");
    return NULL;
  }
  if (q8 && K % 32) {
    throw_err(env, OP, "K must be a multiple of 32 (Q8_0 blocks)");
    return NULL;
  }
  GET_F32(3, "x", MUL2(M, K), x);
  void *w;
  if (!get_bytes(env, argv[4], q8 ? napi_uint8_array : napi_uint16_array, q8 ? 1 : 2, OP, "w", q8 ? q8_panel_bytes(N, K) : MUL2(N, K), &w))
    return NULL;
  bool accumulate;
  if (!get_bool(env, argv[5], OP, "accumulate", &accumulate)) return NULL;
  GET_F32(6, "y", MUL2(M, N), y);
  if (M == 0 || N == 0) return NULL;
  if (q8) {
    q8_gemm((int)M, (int)N, (int)K, x, w, accumulate, y);
    return NULL;
  }
  qgemv_args a = {(int)M, (int)N, (int)K, 1, accumulate, x, w, y};
  // rows of W split into a few pieces per thread, claimed dynamically
  a.ntasks = task_count(MUL2(N, K), 1 << 16);
  if (a.ntasks > N) a.ntasks = (int)N;
  pool_run(f16_task, &a, a.ntasks);
  return NULL;
}
static napi_value js_gemm_f16(napi_env env, napi_callback_info info) { return js_gemm_quant(env, info, 0); }
static napi_value js_gemm_q8(napi_env env, napi_callback_info info) { return js_gemm_quant(env, info, 1); }

// f16ToF32(src, dst, n): n halves decoded to float32
static napi_value js_f16_to_f32(napi_env env, napi_callback_info info) {
  const char *OP = "f16ToF32";
  ARGS(OP, 3);
  GET_INT(2, "n", n);
  void *src;
  if (!get_bytes(env, argv[0], napi_uint16_array, 2, OP, "src", n, &src)) return NULL;
  GET_F32(1, "dst", n, dst);
  if (n == 0) return NULL;
  deq_args a = {src, dst, n, task_count(n, 1 << 16), 0};
  pool_run(f16_deq_task, &a, a.ntasks);
  return NULL;
}

// q8ToF32(panels, dst, N, K): an [N, K] Q8_0 matrix in panels decoded to float32
static napi_value js_q8_to_f32(napi_env env, napi_callback_info info) {
  const char *OP = "q8ToF32";
  ARGS(OP, 4);
  GET_DIM(2, "N", N);
  GET_DIM(3, "K", K);
  if (K % 32) {
    throw_err(env, OP, "K must be a multiple of 32 (Q8_0 blocks)");
    return NULL;
  }
  void *src;
  if (!get_bytes(env, argv[0], napi_uint8_array, 1, OP, "src", q8_panel_bytes(N, K), &src)) return NULL;
  GET_F32(1, "dst", MUL2(N, K), dst);
  if (N == 0 || K == 0) return NULL;
  int panels = (int)((N + Q8P_ROWS - 1) / Q8P_ROWS);
  deq_args a = {src, dst, MUL2(N, K), task_count(MUL2(N, K), 1 << 16), (int)K};
  if (a.ntasks > panels) a.ntasks = panels;
  pool_run(q8_deq_task, &a, a.ntasks);
  return NULL;
}

// q8Path(): which Q8_0 dot-product path this CPU runs (avx512-vnni (zmm), avx-vnni (ymm), avx2 (maddubs), portable)
static napi_value js_q8_path(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, q8p_path_names[q8p_path()], NAPI_AUTO_LENGTH, &r);
  return r;
}

void register_gemv_quant(napi_env env, napi_value exports) {
  export_fn(env, exports, "gemmF16", js_gemm_f16);
  export_fn(env, exports, "gemmQ8", js_gemm_q8);
  export_fn(env, exports, "f16ToF32", js_f16_to_f32);
  export_fn(env, exports, "q8ToF32", js_q8_to_f32);
  export_fn(env, exports, "q8Path", js_q8_path);
}

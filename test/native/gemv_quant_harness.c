// Standalone check of native/gemv_quant.c compiled for one ISA level, without Node: the addon
// is built for this machine's best level only, so test/gemv-quant-isa.test.ts compiles this
// file at AVX-512, AVX2 (haswell) and baseline x86-64 (the portable path) and runs it.
//  - F16: products and the dequantizer against a double reference on the decoded weights
//    (|Δ| ≤ 1e-5 relative to Σ|x·w|).
//  - Q8_0 (panels, int8 activations): every dot-product path this build and CPU have (portable
//    C, AVX2 maddubs, AVX-VNNI, AVX-512 VNNI) gives bit-identical results, at 1 and 5 tasks;
//    each is within q8_panel.h's bound of the double product of x and the decoded weights:
//    |Δ| ≤ Σ_b (dx_b/2)·Σ_{k∈b}|w̃_k| + 1e-5·Σ|x·w̃|; the panel dequantizer equals d·q.
//    A hash of the Q8_0 outputs is printed, so the test can check that the three builds agree.
// The Node-API functions the wrappers call are stubbed in napi_stubs.c (never called here).
// Exits 1 on failure.
#include "../../native/gemv_quant.c"
#include <stdio.h>
static uint16_t f2h(float f) {  // round to nearest even (normal range only, fine here)
  uint32_t x; memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000; int e = ((x >> 23) & 0xff) - 112; uint32_t m = x & 0x7fffff;
  if (e <= 0) return sign;
  uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | h;
}
static unsigned s = 1;
static float urand(void) { s = s * 1664525 + 1013904223; return (s / 4294967296.0f) * 2 - 1; }

// The activation rounding written out with roundf (ggml's quantize_row_q8_0), against which
// q8_quantize_row (vectorized at AVX-512) must agree exactly, halves included.
static void quantize_ref(const float *x, int K, int8_t *qx, float *dx, int32_t *nc) {
  for (int b = 0; b < K / 32; b++) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fabsf(x[b * 32 + i]) > amax ? fabsf(x[b * 32 + i]) : amax;
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) {
      int q = (int)roundf(x[b * 32 + i] * id);
      q = q > 127 ? 127 : q < -127 ? -127 : q;
      qx[b * 32 + i] = (int8_t)q, sum += q;
    }
    dx[b] = d, nc[b] = -128 * sum;
  }
}

static int check_quantize(void) {
  enum { K = 32 * 64 };
  static float x[K];
  static int8_t q1[K], q2[K];
  float d1[K / 32], d2[K / 32];
  int32_t n1[K / 32], n2[K / 32];
  for (int b = 0; b < K / 32; b++)
    for (int i = 0; i < 32; i++) {
      float *v = &x[b * 32 + i];
      if (b % 4 == 0) *v = i == 0 ? 127.0f : (float)(i - 16) + 0.5f;        // amax 127: id = 1, exact halves
      else if (b % 4 == 1) *v = i == 0 ? -12.7f : (float)(i % 25 - 12) * 0.05f;  // halves after scaling, inexact
      else if (b % 4 == 2) *v = b == 2 ? 0.0f : urand() * 1e-30f;              // all zero; tiny values
      else *v = urand() * (float)(1 + b);
    }
  q8_quantize_row(x, K, q1, d1, n1);
  quantize_ref(x, K, q2, d2, n2);
  int bad = memcmp(q1, q2, K) || memcmp(d1, d2, sizeof d1) || memcmp(n1, n2, sizeof n1);
  printf("activation rounding: %s the roundf reference\n", bad ? "DIFFERS from" : "equals");
  return bad;
}

int main(void) {
  pool_init(2);
  int fails = check_quantize();
  uint64_t hash = 1469598103934665603ull;
  int shapes[][3] = {{1, 37, 96}, {2, 65, 160}, {3, 9, 64}, {5, 130, 32}, {8, 77, 224}, {1, 300, 512}, {4, 33, 70}, {13, 48, 128}, {1, 16, 1376},
                     {16, 16, 1376}, {17, 45, 96}, {130, 37, 160}, {35, 80, 32}, {64, 19, 448}, {46, 33, 96}};
  for (int t = 0; t < (int)(sizeof shapes / sizeof shapes[0]); t++) {
    int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
    float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * N), *wd = malloc(sizeof(float) * N * K);
    for (int i = 0; i < M * K; i++) x[i] = urand() * (i % 7 == 0 ? 3 : 1);
    // F16
    if (M <= 8) {
      uint16_t *h = malloc(2 * N * K);
      for (int i = 0; i < N * K; i++) h[i] = f2h(urand() * 0.2f);
      deq_args da = {h, wd, (int64_t)N * K, 3, 0};
      for (int k = 0; k < 3; k++) f16_deq_task(&da, k, 0);
      for (int i = 0; i < N * K; i++)
        if (wd[i] != half_to_float(h[i])) { printf("deq f16 mismatch at %d\n", i); fails++; break; }
      qgemv_args a = {M, N, K, 3, 0, x, h, y};
      for (int k = 0; k < 3; k++) f16_task(&a, k, 0);
      double worst = 0;
      for (int m = 0; m < M; m++) for (int j = 0; j < N; j++) {
        double e = 0, mag = 0;
        for (int k = 0; k < K; k++) { e += (double)x[m * K + k] * wd[j * K + k]; mag += fabs((double)x[m * K + k] * wd[j * K + k]); }
        double r = fabs(y[m * N + j] - e) / (mag + 1e-30);
        if (r > worst) worst = r;
      }
      if (worst > 1e-5) fails++;
      printf("f16 M=%d N=%d K=%d worst rel %.2e\n", M, N, K, worst);
      free(h);
    }
    if (K % 32) { free(x), free(y), free(wd); continue; }
    // Q8_0 panels: ggml-style blocks (d as F16, q in [-127, 127], a few −128) written in panel order
    int nb = K / 32, panels = (N + 15) / 16;
    uint8_t *pw = calloc((size_t)panels * 17 * K, 1);
    for (int p = 0; p < panels; p++) for (int r = 0; r < 16; r++) for (int b = 0; b < nb; b++) {
      int j = p * 16 + r;
      uint16_t d = j < N ? f2h(0.001f + (s % 1000) * 1e-5f) : 0;
      s = s * 1664525 + 1013904223;
      memcpy(pw + (size_t)p * 17 * K + 16 * K + (b * 16 + r) * 2, &d, 2);
      for (int k = 0; k < 32; k++) {
        s = s * 1664525 + 1013904223;
        int q = j < N ? (int)(s % 255) - 127 : 0;
        if (j < N && s % 97 == 0) q = -128;
        pw[(size_t)p * 17 * K + ((b * 8 + k / 4) * 16 + r) * 4 + k % 4] = (uint8_t)(q + 128);
      }
    }
    deq_args da = {pw, wd, (int64_t)N * K, 2, K};
    for (int k = 0; k < 2; k++) q8_deq_task(&da, k, 0);
    // the products on every path, with 1 and 5 tasks
    float *ref = malloc(sizeof(float) * M * N);
    // rows padded to 16 with zeros (as q8_gemm allocates them), offered to the kernels or not (mpad)
    int mpad = (M + 15) / 16 * 16;
    int8_t *qx = calloc(mpad, K); float *dx = calloc(mpad * nb, sizeof(float)); int32_t *nc = calloc(mpad * nb, sizeof(int32_t));
    for (int m = 0; m < M; m++) q8_quantize_row(x + m * K, K, qx + m * K, dx + m * nb, nc + m * nb);
    int best = q8p_best_path();
    for (int path = Q8P_PORTABLE; path <= best; path++) {
#if !defined(__AVX2__)
      if (path != Q8P_PORTABLE) continue;
#endif
#if !defined(__AVX512F__)
      if (path == Q8P_VNNI512 || path == Q8P_AMX) continue;
#endif
#if defined(__AVX2__)
      if (path == Q8P_AVXVNNI && !q8p_cpu_avxvnni()) continue;
#endif
      q8p_forced = path;
      for (int run = 0; run < 4; run++) {
        int ntasks = run & 1 ? 5 : 1, pad = run & 2 ? mpad : 0;
        for (int i = 0; i < M * N; i++) y[i] = 0.25f * i;  // accumulate onto this
        q8p_args a = {M, N, K, ntasks, 1, pw, qx, dx, nc, y, pad};
        for (int k = 0; k < ntasks; k++) q8_task(&a, k, 0);
        if (path == Q8P_PORTABLE && run == 0) memcpy(ref, y, sizeof(float) * M * N);
        else if (memcmp(ref, y, sizeof(float) * M * N)) {
          printf("q8 path %s, %d tasks, rows padded to %d: not bit-identical to the portable path\n", q8p_path_names[path], ntasks, pad);
          fails++;
        }
      }
      printf("q8  M=%d N=%d K=%d path %s: bit-identical to portable\n", M, N, K, q8p_path_names[path]);
    }
    q8p_forced = -1;
    // the bound, against the double product of x (not rounded) and the decoded weights
    double worst = 0;
    for (int m = 0; m < M; m++) for (int j = 0; j < N; j++) {
      double e = 0, mag = 0, bound = 0;
      for (int b = 0; b < nb; b++) {
        double sw = 0;
        for (int k = b * 32; k < b * 32 + 32; k++) {
          e += (double)x[m * K + k] * wd[j * K + k];
          mag += fabs((double)x[m * K + k] * wd[j * K + k]);
          sw += fabs(wd[j * K + k]);
        }
        bound += dx[m * nb + b] / 2 * sw;
      }
      double got = (double)ref[m * N + j] - 0.25f * (m * N + j);
      double err = fabs(got - e), lim = bound + 1e-5 * mag + 1e-6 * 0.25 * (m * N + j);
      if (err > lim) { if (fails < 20) printf("q8 [%d,%d] error %.3e > bound %.3e\n", m, j, err, lim); fails++; }
      if (bound > 0 && err / bound > worst) worst = err / bound;
    }
    for (int i = 0; i < M * N; i++) { uint32_t u; memcpy(&u, &ref[i], 4); hash = (hash ^ u) * 1099511628211ull; }
    printf("q8  M=%d N=%d K=%d largest error / bound %.3f\n", M, N, K, worst);
    free(pw), free(ref), free(qx), free(dx), free(nc), free(x), free(y), free(wd);
  }
  printf("q8 best path here: %s\n", q8p_path_names[q8p_best_path()]);
  printf("q8 hash %016llx\n", (unsigned long long)hash);
  printf("%s\n", fails ? "FAIL" : "ok");
  return fails != 0;
}

// Standalone check of native/gemv_quant.c compiled for one ISA level, without Node: the addon
// is built for this machine's best level only, so test/gemv-quant-isa.test.ts compiles this
// file at AVX-512, AVX2 (haswell) and baseline x86-64 (the portable path) and runs it.
// Random x and stored weights; the F16/Q8_0 products and dequantizers against a double
// reference on the decoded weights (|Δ| ≤ 1e-5 relative to Σ|x·w|). The Node-API functions
// the wrappers call are stubbed in napi_stubs.c (never called here). Exits 1 on failure.
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
int main(void) {
  pool_init(2);
  int fails = 0;
  int shapes[][3] = {{1, 37, 96}, {2, 65, 160}, {3, 9, 64}, {5, 130, 32}, {8, 77, 224}, {1, 300, 512}, {4, 33, 70}};
  unsigned s = 1;
  for (int t = 0; t < 7; t++) {
    int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
    float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * N), *wd = malloc(sizeof(float) * N * K);
    uint16_t *h = malloc(2 * N * K);
    uint8_t *q = malloc((size_t)N * K / 32 * 34 + 34);
    for (int i = 0; i < M * K; i++) { s = s * 1664525 + 1013904223; x[i] = (s / 4294967296.0f) * 2 - 1; }
    for (int i = 0; i < N * K; i++) { s = s * 1664525 + 1013904223; h[i] = f2h(((s / 4294967296.0f) * 2 - 1) * 0.2f); }
    for (int q8 = 0; q8 < 2; q8++) {
      if (q8 && K % 32) continue;
      if (q8) for (int b = 0; b < N * K / 32; b++) {
        s = s * 1664525 + 1013904223; uint16_t d = f2h(0.001f + (s % 1000) * 1e-5f); memcpy(q + b * 34, &d, 2);
        for (int i = 0; i < 32; i++) { s = s * 1664525 + 1013904223; q[b * 34 + 2 + i] = (uint8_t)(int8_t)((int)(s % 255) - 127); }
      }
      deq_args da = {q8 ? (void *)q : (void *)h, wd, (int64_t)N * K, 3};
      for (int k = 0; k < 3; k++) (q8 ? q8_deq_task : f16_deq_task)(&da, k, 0);
      // reference decode
      for (int i = 0; i < N * K; i++) {
        float ref = q8 ? half_to_float(*(uint16_t *)(q + i / 32 * 34)) * (int8_t)q[i / 32 * 34 + 2 + i % 32] : half_to_float(h[i]);
        if (wd[i] != ref) { printf("deq %s mismatch at %d: %g vs %g\n", q8 ? "q8" : "f16", i, wd[i], ref); fails++; break; }
      }
      qgemv_args a = {M, N, K, 3, 0, x, q8 ? (void *)q : (void *)h, y};
      for (int k = 0; k < 3; k++) (q8 ? q8_task : f16_task)(&a, k, 0);
      double worst = 0;
      for (int m = 0; m < M; m++) for (int j = 0; j < N; j++) {
        double e = 0, mag = 0;
        for (int k = 0; k < K; k++) { e += (double)x[m * K + k] * wd[j * K + k]; mag += fabs((double)x[m * K + k] * wd[j * K + k]); }
        double r = fabs(y[m * N + j] - e) / (mag + 1e-30);
        if (r > worst) worst = r;
      }
      if (worst > 1e-5) fails++;
      printf("%s M=%d N=%d K=%d worst rel %.2e\n", q8 ? "q8 " : "f16", M, N, K, worst);
    }
  }
  printf("%s\n", fails ? "FAIL" : "ok");
  return fails != 0;
}

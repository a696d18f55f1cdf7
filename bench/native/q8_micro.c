// Q8_0 products of one decode shape's layers (4 C×C, 2 F×C, 1 C×F per layer) at M rows of x,
// on each dot-product path this CPU has, 1 thread, the paths interleaved round by round, best
// of R rounds (a shared machine: best-of is the least disturbed). Also the activation rounding
// alone. Not part of `npm test`; run by hand:
//   gcc -O2 -std=gnu11 -march=native -I/usr/include/node -Inative bench/native/q8_micro.c \
//     native/pool.c test/native/napi_stubs.c -o /tmp/q8_micro -lm -pthread && /tmp/q8_micro [C] [M] [R]
#include "../../native/gemv_quant.c"
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);  // CPU time of this thread: time slices lost to other processes do not count
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int C = argc > 1 ? atoi(argv[1]) : 384, M = argc > 2 ? atoi(argv[2]) : 128, R = argc > 3 ? atoi(argv[3]) : 15;
  int F = 32 * ((8 * C / 3 + 31) / 32);
  pool_init(1);
  int shapes[7][2] = {{C, C}, {C, C}, {C, C}, {C, C}, {F, C}, {F, C}, {C, F}};
  uint8_t *w[7];
  unsigned s = 7;
  for (int i = 0; i < 7; i++) {
    int N = shapes[i][0], K = shapes[i][1];
    size_t bytes = (size_t)(N + 15) / 16 * 17 * K;
    w[i] = malloc(bytes);
    for (size_t j = 0; j < bytes; j++) s = s * 1664525 + 1013904223, w[i][j] = (uint8_t)(s >> 24);
    for (int p = 0; p < (N + 15) / 16; p++)  // sane F16 scales (0.001…)
      for (int b = 0; b < K / 32 * 16; b++) ((uint16_t *)(w[i] + (size_t)p * 17 * K + 16 * K))[b] = 0x1419;
  }
  float *x = malloc(sizeof(float) * M * F), *y = malloc(sizeof(float) * M * F);
  for (int i = 0; i < M * F; i++) x[i] = cosf(i * 0.11f);
  int paths[] = {Q8P_VNNI512, Q8P_AMX};
  const int np = q8p_best_path() == Q8P_AMX ? 2 : 1;
  double best[3] = {1e9, 1e9, 1e9};
  for (int r = 0; r < R; r++) {
    for (int pi = 0; pi < np; pi++) {
      q8p_forced = paths[pi];
      double t0 = now();
      for (int i = 0; i < 7; i++) q8_gemm(M, shapes[i][0], shapes[i][1], x, w[i], 0, y);
      double t = now() - t0;
      if (t < best[pi]) best[pi] = t;
    }
    // the activation rounding of the same products alone
    int8_t *qx = malloc((size_t)M * F);
    float *dx = malloc(sizeof(float) * M * F / 32);
    int32_t *nc = malloc(sizeof(int32_t) * M * F / 32);
    double t0 = now();
    for (int i = 0; i < 7; i++) {
      int K = shapes[i][1];
      for (int m = 0; m < M; m++) q8_quantize_row(x + (size_t)m * K, K, qx + (size_t)m * K, dx + (size_t)m * (K / 32), nc + (size_t)m * (K / 32));
    }
    double t = now() - t0;
    if (t < best[2]) best[2] = t;
    free(qx), free(dx), free(nc);
  }
  double macs = 0;
  for (int i = 0; i < 7; i++) macs += (double)M * shapes[i][0] * shapes[i][1];
  printf("C=%d F=%d M=%d, one layer's 7 products, best of %d, 1 thread\n", C, F, M, R);
  printf("  avx512-vnni: %.3f ms (%.0f GMAC/s)\n", best[0] * 1e3, macs / best[0] * 1e-9);
  if (np > 1) printf("  amx-int8:    %.3f ms (%.0f GMAC/s), %.2fx vnni\n", best[1] * 1e3, macs / best[1] * 1e-9, best[0] / best[1]);
  printf("  activation rounding alone: %.3f ms\n", best[2] * 1e3);
  return 0;
}

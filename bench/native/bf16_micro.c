// The AMX bf16 GEMM (native/gemm_bf16.c) against what this core's tile unit can do while
// memory traffic runs beside it. Not part of `npm test` or `npm run bench`; run by hand on a
// CPU with AMX-BF16:
//   gcc -O3 -std=gnu11 -march=sapphirerapids -I/usr/include/node -Inative bench/native/bf16_micro.c \
//     native/pool.c test/native/napi_stubs.c -o /tmp/bf16_micro -lm -pthread && /tmp/bf16_micro [R] [L]
//
// Part 1: gemm_bf16() on the nine "shakespeare" layer shapes (N = B·T = 16,384 rows; NT y = x·Wᵀ,
// NN dX = dY·W, TN dW += dYᵀ·X), 1 thread, CPU time of the thread (time slices lost to other
// processes do not count), best of R.
//
// Part 2: a synthetic tile loop shaped like y = x·Wᵀ at width 384 (32 x 32 blocks of four
// accumulator tiles, B's packed 288 KiB read from L2, A's 24 KiB panel from L1, 12 steps of
// 4 TDPBF16PS per block, each block stored to an L1 scratch), alone and with L cache lines
// per tile step of (a) sequential loads from a 64 MiB array, (b) non-temporal stores to one,
// (c) both: the traffic the real product needs (L = 6 at width 384: op(A) read once, C
// written once, at the tiles' full rate). The variants run interleaved, round by round, best
// of R. The gap between "alone" and "(c)" is what interleaving float32 operand and result
// traffic with the tiles costs on this core, whatever the kernel does around it.
//
// Part 3: the ceiling of any AMX kernel on each layer shape, as a ladder. The same tile loop
// (A's 32-row panel of one K slice from L1, 32 x 32 blocks of four accumulator tiles, B's
// packed blocks of the shape's width N from L2), with one cost added per rung:
//   regs           gemm_bf16.c's peak loop: 4 TDPBF16PS per step on tiles never reloaded
//   +tile loads    A from L1, B from L2; no C leaves the tiles
//   +C out         the four C tiles stored (to an L1 scratch) after every K slice
//   +f32 traffic   the least memory traffic the product needs, spread evenly over its tile
//                  steps: op(A) and op(B) read once and C written once (non-temporal) as
//                  float32; per 32 x 32 x 32 step, 2048/N lines read and 2048/K written for
//                  NT/NN (op(B) is the weight, in L2), 2048·(M+N)/(M·N) read for TN
//   +bf16 traffic  the same with every activation bf16 (half the lines): the most that bf16
//                  activations, a change to the model's data layout, could allow
// Each rung takes the best of slice depths kc = 128, 192, 256, 384, 512 (capped at K); a real
// kernel with K > kc must also reload C between slices, which is not counted.
// Nothing converts or packs: every rung is an upper bound on a real kernel with that traffic.
#include "../../native/gemm_bf16.c"
#include <stdio.h>

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#if defined(__AVX512F__)
static float *stream_src, *stream_dst;

// The tile loop of parts 2 and 3: `blocks` column blocks of B (N/32) of `steps` K steps each,
// over and over, `total_steps` steps in all. store_every: store the C tiles after that many
// steps (0: never). rd16/wr16: memory lines read / written per 16 tile steps (spread evenly).
AMX_TARGET static double ladder(int blocks, int steps, int store_every, int rd16, int wr16, long total_steps) {
  static _Alignas(64) uint32_t Ap[32 * 512];
  static _Alignas(64) float S[32 * 48];
  static uint32_t *Bp;
  if (!Bp) {
    Bp = aligned_alloc(64, 32 * 512 * 4 * 32);  // up to 32 blocks of 32 columns x K 1024
    for (int i = 0; i < 32 * 512 * 32; i++) Bp[i] = 0x3c003c00u + (uint32_t)(i % 7);
    for (int i = 0; i < 32 * 512; i++) Ap[i] = 0x3c003c00u + (uint32_t)(i % 5);
  }
  const int kp = steps * 16;  // pair words per A row (steps x 32 bf16 / 2)
  size_t sp = 0, dp = 0;
  long n = 0, rd_acc = 0, wr_acc = 0;
  __m512 acc = _mm512_setzero_ps();
  amx_begin();
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  double t0 = cpu_now();
  while (n < total_steps)
    for (int b = 0; b < blocks && n < total_steps; b++) {
      const uint32_t *bp = Bp + (size_t)b * 32 * kp;
      for (int k = 0; k < steps; k++, n++) {
        _tile_loadd(4, Ap + k * 16, kp * 4);
        _tile_loadd(6, bp + k * 512, 128);
        _tile_loadd(7, bp + k * 512 + 16, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, Ap + 16 * kp + k * 16, kp * 4);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        for (rd_acc += rd16; rd_acc >= 16; rd_acc -= 16, sp = (sp + 16) & ((16u << 20) - 1))
          acc = _mm512_add_ps(acc, _mm512_load_ps(stream_src + sp));
        for (wr_acc += wr16; wr_acc >= 16; wr_acc -= 16, dp = (dp + 16) & ((16u << 20) - 1))
          _mm512_stream_ps(stream_dst + dp, _mm512_load_ps(S + (dp % (32 * 48))));
        if (store_every && (n + 1) % store_every == 0) {
          _tile_stored(0, S, 48 * 4);
          _tile_stored(1, S + 16, 48 * 4);
          _tile_stored(2, S + 16 * 48, 48 * 4);
          _tile_stored(3, S + 16 * 48 + 16, 48 * 4);
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        }
      }
    }
  _tile_stored(0, S, 48 * 4);
  _mm_sfence();
  double t = cpu_now() - t0;
  amx_end();
  S[0] += _mm512_reduce_add_ps(acc);
  return 32768.0 * 2 * total_steps / t / 1e9;
}

// The register-only rung: gemm_bf16.c's own peak loop (4 TDPBF16PS a step, tiles never reloaded).
AMX_TARGET static double regs_rung(long total_steps) {
  amx_begin();
  double t0 = cpu_now();
  peak_sink[0] = amx_peak_loop(total_steps);
  double t = cpu_now() - t0;
  amx_end();
  return 32768.0 * 2 * total_steps / t / 1e9;
}
#endif

int main(int argc, char **argv) {
  int R = argc > 1 ? atoi(argv[1]) : 15, L = argc > 2 ? atoi(argv[2]) : 6;
  pool_init(1);
  printf("gemmBf16 path: %s; one-core peaks: AMX %.0f GFLOP/s\n", have_amx() ? "AMX" : have_dp() ? "VDPBF16PS" : "fallback",
         amx_peak_gflops());
  const int rows = 16384;
  struct {
    const char *name;
    int ta, tb, M, N, K;
    float beta;
  } cs[] = {{"q/k/v/o NT", 0, 1, rows, 384, 384, 0}, {"q/k/v/o NN", 0, 0, rows, 384, 384, 0}, {"q/k/v/o TN", 1, 0, 384, 384, rows, 1},
            {"gate/up NT", 0, 1, rows, 1024, 384, 0}, {"gate/up NN", 0, 0, rows, 384, 1024, 0}, {"gate/up TN", 1, 0, 1024, 384, rows, 1},
            {"down NT", 0, 1, rows, 384, 1024, 0},     {"down NN", 0, 0, rows, 1024, 384, 0},     {"down TN", 1, 0, 384, 1024, rows, 1}};
  printf("part 1: gemm_bf16, 1 thread, best of %d (GFLOP/s)\n", R);
  for (int c = 0; c < 9; c++) {
    int M = cs[c].M, N = cs[c].N, K = cs[c].K;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    memset(C, 0, sizeof(float) * M * N);
    double best = 1e30;
    for (int r = 0; r < R; r++) {
      double t0 = cpu_now();
      gemm_bf16(cs[c].ta, cs[c].tb, M, N, K, 1.0f, A, cs[c].ta ? M : K, B, cs[c].tb ? K : N, cs[c].beta, C, N);
      double t = cpu_now() - t0;
      best = t < best ? t : best;
    }
    printf("  %-11s %5dx%5dx%5d  %6.0f\n", cs[c].name, M, N, K, 2.0 * M * N * K / best / 1e9);
    free(A), free(B), free(C);
  }
#if defined(__AVX512F__)
  if (!have_amx()) return 0;
  stream_src = aligned_alloc(64, 64u << 20);
  stream_dst = aligned_alloc(64, 64u << 20);
  memset(stream_src, 0, 64u << 20);
  memset(stream_dst, 0, 64u << 20);
  const int panels = 512;  // 16,384 rows: 24 MiB of each stream at L = 6
  double best[4] = {0, 0, 0, 0};
  for (int r = 0; r < R; r++)
    for (int mode = 0; mode < 4; mode++) {
      double g = ladder(12, 12, 12, mode & 1 ? 16 * L : 0, mode & 2 ? 16 * L : 0, (long)panels * 144);
      best[mode] = g > best[mode] ? g : best[mode];
    }
  printf("part 2: synthetic 32x32 tile loop at width 384 (B from L2), %d lines per tile step, best of %d (GFLOP/s)\n", L, R);
  printf("  tiles alone %.0f, + loads %.0f, + non-temporal stores %.0f, + both %.0f\n", best[0], best[1], best[2], best[3]);

  // Part 3: the ladder per shape (one core; % of the register-only rung's own best).
  printf("part 3: ceiling ladder per shape, 1 thread, best of %d (GFLOP/s, %% of register-only)\n", R);
  printf("  (each rung: GFLOP/s, %% of the register-only rung, and the K slice kc it was best at)\n");
  printf("  %-11s %6s %16s %16s %16s %16s\n", "shape", "regs", "+tile loads", "+C out", "+f32 traffic", "+bf16 traffic");
  for (int c = 0; c < 9; c++) {
    int M = cs[c].M, N = cs[c].N, K = cs[c].K, tn = cs[c].ta;
    // memory lines per 16 steps (the product has M·N·K / 32768 steps)
    double per_step_rd = tn ? 2048.0 * (M + N) / ((double)M * N) : 2048.0 / N;
    double per_step_wr = tn ? 0 : 2048.0 / K;
    int rd16 = (int)(per_step_rd * 16 + 0.5), wr16 = (int)(per_step_wr * 16 + 0.5);
    long total = 16L * 12 * 12 * 16;  // ~37k steps, ~30 ms at the peak
    // The tile loop's geometry: A's panel is 32 rows of a K slice of kc (it stays in L1), B's
    // blocks cover the N columns (from L2), C leaves the tiles after each slice (a kernel
    // with K > kc also reloads it: not counted). Each rung takes its best kc.
    static const int kcs[] = {128, 192, 256, 384, 512};
    double b[5] = {0, 0, 0, 0, 0};
    int bk[5] = {0, 0, 0, 0, 0};
    for (int r = 0; r < R; r++)
      for (int q = 0; q < 5; q++) {
        int kc = kcs[q] < K ? kcs[q] : K, steps = kc / 32, blocks = N / 32;
        double g[5] = {regs_rung(total), ladder(blocks, steps, 0, 0, 0, total), ladder(blocks, steps, steps, 0, 0, total),
                       ladder(blocks, steps, steps, rd16, wr16, total), ladder(blocks, steps, steps, rd16 / 2, wr16 / 2, total)};
        for (int i = 0; i < 5; i++)
          if (g[i] > b[i]) b[i] = g[i], bk[i] = kc;
      }
    printf("  %-11s %6.0f %7.0f %3.0f%% %3d %7.0f %3.0f%% %3d %7.0f %3.0f%% %3d %7.0f %3.0f%% %3d\n", cs[c].name, b[0], b[1], 100 * b[1] / b[0],
           bk[1], b[2], 100 * b[2] / b[0], bk[2], b[3], 100 * b[3] / b[0], bk[3], b[4], 100 * b[4] / b[0], bk[4]);
  }
#endif
  return 0;
}

// GEMM: C = alpha · op(A) · op(B) + beta · C, row-major, single precision.
//
// Shapes: op(A) (M, K), op(B) (K, N), C (M, N).
//   A is (M, K) with row stride lda, or (K, M) when transA; B is (K, N) with row stride ldb,
//   or (N, K) when transB. Training uses y = x·Wᵀ (NT), dX = dY·W (NN), dW += dYᵀ·X (TN).
//
// Structure (GotoBLAS / BLIS): for each KC-deep slice of K, op(B) is packed into NR-wide
// micro-panels and op(A) into MR-tall ones, so the micro-kernel (gemm_kernel.h) reads both
// with unit stride whatever the transposes. Loops:
//   js (N, step NS) → groups of KC-deep K slices (up to 4 MiB packed): pack op(B), shared →
//   tasks over row chunks of C (and column chunks when M is small), each:
//     pc (the group's slices): pack its op(A) rows (mc, kc) → jc (step NC) →
//       ir (step MR) → jr (step NR): micro-kernel
// An A micro-panel (MR x KC, 24 KiB at 12 x 512) stays in L1 while the jr loop streams a
// (KC, NC) block of packed B (512 KiB) from L2; the whole packed B lives in L3.
// Edge tiles are computed into a scratch tile and merged.
//
// Threads: packing B is split over the pool, then the row chunks (about 4 per thread,
// claimed dynamically, so a core slowed by another process just takes fewer) each pack
// their own A into that thread's buffer and run through the group's K slices: two
// synchronizations per group rather than per slice. Buffers are allocated once, 64-byte aligned.
// Products below GEMM_MT_FLOPS run on the calling thread alone (waking a thread would cost
// more than it saves). M <= 8 (and N = 1, transposed) goes to the matrix-vector path in
// gemm_small.c, as do tiny products whose packing would cost more than their arithmetic.
//
// Re-entrancy: gemm() may be called from C on the main thread (it uses pool_run); it must
// not be called from inside a pool task (the pool does not nest).
#include "gemm.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gemm_kernel.h"
#include "napi_util.h"
#include "pool.h"

#define MC (MR * 128)               // rows of op(A) packed at once (1536 at MR = 12)
#ifndef GEMM_MT_FLOPS
#define GEMM_MT_FLOPS (1L << 18)    // below ~0.25 MFLOP (64^3) a second thread does not pay
#endif
#ifndef GEMM_TINY_FLOPS
#define GEMM_TINY_FLOPS (1L << 19)  // up to 64^3, B (K, N), N % 16 == 0: no packing
#endif
#define GEMM_MT_SMALL (1L << 15)    // M <= 8: threads once B has 32 Ki elements (128 KiB)
#if defined(__AVX512F__) && !defined(GEMM_SMALL_NT_M)
// With AVX-512, gemm_small reduces 16 outputs per shuffle tree (tile() in gemm_small.c, W
// prefetched a block ahead), which beats packing for any W up to 16 rows of x, and up to 32
// when K ≥ 256. Measured, 1 thread, old and new interleaved (docs/benchmarks.md, Serving):
// 16 rows of 1024 × 384 2.0×, 384 × 1024 1.7×, 128 × 352 1.7× the old paths; at K = 128 16
// rows ran level with the blocked path and 24–32 rows at 0.7× of it, so those stay blocked.
#define GEMM_SMALL_NT_M 32
#define GEMM_SMALL_NT_MIN 0
#define GEMM_SMALL_NT_OK(M, N, K) ((M) <= 16 || (K) >= 256)
#endif
#ifndef GEMM_SMALL_NT_M
// y = x·Wᵀ with up to GEMM_SMALL_NT_M rows (batched decoding: one row per sequence) and a W
// of at least GEMM_SMALL_NT_MIN elements (past L2) also streams W in place, 8 rows at a time
// per L1-sized block of W: packing such a W for the blocked path costs as much as the product
// (measured, 1 thread, interleaved: 12-16 rows of a 1024 x 384 or 384 x 1024 W 1.5-3.0x
// faster streamed). A W that fits in L2 stays blocked (the 4 x 128 model's 352 x 128 and
// 1024 x 128: streamed was 0.2-0.9x, its per-element horizontal sums dominate at K = 128).
#define GEMM_SMALL_NT_M 24
#endif
#ifndef GEMM_SMALL_NT_MIN
#define GEMM_SMALL_NT_MIN (1L << 18)
#endif
#ifndef GEMM_SMALL_NT_OK
#define GEMM_SMALL_NT_OK(M, N, K) 1
#endif
#define MAX_POOL 256

typedef struct {
  int transA, transB, M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} gemm_args;

// The simplest correct GEMM (float64 sums): the reference the fast paths were checked against,
// and the fallback when the packing buffers cannot be allocated.
void gemm_naive(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++)
        s += (double)(transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
             (transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
      float *c = &C[(size_t)i * ldc + j];
      *c = alpha * (float)s + (beta == 0 ? 0 : beta * *c);
    }
}

// ---- packing buffers: allocated once at their largest size, reused by every call ----

static float *buf_a[MAX_POOL];  // per-thread packed A blocks, (MC, KC) each

static float *thread_buf(float **slot, size_t floats) {
  if (!*slot) *slot = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
  return *slot;
}

// ---- packing ----
// Packing transposes where the stored layout runs the other way: (MR rows of A along k) and
// (NR rows of W along k). With AVX-512 that goes through 16 x 16 register transposes.

#if defined(__AVX512F__)
#include "transpose16.h"

// dst[(k + t) * stride + i] = rows[i][k + t] for i < n (<= 16), t < 16; returns k advanced
// past the whole 16-blocks of [k, kc).
static int interleave16(const float *const *rows, int n, int k, int kc, float *dst, int stride) {
  __mmask16 keep = (__mmask16)((1u << n) - 1);
  for (; k + 16 <= kc; k += 16) {
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < n ? _mm512_loadu_ps(rows[i] + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int t = 0; t < 16; t++) _mm512_mask_storeu_ps(dst + (size_t)(k + t) * stride, keep, r[t]);
  }
  return k;
}
#endif

// op(A) block (mc, kc) at (i0, k0) -> MR-tall panels, (kc, MR) each.
static void pack_a(const gemm_args *g, int i0, int mc, int k0, int kc, float *restrict Ap) {
  for (int ip = 0; ip < mc; ip += MR, Ap += (size_t)MR * kc) {
    int m = mc - ip < MR ? mc - ip : MR;
    if (g->transA) {  // A stored (K, M): each k gives m contiguous values
      const float *src = g->A + (size_t)k0 * g->lda + i0 + ip;
      if (m == MR) {
        for (int k = 0; k < kc; k++, src += g->lda)
          for (int i = 0; i < MR; i++) Ap[(size_t)k * MR + i] = src[i];
      } else {
        for (int k = 0; k < kc; k++, src += g->lda)
          for (int i = 0; i < MR; i++) Ap[(size_t)k * MR + i] = i < m ? src[i] : 0;
      }
    } else {  // A stored (M, K): interleave m rows
      const float *rows[MR];
      for (int i = 0; i < MR; i++) rows[i] = g->A + (size_t)(i0 + ip + (i < m ? i : 0)) * g->lda + k0;
      int k = 0;
      if (m == MR) {
#if defined(__AVX512F__) && MR <= 16
        k = interleave16(rows, MR, 0, kc, Ap, MR);
#endif
        for (; k < kc; k++)
          for (int i = 0; i < MR; i++) Ap[(size_t)k * MR + i] = rows[i][k];
      } else {
        for (; k < kc; k++)
          for (int i = 0; i < MR; i++) Ap[(size_t)k * MR + i] = i < m ? rows[i][k] : 0;
      }
    }
  }
}

// op(B) block (kc, nc) at (k0, j0) -> NR-wide panels, (kc, NR) each.
static void pack_b(const gemm_args *g, int k0, int kc, int j0, int nc, float *restrict Bp) {
  for (int jp = 0; jp < nc; jp += NR, Bp += (size_t)NR * kc) {
    int n = nc - jp < NR ? nc - jp : NR;
    if (!g->transB) {  // B stored (K, N): each k gives n contiguous values
      const float *src = g->B + (size_t)k0 * g->ldb + j0 + jp;
      if (n == NR) {
        for (int k = 0; k < kc; k++, src += g->ldb)
          for (int j = 0; j < NR; j++) Bp[(size_t)k * NR + j] = src[j];
      } else {
        for (int k = 0; k < kc; k++, src += g->ldb)
          for (int j = 0; j < NR; j++) Bp[(size_t)k * NR + j] = j < n ? src[j] : 0;
      }
    } else {  // B stored (N, K): transpose n rows into the panel
      const float *src = g->B + (size_t)(j0 + jp) * g->ldb + k0;
      int k = 0;
#if defined(__AVX512F__) && NR % 16 == 0
      if (n == NR) {
        for (int q = 0; q < NR; q += 16) {
          const float *rows[16];
          for (int j = 0; j < 16; j++) rows[j] = src + (size_t)(q + j) * g->ldb;
          k = interleave16(rows, 16, 0, kc, Bp + q, NR);
        }
      }
#endif
      if (n < NR) memset(Bp, 0, (size_t)NR * kc * sizeof(float));
      for (int j = 0; j < n; j++)
        for (int kk = k; kk < kc; kk++) Bp[(size_t)kk * NR + j] = src[(size_t)j * g->ldb + kk];
    }
  }
}

// ---- the driver: op(B) packed once for all K and shared, tasks over blocks of C ----

#define NS (NC * 16)           // columns of C per block (4096 at NC = 256)
#define BS_FLOATS (1L << 20)  // packed op(B) per synchronization: 4 MiB, a hot part of L3

typedef struct {
  const gemm_args *g;
  int js, ns, nsp;      // column block [js, js + ns) of C; nsp = ns rounded up to NR
  int kstep, slices;    // K in `slices` slices of kstep (the last may be thinner)
  int q0, nq;           // the slices packed now: [q0, q0 + nq)
  float *Bs;            // slice q at Bs + (q - q0) * kstep * nsp: NR-wide panels, (kc, NR) each
  int npack;            // packing tasks per slice
  int mchunk, nchunk;   // one compute task covers mchunk rows x nchunk columns
  int mt, nt;           // compute tasks along M and along N
} plan;

static void pack_b_task(void *ctx, int task, int thread) {
  (void)thread;
  const plan *s = ctx;
  int q = s->q0 + task / s->npack, part = task % s->npack;
  int pc = q * s->kstep, kc = s->g->K - pc < s->kstep ? s->g->K - pc : s->kstep;
  int panels = s->nsp / NR;
  int p0 = (int)((long)panels * part / s->npack), p1 = (int)((long)panels * (part + 1) / s->npack);
  int j1 = p1 * NR < s->ns ? p1 * NR : s->ns;
  float *Bq = s->Bs + (size_t)(q - s->q0) * s->kstep * s->nsp;
  if (p0 * NR < j1) pack_b(s->g, pc, kc, s->js + p0 * NR, j1 - p0 * NR, Bq + (size_t)p0 * NR * kc);
}

static void compute_task(void *ctx, int task, int thread) {
  const plan *s = ctx;
  const gemm_args *g = s->g;
  int i0 = (task / s->nt) * s->mchunk, j0 = (task % s->nt) * s->nchunk;  // j relative to js
  int i1 = i0 + s->mchunk < g->M ? i0 + s->mchunk : g->M;
  int j1 = j0 + s->nchunk < s->ns ? j0 + s->nchunk : s->ns;
  if (i0 >= i1 || j0 >= j1) return;
  int mc = i1 - i0;
  float *Ap = buf_a[thread];
  _Alignas(64) float tile[MR * NR];
  for (int q = s->q0; q < s->q0 + s->nq; q++) {  // this block of C stays with this thread
    int pc = q * s->kstep, kc = g->K - pc < s->kstep ? g->K - pc : s->kstep;
    float beta = q == 0 ? g->beta : 1.0f;  // later K slices accumulate onto the first
    const float *Bq = s->Bs + (size_t)(q - s->q0) * s->kstep * s->nsp;
    pack_a(g, i0, mc, pc, kc, Ap);
    for (int jc = j0; jc < j1; jc += NC) {  // (kc, NC) of Bq stays in L2 over the ir loop
      int nc = j1 - jc < NC ? j1 - jc : NC;
      for (int ir = 0; ir < mc; ir += MR) {  // one A micro-panel stays in L1 over the jr loop
        int m = mc - ir < MR ? mc - ir : MR;
        const float *a = Ap + (size_t)ir * kc;
        for (int jr = 0; jr < nc; jr += NR) {
          int n = nc - jr < NR ? nc - jr : NR;
          const float *b = Bq + (size_t)(jc + jr) * kc;
          float *c = g->C + (size_t)(i0 + ir) * g->ldc + s->js + jc + jr;
          if (m == MR && n == NR) {
            ukernel(kc, a, b, c, g->ldc, g->alpha, beta);
          } else {
            ukernel(kc, a, b, tile, NR, 1.0f, 0.0f);
            for (int i = 0; i < m; i++)
              for (int j = 0; j < n; j++) {
                float *d = c + (size_t)i * g->ldc + j;
                *d = g->alpha * tile[i * NR + j] + (beta == 0 ? 0 : beta * *d);
              }
          }
        }
      }
    }
  }
}

static void run_tasks(pool_task_fn fn, void *ctx, int ntasks, int threads) {
  if (threads > 1 && ntasks > 1)
    pool_run(fn, ctx, ntasks);
  else
    for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
}

static int round_up(int x, int q) { return (x + q - 1) / q * q; }

// The blocked GEMM on `threads` threads; returns 0 when the packing buffers could not be had.
static int gemm_blocked(const gemm_args *g, int threads) {
  static float *Bs;
  static size_t bs_floats;
  plan s = {.g = g};
  // equal K slices (1152 = 3 x 384, not 512 + 512 + 128): a thin last slice would pay a
  // full pass over C for little arithmetic
  s.slices = (g->K + KC - 1) / KC;
  s.kstep = round_up((g->K + s.slices - 1) / s.slices, 16);
  if (s.kstep > KC) s.kstep = KC;
  s.slices = (g->K + s.kstep - 1) / s.kstep;
  // K slices packed per synchronization: as many as fit BS_FLOATS (at least one), so that
  // a deep K does not cost two waits per slice, while the packed B stays hot in L3
  int ncols = g->N < NS ? g->N : NS;
  long per = BS_FLOATS / ((long)s.kstep * round_up(ncols, NR));
  int group = per < 1 ? 1 : per > s.slices ? s.slices : (int)per;
  size_t need = (size_t)group * s.kstep * round_up(ncols, NR);
  if (need > bs_floats) {
    free(Bs);
    Bs = aligned_alloc(64, need * sizeof(float));
    bs_floats = Bs ? need : 0;
  }
  for (int t = 0; t < threads; t++) thread_buf(&buf_a[t], (size_t)MC * KC);
  if (!Bs) return 0;
  for (int t = 0; t < threads; t++)
    if (!buf_a[t]) return 0;
  s.Bs = Bs;
  // Several tasks per thread (claimed dynamically) keep both cores busy even when another
  // process takes part of one; below that, cut along N as well.
  int want = threads == 1 ? 1 : 4 * threads;
  for (s.js = 0; s.js < g->N; s.js += ncols) {
    s.ns = g->N - s.js < ncols ? g->N - s.js : ncols;
    s.nsp = round_up(s.ns, NR);
    int mchunk = round_up((g->M + want - 1) / want, MR);
    s.mchunk = mchunk > MC ? MC : mchunk;
    s.mt = (g->M + s.mchunk - 1) / s.mchunk;
    int nt = s.mt >= want ? 1 : (want + s.mt - 1) / s.mt;
    int panels = s.nsp / NR;
    if (nt > panels) nt = panels;
    s.nchunk = round_up((s.ns + nt - 1) / nt, NR);
    s.nt = (s.ns + s.nchunk - 1) / s.nchunk;
    s.npack = threads < panels ? threads : panels;
    for (s.q0 = 0; s.q0 < s.slices; s.q0 += group) {
      s.nq = s.slices - s.q0 < group ? s.slices - s.q0 : group;
      run_tasks(pack_b_task, &s, s.nq * s.npack, threads);
      run_tasks(compute_task, &s, s.mt * s.nt, threads);
    }
  }
  return 1;
}

void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0) {  // C = beta · C (beta 0 clears, NaNs included)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float *c = &C[(size_t)i * ldc + j];
        *c = beta == 0 ? 0 : beta * *c;
      }
    return;
  }
  if (M <= 8 || (transB && M <= GEMM_SMALL_NT_M && (double)N * K >= GEMM_SMALL_NT_MIN && GEMM_SMALL_NT_OK(M, N, K))) {  // bound by streaming B: worth a second thread once B is not tiny
    int threads = (double)N * K < GEMM_MT_SMALL ? 1 : pool_threads();
    gemm_small(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads);
    return;
  }
  if (N == 1 && ldc == 1) {  // a column: the transposed product C^T = op(B)^T op(A)^T has M' = 1
    int threads = (double)M * K < GEMM_MT_SMALL ? 1 : pool_threads();
    gemm_small(!transB, !transA, 1, M, K, alpha, B, ldb, A, lda, beta, C, M, threads);
    return;
  }
  double flops = 2.0 * M * N * K;
  if (flops <= GEMM_TINY_FLOPS && !transB && N % 16 == 0) {  // packing costs more than it saves
    // (gemm_small.c, 8 rows at a time; whole vectors only, and no horizontal sums)
    gemm_small(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
    return;
  }
  int threads = flops < GEMM_MT_FLOPS ? 1 : pool_threads();
  gemm_args g = {transA, transB, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  if (!gemm_blocked(&g, threads))  // out of memory for the packing buffers: the slow path
    gemm_naive(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ---- machine peak: independent FMA chains ----

#define PEAK_ITERS 20000000L

static void peak_task(void *ctx, int task, int thread) {
  (void)task;
  (void)thread;
  float *sink = ctx;
#if defined(__AVX512F__)
  __m512 x[12], m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 12; i++) x[i] = _mm512_set1_ps((float)i);
  for (long n = 0; n < PEAK_ITERS; n++)
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) x[i] = _mm512_fmadd_ps(x[i], m, a);
  for (int i = 1; i < 12; i++) x[0] = _mm512_add_ps(x[0], x[i]);
  sink[task] = _mm512_reduce_add_ps(x[0]);
#else
  // 12 chains of 16 lanes; the compiler maps them onto whatever vectors it has.
  float x[12][16];
  for (int i = 0; i < 12; i++)
    for (int l = 0; l < 16; l++) x[i][l] = (float)i;
  for (long n = 0; n < PEAK_ITERS; n++)
    for (int i = 0; i < 12; i++)
      for (int l = 0; l < 16; l++) x[i][l] = x[i][l] * 0.999999f + 1e-7f;
  float s = 0;
  for (int i = 0; i < 12; i++)
    for (int l = 0; l < 16; l++) s += x[i][l];
  sink[task] = s;
#endif
}

// Peak FP32 GFLOP/s of one core (12 x 16 lanes x 2 FLOP per step), on the calling thread:
// the machine's peak is this times the cores, and measuring one at a time is not fooled by
// another process holding the other core.
static float peak_sink[1];  // the result goes somewhere visible, so the loop is not dropped

static double gemm_peak_gflops(void) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  peak_task(peak_sink, 0, 0);
  __asm__ __volatile__("" : : "r"(peak_sink) : "memory");
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  return PEAK_ITERS * 12 * 16 * 2 / s / 1e9;
}

// ---- Node-API ----

// gemm(transA, transB, M, N, K, alpha, A, B, beta, C): contiguous row-major operands.
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  ARGS("gemm", 10);
  bool ta, tb;
  int64_t M, N, K;
  double alpha, beta;
  float *A, *B, *C;
  if (!get_bool(env, argv[0], "gemm", "transA", &ta) || !get_bool(env, argv[1], "gemm", "transB", &tb) ||
      !get_int(env, argv[2], "gemm", "M", &M) || !get_int(env, argv[3], "gemm", "N", &N) ||
      !get_int(env, argv[4], "gemm", "K", &K) || !get_num(env, argv[5], "gemm", "alpha", &alpha) ||
      !get_f32(env, argv[6], "gemm", "A", MUL2(M, K), &A) || !get_f32(env, argv[7], "gemm", "B", MUL2(K, N), &B) ||
      !get_num(env, argv[8], "gemm", "beta", &beta) || !get_f32(env, argv[9], "gemm", "C", MUL2(M, N), &C))
    return NULL;
  if (M > INT32_MAX / 2 || N > INT32_MAX / 2 || K > INT32_MAX / 2) {
    throw_err(env, "gemm", "M, N and K must each be below 2^30");
    return NULL;
  }
  gemm(ta, tb, (int)M, (int)N, (int)K, (float)alpha, A, ta ? (int)M : (int)K, B, tb ? (int)K : (int)N,
       (float)beta, C, (int)N);
  return NULL;
}

// gemmPeakGflops(): measured FP32 FMA throughput of one core, GFLOP/s.
static napi_value js_peak(napi_env env, napi_callback_info info) {
  (void)info;
  return make_num(env, gemm_peak_gflops());
}

// gemmInfo(): the compiled micro-kernel and blocking, for benchmarks and bug reports.
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  char s[160];
  snprintf(s, sizeof s, "%s MRxNR=%dx%d KC=%d NC=%d MC=%d", GEMM_ISA, MR, NR, KC, NC, MC);
  napi_value r;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
  return r;
}

void register_gemm(napi_env env, napi_value exports) {
  export_fn(env, exports, "gemm", js_gemm);
  export_fn(env, exports, "gemmPeakGflops", js_peak);
  export_fn(env, exports, "gemmInfo", js_info);
}

/**
 * The bf16 GEMM (gemmBf16, native/gemm_bf16.c) on the "shakespeare" layer shapes (N = B·T =
 * 16,384 rows, width 384, MLP 1024), each form of training (NT y = x·Wᵀ, NN dX = dY·W, TN
 * dW += dYᵀ·X), beside the float32 gemm, as GFLOP/s, % of the measured peak of the unit it
 * runs on, and the rate its memory traffic allows. Used by `npm run bench train` and
 * `npm run bench gemm`.
 *
 * The peak: one core's register-only loop (the best of 40 ~1 ms tries; a single long loop on
 * this shared VM measured the share of the core it got, 980 vs 2,292 GFLOP/s in two runs),
 * measured again before every row and reported beside it; the % uses the best of all of them.
 * The memory side: the operands are float32 (25–64 MiB, far past L2) and the outputs float32,
 * so each product streams op(A) and op(B) in and C out at least once. gemmBf16Bandwidth()
 * measures the rates of the same threads (plain loads; plain stores, whose lines are read for
 * ownership first), and `memory` = FLOPs / (bytes read / read rate + bytes written / write
 * rate): a product that overlapped its traffic perfectly and had no other cost would run at
 * min(peak, memory). It is not a hard ceiling (reads and writes can overlap, and the product
 * could write C with non-temporal stores), but where it sits far below the peak, 80 % of the
 * peak is out of reach for a kernel that reads float32 operands and writes float32 C.
 */
import { loadavg } from "node:os";
import { loadNative, setThreads } from "../src/core/native.ts";

type Addon = ReturnType<typeof loadNative> & {
  gemmBf16Peaks(): { amx: number; vdpbf16ps: number };
  gemmBf16Bandwidth(): { read: number; write: number; stream: number; threads: number };
  gemmPeakGflops(): number;
};

export interface Bf16GemmRow {
  shape: string; form: string; M: number; N: number; K: number; threads: number;
  fp32Gflops: number; bf16Gflops: number;
  /** this row's own peak measurement (one core × threads), and the best over all rows */
  peakHere: number; peak: number; bf16PeakShare: number;
  /** the rate the float32 traffic allows (see above), and the share of min(peak, that) */
  memoryGflops: number; boundShare: number;
}

/** One core's peak of the unit gemmBf16 runs on (AMX, else VDPBF16PS, else float32 FMA). */
function unitPeak(a: Addon): number {
  const p = a.gemmBf16Peaks();
  return p.amx || p.vdpbf16ps || a.gemmPeakGflops();
}

export function bf16GemmShapes(threads: number, rowsN = 16384, rounds = 5): Bf16GemmRow[] {
  const a = loadNative() as Addon;
  setThreads(threads);
  const C = 384, F = 1024;
  const rand = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const bw = a.gemmBf16Bandwidth();
  let best = 0;
  const out: Bf16GemmRow[] = [];
  console.log(`\nbf16 GEMM on the shakespeare layer shapes (${threads} thread${threads > 1 ? "s" : ""}, ${rowsN} rows; ${a.gemmBf16Info()}; ` +
    `load average ${loadavg()[0].toFixed(2)}; best of ${rounds}, gemm and gemmBf16 interleaved)`);
  console.log(`  memory of these ${threads} thread(s), measured now: read ${bw.read.toFixed(1)} GB/s, write ${bw.write.toFixed(1)} GB/s ` +
    `(non-temporal ${bw.stream.toFixed(1)}); "memory" = the GFLOP/s at which the float32 operands and C stream at those rates`);
  console.log(`  ${"shape / form".padEnd(40)}  fp32  bf16 ratio  peak(row)  %peak  memory  %min(peak,memory)`);
  for (const [name, Nout, K] of [["q/k/v/o 384←384", C, C], ["gate/up 1024←384", F, C], ["down 384←1024", C, F]] as [string, number, number][]) {
    for (const [form, ta, tb, M, Nn, Kk, beta] of [
      ["NT y=x·Wᵀ", false, true, rowsN, Nout, K, 0], ["NN dX=dY·W", false, false, rowsN, K, Nout, 0], ["TN dW+=dYᵀX", true, false, Nout, K, rowsN, 1],
    ] as [string, boolean, boolean, number, number, number, number][]) {
      const A = rand(M * Kk), B = rand(Kk * Nn), Cm = new Float32Array(M * Nn), flops = 2 * M * Nn * Kk;
      const here = unitPeak(a) * threads;
      best = Math.max(best, here);
      const t = { gemm: Infinity, gemmBf16: Infinity };
      for (const f of ["gemm", "gemmBf16"] as const) a[f]!(ta, tb, M, Nn, Kk, 1, A, B, beta, Cm);
      for (let r = 0; r < rounds; r++)
        for (const f of ["gemm", "gemmBf16"] as const) {
          const t0 = performance.now();
          a[f]!(ta, tb, M, Nn, Kk, 1, A, B, beta, Cm);
          t[f] = Math.min(t[f], performance.now() - t0);
        }
      const f32 = flops / t.gemm / 1e6, bf = flops / t.gemmBf16 / 1e6;
      // bytes: op(A) and op(B) read once, C written once (and read first when beta ≠ 0)
      const readB = 4 * (M * Kk + Kk * Nn + (beta ? M * Nn : 0)), writeB = 4 * M * Nn;
      const memory = flops / (readB / (bw.read * 1e9) + writeB / (bw.write * 1e9)) / 1e9;
      out.push({ shape: name, form, M, N: Nn, K: Kk, threads, fp32Gflops: f32, bf16Gflops: bf, peakHere: here, peak: 0, bf16PeakShare: 0,
                 memoryGflops: memory, boundShare: 0 });
    }
  }
  for (const r of out) {
    r.peak = best;
    r.bf16PeakShare = r.bf16Gflops / best;
    r.boundShare = r.bf16Gflops / Math.min(best, r.memoryGflops);
    console.log(`  ${`${r.shape} ${r.form} ${r.M}x${r.N}x${r.K}`.padEnd(40)} ${r.fp32Gflops.toFixed(0).padStart(5)} ${r.bf16Gflops.toFixed(0).padStart(5)} ` +
      `${(r.bf16Gflops / r.fp32Gflops).toFixed(2).padStart(5)}× ${r.peakHere.toFixed(0).padStart(9)} ${(100 * r.bf16PeakShare).toFixed(0).padStart(5)} % ` +
      `${r.memoryGflops.toFixed(0).padStart(7)} ${(100 * r.boundShare).toFixed(0).padStart(6)} %`);
  }
  console.log(`  peak: ${best.toFixed(0)} GFLOP/s (one core's best × ${threads}); target: bf16 ≥ 80 % of the peak on every row: ` +
    `${out.every((r) => r.bf16PeakShare >= 0.8) ? "met" : "not met"} (lowest ${(100 * Math.min(...out.map((r) => r.bf16PeakShare))).toFixed(0)} %, ` +
    `highest ${(100 * Math.max(...out.map((r) => r.bf16PeakShare))).toFixed(0)} %)`);
  return out;
}

/**
 * GEMM throughput (GFLOP/s) of mynah's native kernel beside OpenBLAS, at 1 and 2 threads.
 *
 * For each layer shape M×N×K (x [M, K], W [N, K], y = x·Wᵀ [M, N]) it times the three
 * products of training: forward y = x·Wᵀ (NT, M×N×K), input gradient dX = dY·W
 * (NN, M×K×N) and weight gradient dW += dYᵀ·X (TN, N×K×M, beta 1), plus the matrix-vector
 * products of token-by-token decoding (M = 1, 4, 8) and a tiny 16×16×16.
 *
 * The peer is OpenBLAS's cblas_sgemm through bench/openblas/sgemm_bench.c, compiled at bench
 * time into a temp folder when cblas.h and libopenblas are present (mynah never links BLAS).
 * OpenBLAS picks its kernel by CPU model; where it falls back to an AVX2 kernel on an AVX-512
 * machine a second column forces its AVX-512 (SkylakeX) kernel, the strongest peer.
 * The machine's peak is the cores times one core's FMA throughput (a loop in native/gemm.c).
 * Then the bf16 GEMM on the "shakespeare" layer shapes at each thread count (bench/bf16-gemm.ts).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadNative, type NativeAddon } from "../src/core/native.ts";
import { bf16GemmShapes, type Bf16GemmRow } from "./bf16-gemm.ts";

type Addon = NativeAddon & { gemmPeakGflops(): number; gemmInfo(): string };

interface Case {
  label: string; // layer shape and form, e.g. "4096x1152x384 NT"
  ta: boolean;
  tb: boolean;
  M: number;
  N: number;
  K: number;
  beta: number;
}

interface Row extends Case {
  threads: number;
  mynah: number; // GFLOP/s
  openblas: number | null;
  openblasSkx: number | null;
}

const LAYERS: [number, number, number][] = [[4096, 1152, 384], [4096, 1536, 384], [4096, 384, 1536], [4096, 384, 384]];

function cases(): Case[] {
  const out: Case[] = [];
  for (const [M, N, K] of LAYERS) {
    const s = `${M}x${N}x${K}`;
    out.push({ label: `${s} y=x·Wᵀ NT`, ta: false, tb: true, M, N, K, beta: 0 });
    out.push({ label: `${s} dX=dY·W NN`, ta: false, tb: false, M, N: K, K: N, beta: 0 });
    out.push({ label: `${s} dW+=dYᵀX TN`, ta: true, tb: false, M: N, N: K, K: M, beta: 1 });
  }
  for (const m of [1, 4, 8]) out.push({ label: `decode M=${m} 1536x384 NT`, ta: false, tb: true, M: m, N: 1536, K: 384, beta: 0 });
  out.push({ label: "decode M=1 384x1536 NT", ta: false, tb: true, M: 1, N: 384, K: 1536, beta: 0 });
  out.push({ label: "tiny 16x16x16 NN", ta: false, tb: false, M: 16, N: 16, K: 16, beta: 0 });
  return out;
}

function randomArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

/** Best-of GFLOP/s: at least 3 timed runs and 0.3 s, after one warm-up run. */
function timeMynah(a: Addon, c: Case): number {
  const A = randomArray(c.M * c.K), B = randomArray(c.K * c.N), C = new Float32Array(c.M * c.N);
  const flops = 2 * c.M * c.N * c.K;
  // tiny products take microseconds: batch them so the timer resolves them
  const batch = Math.max(1, Math.floor(2e7 / flops));
  a.gemm(c.ta, c.tb, c.M, c.N, c.K, 1, A, B, c.beta, C);
  let best = Infinity, spent = 0;
  for (let r = 0; r < 200 && (r < 3 || spent < 0.2); r++) {
    const t0 = process.hrtime.bigint();
    for (let b = 0; b < batch; b++) a.gemm(c.ta, c.tb, c.M, c.N, c.K, 1, A, B, c.beta, C);
    const t = Number(process.hrtime.bigint() - t0) / 1e9 / batch;
    spent += t * batch;
    best = Math.min(best, t);
  }
  return flops / best / 1e9;
}

/** Compiles the OpenBLAS helper; null (with the reason printed) when OpenBLAS is absent. */
function buildOpenblas(dir: string): string | null {
  const headers = ["/usr/include/x86_64-linux-gnu/cblas.h", "/usr/include/aarch64-linux-gnu/cblas.h",
    "/usr/include/cblas.h", "/usr/include/openblas/cblas.h"];
  if (!headers.some(existsSync)) {
    console.log("OpenBLAS: no cblas.h found (install libopenblas-dev for the peer column)");
    return null;
  }
  const src = join(dirname(fileURLToPath(import.meta.url)), "openblas", "sgemm_bench.c");
  const exe = join(dir, "sgemm_bench");
  try {
    execFileSync("cc", ["-O2", "-I/usr/include/openblas", src, "-o", exe, "-lopenblas"], { stdio: "pipe" });
    return exe;
  } catch (err) {
    console.log(`OpenBLAS: helper did not build (${String((err as { stderr?: Buffer }).stderr ?? err).split("\n")[0]})`);
    return null;
  }
}

/**
 * A running OpenBLAS helper: one process per thread count and kernel, started while the
 * pool is single-threaded (a child inherits the CPUs of the thread that starts it, and a
 * multi-threaded pool pins the main thread to one CPU), then asked one shape at a time so
 * the peer and mynah are timed side by side under the same machine load.
 */
interface Peer {
  time(c: Case): Promise<number | null>;
  close(): void;
}

function startPeer(exe: string, threads: number, coretype?: string): Peer {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  const child = spawn(exe, [], { env, stdio: ["pipe", "pipe", "ignore"] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    async time(c: Case): Promise<number | null> {
      child.stdin!.write(`${+c.ta} ${+c.tb} ${c.M} ${c.N} ${c.K} ${c.beta}\n`);
      const r = await lines.next();
      const x = r.done ? NaN : Number(r.value);
      return Number.isFinite(x) ? x : null;
    },
    close(): void {
      child.stdin!.end();
    },
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

function openblasCore(exe: string): string {
  const r = spawnSync(exe, [], { input: "", env: { ...process.env, OPENBLAS_VERBOSE: "2" }, encoding: "utf8" });
  return /Core:\s*(\S+)/.exec(r.stdout + r.stderr)?.[1] ?? "unknown";
}

/** Interleaved rounds per row (MYNAH_BENCH_ROUNDS, default 3); each row keeps its best. */
const ROUNDS = Math.max(1, Number(process.env.MYNAH_BENCH_ROUNDS ?? 3) || 3);

const fmt = (x: number | null, w = 8) => (x === null ? "-" : x.toFixed(1)).padStart(w);

export async function run(): Promise<unknown> {
  const a = loadNative() as Addon;
  const startThreads = a.threads();
  const dir = mkdtempSync(join(tmpdir(), "mynah-gemm-bench-"));
  try {
    const exe = buildOpenblas(dir);
    const core = exe ? openblasCore(exe) : null;
    // Force the AVX-512 kernel too when OpenBLAS chose another on an AVX-512 build.
    const skx = exe && a.simd() === "avx512" && core !== null && !/skylakex|cooperlake|sapphire/i.test(core);
    const threadCounts = a.cpus() >= 2 ? [1, 2] : [1];
    const peak: Record<number, number> = {};
    const rows: Row[] = [];
    console.log(`mynah kernel: ${a.gemmInfo()}; OpenBLAS core: ${core ?? "absent"}`);
    a.setThreads(1); // see startPeer
    const peers = new Map<string, Peer>();
    if (exe)
      for (const t of threadCounts) {
        peers.set(`${t}`, startPeer(exe, t));
        if (skx) peers.set(`${t}skx`, startPeer(exe, t, "SkylakeX"));
      }
    const load = loadavg()[0];
    // one core's peak: the best of tries at the start and after every row (another process
    // can slow any single try)
    let core1 = Math.max(a.gemmPeakGflops(), a.gemmPeakGflops(), a.gemmPeakGflops());
    for (const t of threadCounts) {
      a.setThreads(t);
      for (const c of cases()) {
        // interleaved rounds, best of each: the machine is shared, so a run can be slowed
        const row: Row = { ...c, threads: t, mynah: 0, openblas: null, openblasSkx: null };
        for (let round = 0; round < ROUNDS; round++) {
          const ob = await peers.get(`${t}`)?.time(c);
          const obs = await peers.get(`${t}skx`)?.time(c);
          if (ob) row.openblas = Math.max(row.openblas ?? 0, ob);
          if (obs) row.openblasSkx = Math.max(row.openblasSkx ?? 0, obs);
          await pause(100); // OpenBLAS's threads spin a while after each call
          row.mynah = Math.max(row.mynah, timeMynah(a, c));
        }
        rows.push(row);
        core1 = Math.max(core1, a.gemmPeakGflops());
      }
    }
    for (const t of threadCounts) peak[t] = t * core1;
    for (const p of peers.values()) p.close();
    // issue 14: the bf16 GEMM on the "shakespeare" layer shapes, against its unit's peak
    const bf16: Bf16GemmRow[] = [];
    if (typeof (a as { gemmBf16?: unknown }).gemmBf16 === "function" && process.env.MYNAH_BENCH_SKIP_BF16 !== "1")
      for (const t of threadCounts) bf16.push(...bf16GemmShapes(t));
    a.setThreads(startThreads);

    const skxHead = skx ? `  OB-SKX  ratio` : "";
    for (const t of threadCounts) {
      console.log(`\n${t} thread${t > 1 ? "s" : ""}, FMA peak ${peak[t].toFixed(1)} GFLOP/s (${t} x one core)` +
        ` (GFLOP/s; ratio = mynah / OpenBLAS; GEMM M×N×K in brackets)`);
      console.log(`${"shape / form".padEnd(44)}   mynah  %peak  OpenBLAS  ratio${skxHead}`);
      for (const r of rows.filter((x) => x.threads === t)) {
        const name = `${r.label} [${r.M}x${r.N}x${r.K}]`.padEnd(44);
        const ratio = r.openblas ? (r.mynah / r.openblas).toFixed(2).padStart(6) : "     -";
        const skxCols = skx ? `${fmt(r.openblasSkx)} ${r.openblasSkx ? (r.mynah / r.openblasSkx).toFixed(2).padStart(6) : "     -"}` : "";
        console.log(`${name} ${fmt(r.mynah)} ${(100 * r.mynah / peak[t]).toFixed(0).padStart(5)}% ${fmt(r.openblas, 9)} ${ratio}${skxCols}`);
      }
    }
    if (threadCounts.length === 2) {
      const big = rows.filter((r) => r.M * r.N * r.K >= 1e8);
      const s = (t: number) => big.filter((r) => r.threads === t).reduce((x, r) => x + r.mynah, 0);
      console.log(`\nscaling 1 → 2 threads on the layer shapes: ${(s(2) / s(1)).toFixed(2)}x`);
    }
    console.log(`load average at start ${load.toFixed(2)} (other processes share these cores; rows are best of ${ROUNDS} interleaved rounds)`);
    return { kernel: a.gemmInfo(), openblasCore: core, peakGflops: peak, loadAverage: load, rows, bf16 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The native pool under more than one JavaScript thread, and the wrappers' shape checks.
 *
 * The pool is one per process. A Worker that loads the addon and exits must leave the pool
 * that the main thread set up as it was; two JS threads computing at once must each get their
 * own, correct results (the calls take turns); more threads than CPUs are capped; shapes whose
 * element counts overflow are refused with ERR_MYNAH_KERNEL rather than wrapping around a
 * length check.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { addonPath, loadNative } from "../src/core/native.ts";

const addon = loadNative();
const startThreads = addon.threads();
after(() => addon.setThreads(startThreads));

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** Runs `body` (a function of (addon, data) as source text) in a Worker; resolves to what it returns. */
function inWorker<T>(body: string, data: unknown = null): Promise<T> {
  const src = `
    const { parentPort, workerData } = require("node:worker_threads");
    const addon = require(workerData.path);
    const result = (${body})(addon, workerData.data);
    parentPort.postMessage(result);`;
  const w = new Worker(src, { eval: true, workerData: { path: addonPath(), data } });
  return new Promise<T>((resolve, reject) => {
    w.once("message", (m: T) => { void w.terminate().then(() => resolve(m)); });
    w.once("error", reject);
  });
}

test("a Worker that loads the addon and exits leaves the main thread's pool as it was", async () => {
  addon.setThreads(1);
  const sum = await inWorker<number>(`(a) => {
    const X = new Float32Array(128 * 128).fill(1), C = new Float32Array(128 * 128);
    a.gemm(false, true, 128, 128, 128, 1, X, X, 0, C);
    return C[0];
  }`);
  assert.equal(sum, 128);
  // the Worker's environment is gone (terminate resolved): the main thread's setting stands
  assert.equal(addon.threads(), 1, "the Worker's exit reset the main thread's pool");
  const n = addon.setThreads(0);
  const done = await inWorker<number>(`(a) => a.threads()`);
  assert.equal(done, n, "a Worker sees the process's pool");
  assert.equal(addon.threads(), n);
  // and the pool still computes, on every thread, after the Worker left
  const M = 300, K = 200, N = 260, A = filled(M * K, 1), B = filled(N * K, 2);
  const C2 = new Float32Array(M * N), C1 = new Float32Array(M * N);
  addon.gemm(false, true, M, N, K, 1, A, B, 0, C2);
  addon.setThreads(1);
  addon.gemm(false, true, M, N, K, 1, A, B, 0, C1);
  assert.deepEqual(C2, C1);
});

test("two JS threads computing at once both get exact results", { timeout: 120_000 }, async () => {
  const n = addon.setThreads(0);
  // Shapes above the threading threshold, so both threads' calls run on the pool.
  const shapes = [[256, 384, 200], [200, 320, 256]] as const;
  const expect = shapes.map(([M, N, K], s) => {
    const C = new Float32Array(M * N);
    addon.gemm(false, true, M, N, K, 1, filled(M * K, 10 + s), filled(N * K, 20 + s), 0, C);
    return C;
  });
  const go = new Int32Array(new SharedArrayBuffer(4));
  // The worker: wait for the start flag, then repeat the product, counting wrong results.
  const worker = inWorker<{ runs: number; bad: number }>(`(a, d) => {
    function filled(n, seed) {
      const x = new Float32Array(n);
      let s = seed >>> 0;
      for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; x[i] = s / 2 ** 32 - 0.5; }
      return x;
    }
    const [M, N, K] = d.shape, A = filled(M * K, 11), B = filled(N * K, 21), C = new Float32Array(M * N);
    Atomics.store(d.go, 0, 1);
    Atomics.notify(d.go, 0);
    let runs = 0, bad = 0;
    const end = Date.now() + 1500;
    while (Date.now() < end) {
      a.gemm(false, true, M, N, K, 1, A, B, 0, C);
      runs++;
      for (let i = 0; i < C.length; i++) if (C[i] !== d.expect[i]) { bad++; break; }
    }
    return { runs, bad };
  }`, { shape: shapes[1], expect: expect[1], go });
  while (Atomics.load(go, 0) === 0) await new Promise((r) => setTimeout(r, 5));
  const [M, N, K] = shapes[0], A = filled(M * K, 10), B = filled(N * K, 20), C = new Float32Array(M * N);
  let runs = 0, bad = 0;
  const end = Date.now() + 1500;
  while (Date.now() < end) {
    addon.gemm(false, true, M, N, K, 1, A, B, 0, C);
    runs++;
    if (!C.every((x, i) => x === expect[0][i])) bad++;
  }
  const w = await worker;
  assert.ok(runs > 0 && w.runs > 0);
  assert.equal(bad, 0, `main thread: ${bad} of ${runs} products wrong while a Worker computed (${n} pool threads)`);
  assert.equal(w.bad, 0, `worker: ${w.bad} of ${w.runs} products wrong while the main thread computed`);
});

test("more threads than CPUs are capped at the CPU count", () => {
  const cpus = addon.cpus();
  assert.equal(addon.setThreads(64), Math.min(64, cpus));
  assert.equal(addon.threads(), Math.min(64, cpus));
  assert.equal(addon.setThreads(cpus + 1), cpus);
  assert.equal(addon.setThreads(2 ** 40), cpus);
  assert.equal(addon.setThreads(1), 1);
});

test("shapes whose element counts overflow are refused with ERR_MYNAH_KERNEL", () => {
  const small = new Float32Array(16), ids = new Int32Array(16);
  const code = { code: "ERR_MYNAH_KERNEL" };
  const overflow = (re: RegExp) => ({ ...code, message: re });
  // 2^52·1·2^10·2 = 2^63 wraps to a negative count, which the old check read as "any length"
  assert.throws(() => addon.ropeForward(small, small, small, 2 ** 52, 1, 2 ** 10, 2, 0), overflow(/ropeForward: the shapes overflow: the element count of x/));
  // 2^40·2^24 = 2^64 wraps to 0
  assert.throws(() => addon.gemm(false, false, 2 ** 40, 1, 2 ** 24, 1, small, small, 0, small), overflow(/gemm: the shapes overflow: the element count of A/));
  assert.throws(() => addon.rmsnormForward(small, small, small, small, 2 ** 40, 2 ** 24, 1e-5), overflow(/rmsnormForward: the shapes overflow/));
  assert.throws(() => addon.crossEntropy(null, null, small, ids, 2 ** 40, 2 ** 24, 1), overflow(/crossEntropy: the shapes overflow/));
  assert.throws(() => addon.embeddingForward(small, small, ids, 2 ** 40, 2 ** 24), overflow(/embeddingForward: the shapes overflow/));
  assert.throws(() => addon.muon(small, small, small, 2 ** 40, 2 ** 24, 0.1, 0.9, 0, 5), overflow(/muon: the shapes overflow/));
  assert.throws(() => addon.swigluForward(small, small, small, 2 ** 53), { ...code, message: /n must be a non-negative integer below 2\^53/ });
  // attention keeps its dimensions in C ints: each is bounded, and B·H·T too
  assert.throws(() => addon.attentionForward(small, small, small, small, small, 1, 2 ** 31, 1, 1, 16), { ...code, message: /attentionForward: T = 2147483648 is too large/ });
  assert.throws(() => addon.attentionForward(small, small, small, small, small, 2 ** 29, 2 ** 29, 8, 8, 16), { ...code, message: /B·H·T must be below 2\^31/ });
  assert.throws(() => addon.attentionCached(small, small, small, small, 1, 1, 1, 1, 16, 2 ** 30, 2 ** 30 + 1), { ...code, message: /pos0 = 1073741824 is too large/ });
});

/**
 * Native GEMM against a plain float64 TypeScript reference: odd shapes around the tile and
 * block sizes, all four transpose forms, alpha/beta variants, subarray views, 1 vs 2 threads.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { loadNative, nativeBackend } from "../src/core/native.ts";

const addon = loadNative();
const be = nativeBackend();
const startThreads = addon.threads();
after(() => addon.setThreads(startThreads));

/** Seeded uniform [-1, 1) generator (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

function randArray(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r();
  return a;
}

/**
 * Reference C = alpha·op(A)·op(B) + beta·C in float64, A [M,K] or [K,M] (transA),
 * B [K,N] or [N,K] (transB), C [M,N]. Also returns, per element, the scale
 * |alpha|·Σ_k |a·b| + |beta·c| that bounds float32 rounding error.
 */
function reference(ta: boolean, tb: boolean, M: number, N: number, K: number, alpha: number,
                   A: Float32Array, B: Float32Array, beta: number, C: Float32Array): { out: Float64Array; scale: Float64Array } {
  const out = new Float64Array(M * N), scale = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0, sa = 0;
      for (let k = 0; k < K; k++) {
        const p = (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
        s += p;
        sa += Math.abs(p);
      }
      const c = beta === 0 ? 0 : beta * C[i * N + j];
      out[i * N + j] = alpha * s + c;
      scale[i * N + j] = Math.abs(alpha) * sa + Math.abs(c);
    }
  }
  return { out, scale };
}

/** Runs native gemm on copies and checks every element against the reference; returns C. */
function check(ta: boolean, tb: boolean, M: number, N: number, K: number, alpha: number, beta: number,
               seed: number, nanC = false): Float32Array {
  const r = rng(seed);
  const A = randArray(M * K, r), B = randArray(K * N, r);
  const C = nanC ? new Float32Array(M * N).fill(NaN) : randArray(M * N, r);
  const { out, scale } = reference(ta, tb, M, N, K, alpha, A, B, beta, C);
  be.gemm(ta, tb, M, N, K, alpha, A, B, beta, C);
  // Worst-case float32 summation error grows like K·ε (ε = 2^-24) times the scale.
  const tol = (K + 4) * 2 ** -23;
  let worst = 0, at = -1;
  for (let e = 0; e < M * N; e++) {
    const err = Math.abs(C[e] - out[e]) / (scale[e] + 1e-30);
    if (!(err <= worst)) { worst = err; at = e; } // NaN lands here too
  }
  const form = `${ta ? "T" : "N"}${tb ? "T" : "N"} M=${M} N=${N} K=${K} alpha=${alpha} beta=${beta}`;
  assert.ok(worst <= tol, `${form}: largest relative error ${worst} at ${at} (C=${C[at]}, ref=${out[at]}), bound ${tol}`);
  return C;
}

const FORMS: [boolean, boolean][] = [[false, true], [false, false], [true, false], [true, true]];
const ODD = [1, 3, 17, 63, 65, 127, 129, 255, 257];

test("gemm matches the float64 reference on odd shapes, all transpose forms", () => {
  const r = rng(1);
  const pick = () => ODD[Math.floor((r() + 1) / 2 * ODD.length)];
  let seed = 100;
  for (const [ta, tb] of FORMS) {
    for (let n = 0; n < 12; n++) {
      let M = pick(), N = pick(), K = pick();
      while (M * N * K > 3e6) K = Math.max(1, K >> 2); // keep the JS reference fast
      check(ta, tb, M, N, K, 1, 0, seed++);
    }
  }
});

test("gemm: matrix-vector path (M = 1..8, or N = 1) in all forms, N and K off the vector width", () => {
  let seed = 200;
  for (const [ta, tb] of FORMS)
    for (let M = 1; M <= 8; M++) check(ta, tb, M, [1, 17, 65, 333][M % 4], [3, 129, 64, 1000][(M + 1) % 4], 1, 0, seed++);
  for (const [ta, tb] of FORMS) { // N = 1 goes through the same path, transposed
    check(ta, tb, 300, 1, 129, 1, 0, seed++, true);
    check(ta, tb, 77, 1, 1000, -2, 0.5, seed++);
  }
});

test("gemm: tiny products (unpacked path, N a multiple of 16) in all forms", () => {
  let seed = 250;
  for (const [ta, tb] of FORMS)
    for (const [M, N, K] of [[9, 16, 16], [16, 16, 16], [24, 32, 20], [40, 48, 64], [64, 64, 64], [13, 80, 1]]) {
      check(ta, tb, M, N, K, 1, 0, seed++, true);
      check(ta, tb, M, N, K, -0.5, 1, seed++);
    }
});

test("gemm: batched decoding's x·Wᵀ (M = 2..32, W streamed in place) matches the reference, and each row equals that row alone", () => {
  let seed = 270;
  for (const M of [2, 4, 9, 12, 16, 17, 24, 32])
    for (const [N, K] of [[65, 333], [1024, 384], [16, 31]]) {
      check(false, true, M, N, K, 1, 0, seed++, true);
      check(false, true, M, N, K, -0.5, 1, seed++);
    }
  // Row m of a batch is bitwise the product of that row alone: a sequence decoded in a batch
  // gets exactly its solo logits from the linear layers. Everywhere for up to 8 rows and for
  // 9–24 rows of a W of 256 Ki elements or more; with AVX-512 (4 × 4 tiles whose 16 sums share
  // one shuffle tree with the bits of the one-row path's horizontal sum) for any W up to 16
  // rows, and up to 32 when K ≥ 256. Also with beta = 1 (x += y·Wᵀ), K off the vector width
  // (the tail terms) and N off the tile width.
  const avx512 = addon.simd() === "avx512";
  const cases: [number, number, number][] = [[16, 1024, 384], [5, 1024, 384], [9, 1024, 384], [24, 1024, 384], [3, 65, 333], [8, 130, 128]];
  if (avx512) cases.push([2, 130, 128], [13, 65, 333], [16, 352, 128], [16, 7, 16], [17, 384, 384], [32, 1024, 384], [30, 131, 257]);
  let seed2 = 290;
  for (const [M, N, K] of cases)
    for (const beta of [0, 1]) {
      const r = rng(seed2++);
      const A = randArray(M * K, r), W = randArray(N * K, r), C0 = randArray(M * N, r), C = C0.slice();
      be.gemm(false, true, M, N, K, 1, A, W, beta, C);
      for (let m = 0; m < M; m++) {
        const one = C0.slice(m * N, (m + 1) * N);
        be.gemm(false, true, 1, N, K, 1, A.subarray(m * K, (m + 1) * K), W, beta, one);
        assert.deepEqual(C.subarray(m * N, (m + 1) * N), one, `M=${M} N=${N} K=${K} beta=${beta}: row ${m}`);
      }
    }
});

test("gemm: beta 0 ignores NaN in C; beta 1 accumulates; other alpha/beta", () => {
  let seed = 300;
  for (const [ta, tb] of FORMS) {
    const nan = check(ta, tb, 37, 45, 70, 1, 0, seed++, true);
    assert.ok(nan.every(Number.isFinite), "beta 0 must overwrite NaNs");
    check(ta, tb, 5, 300, 70, 1, 0, seed++, true); // small-M path
    check(ta, tb, 37, 45, 70, 1, 1, seed++);
    check(ta, tb, 3, 77, 70, 1, 1, seed++);
    check(ta, tb, 29, 31, 33, -0.5, 0.75, seed++);
    check(ta, tb, 29, 31, 33, 0, 2, seed++); // alpha 0: C scaled only
  }
});

test("gemm: K = 0 scales C by beta; K deeper than one packed slice; M and N past one block", () => {
  const C = new Float32Array([1, 2, NaN, 4]);
  be.gemm(false, true, 2, 2, 0, 1, new Float32Array(0), new Float32Array(0), 0, C);
  assert.deepEqual(Array.from(C), [0, 0, 0, 0]);
  const D = new Float32Array([1, 2, 3, 4]);
  be.gemm(false, true, 2, 2, 0, 1, new Float32Array(0), new Float32Array(0), 2, D);
  assert.deepEqual(Array.from(D), [2, 4, 6, 8]);
  check(false, true, 40, 50, 1000, 1, 1, 400); // several KC slices, later ones accumulate
  check(true, false, 31, 33, 900, 1, 0, 401, true);
  check(false, false, 2400, 20, 24, 1, 0, 402); // more rows than one packed A block (MC)
  check(false, true, 20, 600, 24, 1, 0, 403); // more columns than one packed B block (NC)
  check(true, true, 20, 4200, 9, 1, 1, 404); // more columns than one packed B slice (NS)
});

test("gemm works on subarray views and writes nothing outside C", () => {
  const r = rng(500);
  const M = 33, N = 65, K = 47, off = 7;
  const bigA = randArray(M * K + 2 * off, r), bigB = randArray(K * N + 2 * off, r);
  const bigC = new Float32Array(M * N + 2 * off).fill(123);
  const A = bigA.subarray(off, off + M * K), B = bigB.subarray(off, off + K * N), C = bigC.subarray(off, off + M * N);
  const { out } = reference(false, true, M, N, K, 1, A, B, 0, C);
  be.gemm(false, true, M, N, K, 1, A, B, 0, C);
  for (let e = 0; e < M * N; e++) assert.ok(Math.abs(C[e] - out[e]) < 1e-4, `element ${e}: ${C[e]} vs ${out[e]}`);
  for (let e = 0; e < off; e++) {
    assert.equal(bigC[e], 123, "wrote before C");
    assert.equal(bigC[off + M * N + e], 123, "wrote after C");
  }
});

test("gemm gives the same bits on 1 and 2 threads, above the threading threshold", () => {
  if (addon.cpus() < 2) return;
  for (const [ta, tb] of FORMS) {
    for (const [M, N, K] of [[130, 257, 129], [65, 700, 100], [4, 4099, 300]]) {
      addon.setThreads(1);
      const one = check(ta, tb, M, N, K, 1, 0, 600 + M);
      addon.setThreads(2);
      const two = check(ta, tb, M, N, K, 1, 0, 600 + M);
      assert.deepEqual(two, one, `${ta ? "T" : "N"}${tb ? "T" : "N"} ${M}x${N}x${K}: 1 and 2 threads differ`);
    }
  }
  addon.setThreads(startThreads);
});

test("re-initializing the pool keeps every CPU (the main thread's pin must not shrink the set)", () => {
  const cpus = addon.cpus();
  addon.setThreads(2);
  addon.setThreads(2);
  assert.equal(addon.setThreads(0), cpus, "setThreads(0) after re-pinning should use every CPU again");
  assert.equal(addon.setThreads(1), 1);
  assert.equal(addon.setThreads(0), cpus);
  addon.setThreads(startThreads);
});

test("gemm rejects arrays shorter than the shapes need, naming the argument", () => {
  assert.throws(() => be.gemm(false, false, 4, 4, 4, 1, new Float32Array(15), new Float32Array(16), 0, new Float32Array(16)),
    /gemm: A has 15 elements, the shapes need 16/);
  assert.throws(() => be.gemm(false, false, 4, 4, 4, 1, new Float32Array(16), new Float32Array(16), 0, new Float32Array(3)),
    /gemm: C has 3 elements/);
});

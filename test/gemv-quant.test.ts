/**
 * F16 and Q8_0 weight products (native/gemv_quant.c) against float64 references:
 *  - against the decoded weights (what the kernel multiplies by): only float32 summation
 *    error, |Δ| ≤ 1e-5 · Σ|x||w̃| (+1e-30);
 *  - against the original float32 weights, the documented storage bound:
 *    F16 |Δ| ≤ 2⁻¹¹ Σ|x||w| (+ the summation term); Q8_0 |Δ| ≤ Σ_blocks 0.57·d·Σ|x|.
 * Shapes not multiples of the vector widths, M = 1..8, 1 and 2 threads; the dequantizers
 * against the TypeScript decoders bit for bit; and a model decoding with --dtype f16/q8_0.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadNative, setThreads } from "../src/core/native.ts";
import { decodeF16, decodeQ8_0, encodeF16, encodeQ8_0, f16ToF32 } from "../src/core/half.ts";

interface Q {
  gemmF16(M: number, N: number, K: number, x: Float32Array, w: Uint16Array, acc: boolean, y: Float32Array): void;
  gemmQ8(M: number, N: number, K: number, x: Float32Array, w: Uint8Array, acc: boolean, y: Float32Array): void;
  f16ToF32(s: Uint16Array, d: Float32Array, n: number): void;
  q8ToF32(s: Uint8Array, d: Float32Array, n: number): void;
}
const q = loadNative() as unknown as Q;

function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

test("f16ToF32 and q8ToF32 equal the TypeScript decoders exactly", () => {
  const w = rand(32 * 37, 3, 0.3);
  const h = encodeF16(w), out = new Float32Array(w.length);
  q.f16ToF32(h, out, w.length);
  assert.deepEqual(out, decodeF16(h));
  const b = encodeQ8_0(w, 37, 32);
  q.q8ToF32(b, out, w.length);
  assert.deepEqual(out, decodeQ8_0(b, w.length));
  // F16 rounding: nearest, within 2^-11 relative
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(f16ToF32(h[i]) - w[i]) <= Math.abs(w[i]) * 2 ** -11 + 2 ** -25);
});

for (const threads of [1, 2]) {
  test(`gemmF16 / gemmQ8 against float64 references, M = 1..8 (${threads} thread${threads > 1 ? "s" : ""})`, () => {
    setThreads(threads);
    let worstF16 = 0, worstQ8 = 0;
    for (const [M, N, K] of [[1, 37, 96], [2, 65, 160], [3, 9, 64], [5, 130, 32], [8, 77, 224], [1, 300, 512]]) {
      const x = rand(M * K, M * 7 + N, 1.5), w = rand(N * K, K + N, 0.2);
      for (const dtype of ["f16", "q8_0"] as const) {
        const stored = dtype === "f16" ? encodeF16(w) : encodeQ8_0(w, N, K);
        const wd = dtype === "f16" ? decodeF16(stored as Uint16Array) : decodeQ8_0(stored as Uint8Array, N * K);
        for (const acc of [false, true]) {
          const y0 = rand(M * N, 99), y = y0.slice();
          if (dtype === "f16") q.gemmF16(M, N, K, x, stored as Uint16Array, acc, y);
          else q.gemmQ8(M, N, K, x, stored as Uint8Array, acc, y);
          for (let m = 0; m < M; m++) for (let j = 0; j < N; j++) {
            let exact = 0, orig = 0, mag = 0, bound = 0;
            for (let k = 0; k < K; k++) {
              const xv = x[m * K + k];
              exact += xv * wd[j * K + k];
              orig += xv * w[j * K + k];
              mag += Math.abs(xv * wd[j * K + k]);
            }
            if (dtype === "f16") for (let k = 0; k < K; k++) bound += Math.abs(x[m * K + k] * w[j * K + k]) * 2 ** -11;
            else for (let b = 0; b < K / 32; b++) {
              let amax = 0, sx = 0;
              for (let i = 0; i < 32; i++) (amax = Math.max(amax, Math.abs(w[j * K + b * 32 + i]))), (sx += Math.abs(x[m * K + b * 32 + i]));
              bound += 0.57 * (amax / 127) * sx;
            }
            const base = acc ? y0[m * N + j] : 0;
            const got = y[m * N + j] - base;
            const e1 = Math.abs(got - exact), e2 = Math.abs(got - orig);
            assert.ok(e1 <= 1e-5 * mag + 1e-6 * Math.abs(base) + 1e-30, `${dtype} M=${M} N=${N} K=${K} [${m},${j}]: ${got} vs decoded ${exact}`);
            assert.ok(e2 <= bound + 1e-5 * mag + 1e-6 * Math.abs(base), `${dtype} [${m},${j}]: error ${e2} > bound ${bound}`);
            if (dtype === "f16") worstF16 = Math.max(worstF16, e2 / bound); else worstQ8 = Math.max(worstQ8, e2 / bound);
          }
        }
      }
    }
    console.log(`  largest error / documented bound against the float32 weights: f16 ${worstF16.toFixed(3)}, q8_0 ${worstQ8.toFixed(3)}`);
    setThreads(0);
  });
}

test("argument errors name the op and the argument", () => {
  assert.throws(() => q.gemmQ8(1, 2, 40, new Float32Array(40), new Uint8Array(200), false, new Float32Array(2)), /gemmQ8.*multiple of 32/);
  assert.throws(() => q.gemmF16(1, 2, 4, new Float32Array(4), new Uint8Array(16) as never, false, new Float32Array(2)), /gemmF16.*w must be a Uint16Array/);
  assert.throws(() => q.gemmF16(9, 2, 4, new Float32Array(36), new Uint16Array(8), false, new Float32Array(18)), /at most 8/);
});

/**
 * F16 and Q8_0 weight products (native/gemv_quant.c, native/q8_panel.h) against references:
 *  F16 (M ≤ 8), against float64:
 *  - on the decoded weights (what the kernel multiplies by): only float32 summation
 *    error, |Δ| ≤ 1e-5 · Σ|x||w̃| (+1e-30);
 *  - on the original float32 weights, the storage bound F16 |Δ| ≤ 2⁻¹¹ Σ|x||w| (+ the summation term).
 *  Q8_0 (int8 activations, any M):
 *  - bit for bit equal to a TypeScript transcription of the arithmetic q8_panel.h documents
 *    (x rounded to int8 per 32-block, exact int32 block sums, one fma per block in order), at 1
 *    and 2 threads: so the result is the documented one and independent of the thread count;
 *  - against float64 x·w̃ᵀ: |Δ| ≤ Σ_b (dx_b/2)·Σ_{k∈b}|w̃_k| + 1e-5·Σ|x·w̃| (the activation rounding);
 *  - against the original float32 weights: that plus the storage bound Σ_b 0.57·d_b·Σ_{k∈b}|x_k|.
 * Shapes not multiples of the vector widths or of the 16-row panels, M = 1..8 and prefill
 * sizes M = 12, 17, 37, 46, 130 (on AMX-INT8, from 32 rows: whole 16-row tiles, a padded tail
 * tile (46), a tail left to VNNI (37, 130); fewer rows on VNNI); the dequantizers and the panel packing against the TypeScript decoders bit for bit;
 * and a model decoding with --dtype f16/q8_0.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadNative, setThreads } from "../src/core/native.ts";
import { decodeF16, decodeQ8_0, encodeF16, encodeQ8_0, f16ToF32 } from "../src/core/half.ts";
import { decodeQ8_0Panels, packQ8_0Panels, q8KernelPath } from "../src/infer/weight-dtype.ts";

interface Q {
  gemmF16(M: number, N: number, K: number, x: Float32Array, w: Uint16Array, acc: boolean, y: Float32Array): void;
  gemmQ8(M: number, N: number, K: number, x: Float32Array, panels: Uint8Array, acc: boolean, y: Float32Array): void;
  f16ToF32(s: Uint16Array, d: Float32Array, n: number): void;
  q8ToF32(s: Uint8Array, d: Float32Array, N: number, K: number): void;
}
const q = loadNative() as unknown as Q;

function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

test("f16ToF32, the Q8_0 panels and q8ToF32 equal the TypeScript decoders exactly", () => {
  const w = rand(32 * 37, 3, 0.3);
  const h = encodeF16(w), out = new Float32Array(w.length);
  q.f16ToF32(h, out, w.length);
  assert.deepEqual(out, decodeF16(h));
  // F16 rounding: nearest, within 2^-11 relative
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(f16ToF32(h[i]) - w[i]) <= Math.abs(w[i]) * 2 ** -11 + 2 ** -25);
  for (const [N, K] of [[37, 32], [16, 64], [5, 96], [33, 160]]) {
    const wq = rand(N * K, N + K, 0.3), blocks = encodeQ8_0(wq, N, K), panels = packQ8_0Panels(blocks, N, K);
    assert.equal(panels.length, Math.ceil(N / 16) * 17 * K);
    const ref = decodeQ8_0(blocks, N * K);
    assert.deepEqual(decodeQ8_0Panels(panels, N, K), ref);
    const o = new Float32Array(N * K);
    q.q8ToF32(panels, o, N, K);
    assert.deepEqual(o, ref);
  }
});

// ---- the documented Q8_0 arithmetic (native/q8_panel.h), transcribed ---------------------

const F = new Float32Array(1), U = new Uint32Array(F.buffer);
/** The float32 after (r > 0: up) / before the float32 r. */
function nextF32(r: number, up: boolean): number {
  F[0] = r;
  if (r === 0) U[0] = up ? 1 : 0x80000001;
  else U[0] += (r > 0) === up ? 1 : -1;
  return F[0];
}
/** fmaf(a, b, c) for float32 a, b, c with |a·b| exact in a double (here: b an int below 2^24). */
function fmaf(a: number, b: number, c: number): number {
  const p = a * b, s = p + c, bb = s - p, e = (p - (s - bb)) + (c - bb); // TwoSum: p + c = s + e exactly
  const r = Math.fround(s);
  if (e === 0 || r === s) return r;
  const other = nextF32(r, s > r);
  if (s - r !== other - s) return r; // not a tie: s's rounding is the exact value's
  return (e > 0) === (other > r) ? other : r;
}
/** roundf: halves away from zero. */
const roundf = (v: number): number => Math.sign(v) * Math.round(Math.abs(v));

/** y (+)= x̃·W̃ᵀ exactly as the native kernel computes it. */
function q8Reference(M: number, N: number, K: number, x: Float32Array, blocks: Uint8Array, accumulate: boolean, y: Float32Array): { dx: Float32Array } {
  const nb = K / 32, qx = new Int8Array(M * K), dx = new Float32Array(M * nb);
  for (let m = 0; m < M; m++) for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[m * K + b * 32 + i]));
    const d = Math.fround(amax / 127), id = d !== 0 ? Math.fround(1 / d) : 0;
    dx[m * nb + b] = d;
    for (let i = 0; i < 32; i++) qx[m * K + b * 32 + i] = Math.max(-127, Math.min(127, roundf(Math.fround(x[m * K + b * 32 + i] * id))));
  }
  const view = new DataView(blocks.buffer, blocks.byteOffset);
  for (let m = 0; m < M; m++) for (let j = 0; j < N; j++) {
    let acc = 0;
    for (let b = 0; b < nb; b++) {
      const o = (j * nb + b) * 34;
      let S = 0;
      for (let i = 0; i < 32; i++) S += view.getInt8(o + 2 + i) * qx[m * K + b * 32 + i];
      acc = fmaf(Math.fround(f16ToF32(view.getUint16(o, true)) * dx[m * nb + b]), S, acc);
    }
    y[m * N + j] = accumulate ? Math.fround(y[m * N + j] + acc) : acc;
  }
  return { dx };
}

test("fmaf transcription: rounds once (ties decided by the exact value)", () => {
  // 1 + 2^-24 + 2^-60: a double sum rounds to the tie 1 + 2^-24, the exact value is above it
  assert.equal(fmaf(2 ** -30, 2 ** -30, 1 + 2 ** -24), 1 + 2 ** -23);
  assert.equal(fmaf(-(2 ** -30), 2 ** -30, 1 + 2 ** -24), 1);
  assert.equal(fmaf(3, 5, 1), 16);
});

for (const threads of [1, 2]) {
  test(`gemmF16 / gemmQ8 against their references, M = 1..8, 12, 17, 37, 46 and 130 (${threads} thread${threads > 1 ? "s" : ""})`, () => {
    setThreads(threads);
    let worstF16 = 0, worstQ8 = 0;
    for (const [M, N, K] of [[1, 37, 96], [2, 65, 160], [3, 9, 64], [5, 130, 32], [8, 77, 224], [1, 300, 512], [37, 50, 96], [12, 40, 64], [17, 45, 96], [46, 33, 96], [130, 37, 160]]) {
      const x = rand(M * K, M * 7 + N, 1.5), w = rand(N * K, K + N, 0.2);
      for (const dtype of ["f16", "q8_0"] as const) {
        if (dtype === "f16" && M > 8) continue;
        const blocks = encodeQ8_0(w, N, K);
        const stored = dtype === "f16" ? encodeF16(w) : packQ8_0Panels(blocks, N, K);
        const wd = dtype === "f16" ? decodeF16(stored as Uint16Array) : decodeQ8_0(blocks, N * K);
        for (const acc of [false, true]) {
          const y0 = rand(M * N, 99), y = y0.slice();
          let dx: Float32Array = new Float32Array(0);
          if (dtype === "f16") q.gemmF16(M, N, K, x, stored as Uint16Array, acc, y);
          else {
            q.gemmQ8(M, N, K, x, stored as Uint8Array, acc, y);
            const ref = y0.slice();
            dx = q8Reference(M, N, K, x, blocks, acc, ref).dx;
            assert.deepEqual(y, ref, `q8_0 M=${M} N=${N} K=${K}: not bit-equal to the documented arithmetic`);
          }
          for (let m = 0; m < M; m++) for (let j = 0; j < N; j++) {
            let exact = 0, orig = 0, mag = 0, bound = 0, actBound = 0;
            for (let k = 0; k < K; k++) {
              const xv = x[m * K + k];
              exact += xv * wd[j * K + k];
              orig += xv * w[j * K + k];
              mag += Math.abs(xv * wd[j * K + k]);
            }
            if (dtype === "f16") for (let k = 0; k < K; k++) bound += Math.abs(x[m * K + k] * w[j * K + k]) * 2 ** -11;
            else for (let b = 0; b < K / 32; b++) {
              let amax = 0, sx = 0, sw = 0;
              for (let i = 0; i < 32; i++) {
                const k = j * K + b * 32 + i;
                amax = Math.max(amax, Math.abs(w[k]));
                sx += Math.abs(x[m * K + b * 32 + i]);
                sw += Math.abs(wd[k]);
              }
              actBound += (dx[m * (K / 32) + b] / 2) * sw;
              bound += 0.57 * (amax / 127) * sx;
            }
            const base = acc ? y0[m * N + j] : 0;
            const got = y[m * N + j] - base;
            const e1 = Math.abs(got - exact), e2 = Math.abs(got - orig);
            assert.ok(e1 <= actBound + 1e-5 * mag + 1e-6 * Math.abs(base) + 1e-30, `${dtype} M=${M} N=${N} K=${K} [${m},${j}]: ${got} vs decoded ${exact}, bound ${actBound}`);
            assert.ok(e2 <= actBound + bound + 1e-5 * mag + 1e-6 * Math.abs(base), `${dtype} [${m},${j}]: error ${e2} > bound ${actBound + bound}`);
            if (dtype === "f16") worstF16 = Math.max(worstF16, e2 / bound);
            else worstQ8 = Math.max(worstQ8, e1 / (actBound + 1e-30));
          }
        }
      }
    }
    console.log(`  largest error / documented bound: f16 (vs float32 weights) ${worstF16.toFixed(3)}, q8_0 (vs decoded weights, activation rounding) ${worstQ8.toFixed(3)}; Q8_0 path: ${q8KernelPath()}`);
    setThreads(0);
  });
}

test("argument errors name the op and the argument", () => {
  assert.throws(() => q.gemmQ8(1, 2, 40, new Float32Array(40), new Uint8Array(2000), false, new Float32Array(2)), /gemmQ8.*multiple of 32/);
  assert.throws(() => q.gemmQ8(1, 17, 32, new Float32Array(32), new Uint8Array(17 * 32), false, new Float32Array(17)), /gemmQ8.*w has 544 1-byte elements, the shapes need 1088/);
  assert.throws(() => q.gemmF16(1, 2, 4, new Float32Array(4), new Uint8Array(16) as never, false, new Float32Array(2)), /gemmF16.*w must be a Uint16Array/);
  assert.throws(() => q.gemmF16(9, 2, 4, new Float32Array(36), new Uint16Array(8), false, new Float32Array(18)), /at most 8/);
});

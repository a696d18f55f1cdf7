/**
 * Every compute op except GEMM, two ways (see test/helpers/opcheck.ts):
 *  1. the reference backend's backward ops against float64 finite differences of its forward ops;
 *  2. the native backend against the reference on random shapes that are not multiples of the
 *     SIMD width or of the attention tiles, with 1 and 2 threads for ops that reduce.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/core/backend.ts";
import { referenceBackend as ref, newtonSchulz5 } from "../src/core/reference.ts";
import { mulberry32, randomF32, randomI32, ropeTables } from "../src/core/tensor-utils.ts";
import { compareBackends, f64, gradCheck, type Inputs } from "./helpers/opcheck.ts";

function rand64(n: number, rng: () => number, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}

// ------------------------------------------------------------------ 1. reference vs finite differences

test("reference embedding backward = finite differences (ids −1 skipped)", () => {
  const rng = mulberry32(1), V = 5, C = 3, N = 7;
  const ids = randomI32(N, rng, V); ids[2] = -1;
  gradCheck({
    label: "embedding", inputs: { table: rand64(V * C, rng) },
    forward: (x) => { const o = new Float64Array(N * C); ref.embeddingForward(f64(o), f64(x.table), ids, N, C); return o; },
    backward: (_x, d) => { const g = new Float64Array(V * C); ref.embeddingBackward(f64(g), f64(d), ids, N, C); return { table: g }; },
  });
});

test("reference rmsnorm backward = finite differences, and it adds into dx and dw", () => {
  const rng = mulberry32(2), N = 3, C = 7, eps = 1e-5;
  const inputs: Inputs = { x: rand64(N * C, rng), w: rand64(C, rng, 0.5, 1.5) };
  const fwd = (x: Inputs): Float64Array => {
    const o = new Float64Array(N * C), r = new Float64Array(N);
    ref.rmsnormForward(f64(o), f64(r), f64(x.x), f64(x.w), N, C, eps);
    return o;
  };
  const bwd = (x: Inputs, d: Float64Array, init = 0): Inputs => {
    const o = new Float64Array(N * C), r = new Float64Array(N);
    ref.rmsnormForward(f64(o), f64(r), f64(x.x), f64(x.w), N, C, eps);
    const dx = new Float64Array(N * C).fill(init), dw = new Float64Array(C).fill(init);
    ref.rmsnormBackward(f64(dx), f64(dw), f64(d), f64(x.x), f64(x.w), f64(r), N, C);
    return { x: dx, w: dw };
  };
  gradCheck({ label: "rmsnorm", inputs, forward: fwd, backward: bwd });
  const d = rand64(N * C, rng), g0 = bwd(inputs, d), g1 = bwd(inputs, d, 0.25);
  for (let i = 0; i < C; i++) assert.ok(Math.abs(g1.w[i] - g0.w[i] - 0.25) < 1e-12, "rmsnormBackward must add into dw");
  for (let i = 0; i < N * C; i++) assert.ok(Math.abs(g1.x[i] - g0.x[i] - 0.25) < 1e-12, "rmsnormBackward must add into dx");
});

test("reference rope: backward = finite differences; rotation keeps norms; pos0 offsets the table", () => {
  const rng = mulberry32(3), B = 2, T = 3, H = 2, D = 6, pos0 = 2;
  const { cos, sin } = ropeTables(pos0 + T, D, 10000);
  const fwd = (x: Inputs): Float64Array => { const o = x.x.slice(); ref.ropeForward(f64(o), cos, sin, B, T, H, D, pos0); return o; };
  const inputs = { x: rand64(B * T * H * D, rng) };
  gradCheck({
    label: "rope", inputs, forward: fwd,
    backward: (_x, d) => { const g = d.slice(); ref.ropeBackward(f64(g), cos, sin, B, T, H, D, pos0); return { x: g }; },
  });
  // Rotation per pair (i, i + D/2) preserves x[i]² + x[i+D/2]²; position 0 is the identity.
  const y = fwd(inputs);
  for (let v = 0; v < B * T * H; v++)
    for (let i = 0; i < D / 2; i++) {
      const a = inputs.x[v * D + i] ** 2 + inputs.x[v * D + i + D / 2] ** 2;
      const b = y[v * D + i] ** 2 + y[v * D + i + D / 2] ** 2;
      assert.ok(Math.abs(a - b) < 1e-6, `rope must preserve pair norms (${a} vs ${b})`);
    }
  const z = inputs.x.slice(0, H * D);
  ref.ropeForward(f64(z), cos, sin, 1, 1, H, D, 0);
  assert.deepEqual(Array.from(z), Array.from(inputs.x.slice(0, H * D)), "position 0 must not rotate");
});

test("reference attention backward = finite differences (GQA H=4, Hkv=2), lse is the log-sum-exp", () => {
  const rng = mulberry32(4), B = 2, T = 5, H = 4, Hkv = 2, D = 4;
  const inputs: Inputs = { q: rand64(B * T * H * D, rng, -2, 2), k: rand64(B * T * Hkv * D, rng, -2, 2), v: rand64(B * T * Hkv * D, rng) };
  const run = (x: Inputs) => {
    const o = new Float64Array(B * T * H * D), lse = new Float64Array(B * H * T);
    ref.attentionForward(f64(o), f64(lse), f64(x.q), f64(x.k), f64(x.v), B, T, H, Hkv, D);
    return { o, lse };
  };
  gradCheck({
    label: "attention", inputs, forward: (x) => run(x).o,
    backward: (x, d) => {
      const { o, lse } = run(x);
      const g: Inputs = { q: new Float64Array(x.q.length), k: new Float64Array(x.k.length), v: new Float64Array(x.v.length) };
      ref.attentionBackward(f64(g.q), f64(g.k), f64(g.v), f64(d), f64(x.q), f64(x.k), f64(x.v), f64(o), f64(lse), B, T, H, Hkv, D);
      return g;
    },
  });
  // lse of query (b=1, h=3, t=2) computed by hand: kv head 3 / 2 = 1, keys 0..2.
  const { lse } = run(inputs);
  let s = 0;
  for (let j = 0; j <= 2; j++) {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += inputs.q[((1 * T + 2) * H + 3) * D + d] * inputs.k[((1 * T + j) * Hkv + 1) * D + d];
    s += Math.exp(dot / Math.sqrt(D));
  }
  assert.ok(Math.abs(lse[(1 * H + 3) * T + 2] - Math.log(s)) < 1e-12);
  // The first query sees only itself: out = v_0 of its kv head.
  const { o } = run(inputs);
  for (let d = 0; d < D; d++) assert.ok(Math.abs(o[3 * D + d] - inputs.v[1 * D + d]) < 1e-12, "t=0 must attend only to itself");
});

test("reference swiglu backward = finite differences", () => {
  const rng = mulberry32(5), n = 11;
  gradCheck({
    label: "swiglu", inputs: { gate: rand64(n, rng, -4, 4), up: rand64(n, rng) },
    forward: (x) => { const o = new Float64Array(n); ref.swigluForward(f64(o), f64(x.gate), f64(x.up), n); return o; },
    backward: (x, d) => {
      const g = { gate: new Float64Array(n), up: new Float64Array(n) };
      ref.swigluBackward(f64(g.gate), f64(g.up), f64(d), f64(x.gate), f64(x.up), n);
      return g;
    },
  });
});

test("reference cross-entropy gradient = finite differences of the returned loss; losses sum to it", () => {
  const rng = mulberry32(6), N = 4, V = 5, sc = 0.5;
  const targets = Int32Array.from([1, -1, 4, 0]);
  const inputs = { logits: rand64(N * V, rng, -3, 3) };
  // The op's loss is a scalar: let "out" be [loss], so Σ out·r = r·loss and d/dlogits = r·dlogits/scale.
  gradCheck({
    label: "crossEntropy", inputs,
    forward: (x) => Float64Array.of(ref.crossEntropy(null, null, f64(x.logits), targets, N, V, 1)),
    backward: (x, d) => {
      const g = new Float64Array(N * V);
      ref.crossEntropy(f64(g), null, f64(x.logits), targets, N, V, sc);
      for (let i = 0; i < g.length; i++) g[i] *= d[0] / sc;
      return { logits: g };
    },
  });
  const losses = new Float64Array(N);
  const total = ref.crossEntropy(null, f64(losses), f64(inputs.logits), targets, N, V, 1);
  assert.equal(losses[1], 0);
  assert.ok(Math.abs(losses.reduce((a, b) => a + b, 0) - total) < 1e-12);
  // In place: dlogits === logits gives the same gradient.
  const a = new Float64Array(N * V), b = inputs.logits.slice();
  ref.crossEntropy(f64(a), null, f64(inputs.logits), targets, N, V, sc);
  ref.crossEntropy(f64(b), null, f64(b), targets, N, V, sc);
  assert.deepEqual(Array.from(b), Array.from(a));
});

test("reference adamw: the first step moves each weight by ≈ lr against its gradient's sign", () => {
  const rng = mulberry32(8), n = 9, lr = 0.01;
  const p = randomF32(n, rng), g = randomF32(n, rng), p0 = p.slice();
  ref.adamw(p, g, new Float32Array(n), new Float32Array(n), n, lr, 0.9, 0.95, 1e-12, 0, 1);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(p0[i] - p[i] - lr * Math.sign(g[i])) < 1e-6, `adamw step ${i}`);
});

/** max |OᵀO − I| (or OOᵀ on the shorter side) of O [rows, cols]. */
function orthoError(O: ArrayLike<number>, rows: number, cols: number): number {
  const tall = rows > cols, m = Math.min(rows, cols), k = Math.max(rows, cols);
  let worst = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let l = 0; l < k; l++) s += tall ? O[l * cols + i] * O[l * cols + j] : O[i * cols + l] * O[j * cols + l];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  return worst;
}

test("reference Newton–Schulz: singular values pushed near 1 (OOᵀ ≈ I on the shorter side)", () => {
  const rng = mulberry32(9);
  for (const [rows, cols] of [[6, 10], [12, 5]]) {
    const O = newtonSchulz5(randomF32(rows * cols, rng), rows, cols, 5);
    // Muon's quintic deliberately lands singular values in roughly [0.7, 1.2], not exactly 1.
    const e = orthoError(O, rows, cols);
    assert.ok(e < 0.45, `NS5 [${rows}, ${cols}]: max |OOᵀ − I| = ${e}`);
  }
});

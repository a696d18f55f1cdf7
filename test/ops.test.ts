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
import { loadNative, nativeBackend } from "../src/core/native.ts";
import { difference, uniformSource, randomF32, randomI32, ropeTables } from "../src/core/tensor-utils.ts";
import { compareBackends, f64, gradCheck, type Inputs } from "./helpers/opcheck.ts";

function rand64(n: number, rng: () => number, lo = -1, hi = 1): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}

// ------------------------------------------------------------------ 1. reference vs finite differences

test("reference embedding backward = finite differences (ids −1 skipped)", () => {
  const rng = uniformSource(1), V = 5, C = 3, N = 7;
  const ids = randomI32(N, rng, V); ids[2] = -1;
  gradCheck({
    label: "embedding", inputs: { table: rand64(V * C, rng) },
    forward: (x) => { const o = new Float64Array(N * C); ref.embeddingForward(f64(o), f64(x.table), ids, N, C); return o; },
    backward: (_x, d) => { const g = new Float64Array(V * C); ref.embeddingBackward(f64(g), f64(d), ids, N, C); return { table: g }; },
  });
});

test("reference rmsnorm backward = finite differences, and it adds into dx and dw", () => {
  const rng = uniformSource(2), N = 3, C = 7, eps = 1e-5;
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
  const rng = uniformSource(3), B = 2, T = 3, H = 2, D = 6, pos0 = 2;
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
  const rng = uniformSource(4), B = 2, T = 5, H = 4, Hkv = 2, D = 4;
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
  const rng = uniformSource(5), n = 11;
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
  const rng = uniformSource(6), N = 4, V = 5, sc = 0.5;
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
  const rng = uniformSource(8), n = 9, lr = 0.01;
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
  const rng = uniformSource(9);
  for (const [rows, cols] of [[6, 10], [12, 5]]) {
    const O = newtonSchulz5(randomF32(rows * cols, rng), rows, cols, 5);
    // Muon's quintic deliberately lands singular values s in roughly [0.68, 1.2], not exactly 1;
    // OOᵀ − I then has entries up to max(1 − 0.68², 1.2² − 1) ≈ 0.54 (a random input is at ~2).
    const e = orthoError(O, rows, cols);
    assert.ok(e < 0.54, `NS5 [${rows}, ${cols}]: max |OOᵀ − I| = ${e}`);
  }
});

// ------------------------------------------------------------------ 2. native vs reference

const addon = loadNative();
const nat: Backend = nativeBackend();
const startThreads = addon.threads();
after(() => addon.setThreads(startThreads));

/** Runs fn with 1 and then 2 native threads (ops that reduce must agree either way). */
function withThreads(fn: (threads: number) => void): void {
  for (const n of [1, 2]) { addon.setThreads(n); fn(n); }
}

test("native embedding forward/backward = reference (ids −1, adds into dTable)", () => {
  const rng = uniformSource(11);
  for (const [N, C, V] of [[1, 5, 3], [33, 67, 10], [65, 384, 50], [300, 200, 7]]) {
    const ids = randomI32(N, rng, V);
    ids[N - 1] = -1;
    withThreads((th) => {
      const label = `embedding N=${N} C=${C} V=${V} threads=${th}`;
      compareBackends(nat, ref, { label, tol: 1e-6, outputs: ["out"],
        tensors: { out: new Float32Array(N * C), table: randomF32(V * C, rng), ids },
        call: (be, t) => be.embeddingForward(t.out as Float32Array, t.table as Float32Array, ids, N, C) });
      compareBackends(nat, ref, { label, tol: 1e-6, outputs: ["dTable"],
        tensors: { dTable: randomF32(V * C, rng), dOut: randomF32(N * C, rng) },
        call: (be, t) => be.embeddingBackward(t.dTable as Float32Array, t.dOut as Float32Array, ids, N, C) });
    });
  }
  assert.throws(() => nat.embeddingForward(new Float32Array(6), new Float32Array(6), Int32Array.of(3), 1, 2), /ids\[0\] = 3/);
});

test("native rmsnorm forward/backward = reference (1 and 2 threads, adds into dx and dw)", () => {
  const rng = uniformSource(12);
  for (const [N, C] of [[1, 5], [7, 67], [33, 384], [300, 64]]) {
    const x = randomF32(N * C, rng, -2, 2), w = randomF32(C, rng, 0.5, 1.5), dout = randomF32(N * C, rng);
    const rstd = new Float32Array(N);
    ref.rmsnormForward(new Float32Array(N * C), rstd, x, w, N, C, 1e-5);
    withThreads((th) => {
      const label = `rmsnorm N=${N} C=${C} threads=${th}`;
      compareBackends(nat, ref, { label, tol: 1e-5, floor: 1e-3, outputs: ["out", "rstd"],
        tensors: { out: new Float32Array(N * C), rstd: new Float32Array(N) },
        call: (be, t) => be.rmsnormForward(t.out as Float32Array, t.rstd as Float32Array, x, w, N, C, 1e-5) });
      compareBackends(nat, ref, { label, tol: 1e-4, floor: 1e-2, outputs: ["dx", "dw"],
        tensors: { dx: randomF32(N * C, rng), dw: randomF32(C, rng) },
        call: (be, t) => be.rmsnormBackward(t.dx as Float32Array, t.dw as Float32Array, dout, x, w, rstd, N, C) });
    });
  }
});

test("native rope forward/backward = reference (odd head sizes, pos0)", () => {
  const rng = uniformSource(13);
  for (const [B, T, H, D, pos0] of [[1, 1, 1, 8, 0], [2, 7, 3, 12, 5], [2, 33, 4, 64, 0], [1, 65, 2, 32, 100]]) {
    const { cos, sin } = ropeTables(pos0 + T, D, 10000);
    for (const dir of ["ropeForward", "ropeBackward"] as const) {
      compareBackends(nat, ref, { label: `${dir} B=${B} T=${T} H=${H} D=${D} pos0=${pos0}`, tol: 1e-5, floor: 3e-2,
        outputs: ["x"], tensors: { x: randomF32(B * T * H * D, rng) },
        call: (be, t) => be[dir](t.x as Float32Array, cos, sin, B, T, H, D, pos0) });
    }
  }
});

const ATTN_SHAPES: [number, number, number, number, number][] = [
  // B, T, H, Hkv, D: tile edges (T = 1, 7, 33, 65, 129 around the 32/64 tiles), GQA, odd D
  [1, 1, 1, 1, 8], [2, 7, 4, 2, 12], [1, 33, 6, 1, 32], [2, 65, 4, 2, 64], [1, 129, 6, 1, 64], [1, 40, 2, 2, 128],
  [2, 20, 2, 1, 16], [1, 35, 3, 3, 96],
  [1, 200, 2, 1, 64], // B·H below the thread count: each head's query tiles split over tasks
];

test("native attention forward/backward = reference (causal, GQA, tile edges; 1 and 2 threads)", () => {
  const rng = uniformSource(14);
  for (const [B, T, H, Hkv, D] of ATTN_SHAPES) {
    const q = randomF32(B * T * H * D, rng, -2, 2), k = randomF32(B * T * Hkv * D, rng, -2, 2);
    const v = randomF32(B * T * Hkv * D, rng), dout = randomF32(B * T * H * D, rng);
    const out = new Float32Array(B * T * H * D), lse = new Float32Array(B * H * T);
    ref.attentionForward(out, lse, q, k, v, B, T, H, Hkv, D);
    withThreads((th) => {
      const label = `attention B=${B} T=${T} H=${H} Hkv=${Hkv} D=${D} threads=${th}`;
      compareBackends(nat, ref, { label, tol: 1e-4, floor: 1e-2, outputs: ["out", "lse"],
        tensors: { out: new Float32Array(out.length).fill(NaN), lse: new Float32Array(lse.length).fill(NaN) },
        call: (be, t) => be.attentionForward(t.out as Float32Array, t.lse as Float32Array, q, k, v, B, T, H, Hkv, D) });
      compareBackends(nat, ref, { label, tol: 2e-4, floor: 1e-2, outputs: ["dq", "dk", "dv"],
        tensors: { dq: new Float32Array(q.length).fill(NaN), dk: new Float32Array(k.length).fill(NaN), dv: new Float32Array(v.length).fill(NaN) },
        call: (be, t) => be.attentionBackward(t.dq as Float32Array, t.dk as Float32Array, t.dv as Float32Array,
          dout, q, k, v, out, lse, B, T, H, Hkv, D) });
    });
  }
});

test("attentionCached = attentionForward on the same prefix (prefill chunk and single-token decode)", () => {
  const rng = uniformSource(15);
  for (const be of [nat, ref]) {
    for (const [B, T, H, Hkv, D, maxT] of [[2, 33, 6, 2, 32, 40], [1, 70, 4, 1, 64, 70]]) {
      const q = randomF32(B * T * H * D, rng, -2, 2), k = randomF32(B * T * Hkv * D, rng, -2, 2), v = randomF32(B * T * Hkv * D, rng);
      const out = new Float32Array(B * T * H * D);
      be.attentionForward(out, new Float32Array(B * H * T), q, k, v, B, T, H, Hkv, D);
      // The cache holds the keys/values of positions 0..T−1; what lies past them must not be read.
      const kc = new Float32Array(B * maxT * Hkv * D).fill(NaN), vc = kc.slice();
      for (let b = 0; b < B; b++) {
        kc.set(k.subarray(b * T * Hkv * D, (b + 1) * T * Hkv * D), b * maxT * Hkv * D);
        vc.set(v.subarray(b * T * Hkv * D, (b + 1) * T * Hkv * D), b * maxT * Hkv * D);
      }
      // Tq ≥ 16 takes the tiled prefill path (at pos0 = 0 and past it), shorter chunks the decode path.
      for (const [pos0, Tq] of [[0, T], [T - 20, 20], [T - 5, 5], [T - 1, 1]]) {
        const qs = new Float32Array(B * Tq * H * D), want = new Float32Array(B * Tq * H * D);
        for (let b = 0; b < B; b++) {
          qs.set(q.subarray((b * T + pos0) * H * D, (b * T + pos0 + Tq) * H * D), b * Tq * H * D);
          want.set(out.subarray((b * T + pos0) * H * D, (b * T + pos0 + Tq) * H * D), b * Tq * H * D);
        }
        const got = new Float32Array(B * Tq * H * D);
        be.attentionCached(got, qs, kc, vc, B, Tq, H, Hkv, D, pos0, maxT);
        const d = difference(got, want, 1e-2);
        assert.ok(d.maxRel < 1e-4, `${be.name} attentionCached B=${B} T=${T} pos0=${pos0} Tq=${Tq}: ` +
          `max relative difference ${d.maxRel} at [${d.at}] (${got[d.at]} vs ${want[d.at]})`);
      }
    }
  }
});

test("native swiglu forward/backward = reference", () => {
  const rng = uniformSource(16);
  for (const n of [1, 17, 1000, 70001]) {
    const gate = randomF32(n, rng, -8, 8), up = randomF32(n, rng), dout = randomF32(n, rng);
    compareBackends(nat, ref, { label: `swigluForward n=${n}`, tol: 1e-5, floor: 0.1, outputs: ["out"],
      tensors: { out: new Float32Array(n) }, call: (be, t) => be.swigluForward(t.out as Float32Array, gate, up, n) });
    compareBackends(nat, ref, { label: `swigluBackward n=${n}`, tol: 1e-5, floor: 0.1, outputs: ["dgate", "dup"],
      tensors: { dgate: new Float32Array(n), dup: new Float32Array(n) },
      call: (be, t) => be.swigluBackward(t.dgate as Float32Array, t.dup as Float32Array, dout, gate, up, n) });
  }
});

test("native cross-entropy = reference (ignored rows, losses, in place, large logits; 1 and 2 threads)", () => {
  const rng = uniformSource(17);
  for (const [N, V, spread] of [[1, 5, 3], [7, 67, 3], [33, 384, 30], [20, 5000, 10]]) {
    const logits = randomF32(N * V, rng, -spread, spread), targets = randomI32(N, rng, V);
    targets[Math.floor(N / 2)] = -1;
    withThreads((th) => {
      const label = `crossEntropy N=${N} V=${V} threads=${th}`;
      compareBackends(nat, ref, { label, tol: 1e-5, floor: 1e-6, retTol: 1e-6, outputs: ["dlogits", "losses"],
        tensors: { dlogits: new Float32Array(N * V).fill(NaN), losses: new Float32Array(N).fill(NaN) },
        call: (be, t) => be.crossEntropy(t.dlogits as Float32Array, t.losses as Float32Array, logits, targets, N, V, 1 / N) });
      compareBackends(nat, ref, { label: `${label} in place`, tol: 1e-5, floor: 1e-6, retTol: 1e-6, outputs: ["x"],
        tensors: { x: logits.slice() },
        call: (be, t) => be.crossEntropy(t.x as Float32Array, null, t.x as Float32Array, targets, N, V, 0.5) });
      const l1 = nat.crossEntropy(null, null, logits, targets, N, V, 1), l2 = ref.crossEntropy(null, null, logits, targets, N, V, 1);
      assert.ok(Math.abs(l1 - l2) <= 1e-6 * Math.abs(l2), `${label}: loss without gradient ${l1} vs ${l2}`);
    });
  }
  assert.throws(() => nat.crossEntropy(null, null, new Float32Array(4), Int32Array.of(4), 1, 4, 1), /targets\[0\] = 4/);
});

test("native adamw = reference over three steps", () => {
  const rng = uniformSource(18), n = 10007;
  const p = randomF32(n, rng), m = new Float32Array(n), v = new Float32Array(n);
  const t = { p, m, v };
  const tn = { p: p.slice(), m: m.slice(), v: v.slice() };
  for (let step = 1; step <= 3; step++) {
    const g = randomF32(n, rng);
    ref.adamw(t.p, g, t.m, t.v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
    nat.adamw(tn.p, g, tn.m, tn.v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, step);
  }
  for (const k of ["p", "m", "v"] as const) {
    const d = difference(tn[k], t[k], 1e-2);
    assert.ok(d.maxRel < 2e-5, `adamw ${k}: max relative difference ${d.maxRel} at [${d.at}]`);
  }
});

test("native muon = reference (wide, tall, square) and its update is near-orthogonal", () => {
  const rng = uniformSource(19);
  for (const [rows, cols] of [[16, 40], [40, 16], [64, 64]]) {
    const n = rows * cols, g = randomF32(n, rng), mom = randomF32(n, rng, -0.1, 0.1);
    // param 0, lr 1, no decay: the update is −sqrt(max(1, rows/cols))·O itself.
    const label = `muon [${rows}, ${cols}]`;
    compareBackends(nat, ref, { label, tol: 2e-3, floor: 1e-2, outputs: ["p", "mom"],
      tensors: { p: new Float32Array(n), mom },
      call: (be, t) => be.muon(t.p as Float32Array, g, t.mom as Float32Array, rows, cols, 1, 0.95, 0, 5) });
    const p = new Float32Array(n);
    nat.muon(p, g, mom.slice(), rows, cols, 1, 0.95, 0, 5);
    const s = Math.sqrt(Math.max(1, rows / cols));
    const e = orthoError(p.map((x) => -x / s), rows, cols);
    assert.ok(e < 0.45, `${label}: max |OOᵀ − I| = ${e}`);
    // Weight decay: p −= lr·wd·p on top of the orthogonal step.
    const p0 = randomF32(n, rng), pa = p0.slice(), pb = p0.slice();
    nat.muon(pa, g, mom.slice(), rows, cols, 0.01, 0.95, 0, 5);
    nat.muon(pb, g, mom.slice(), rows, cols, 0.01, 0.95, 0.5, 5);
    for (let i = 0; i < n; i += 97) assert.ok(Math.abs(pa[i] - pb[i] - 0.005 * p0[i]) < 1e-6, `${label}: weight decay at ${i}`);
  }
});

test("native sumSquares (float64, same result for 1 and 2 threads) and scale = reference", () => {
  const rng = uniformSource(20);
  for (const n of [1, 17, 100003, 1 << 20]) {
    const x = randomF32(n, rng);
    const want = ref.sumSquares(x, n);
    const got: number[] = [];
    withThreads(() => got.push(nat.sumSquares(x, n)));
    assert.equal(got[0], got[1], `sumSquares n=${n}: 1 vs 2 threads`);
    assert.ok(Math.abs(got[0] - want) <= 1e-12 * want, `sumSquares n=${n}: ${got[0]} vs ${want}`);
    const a = x.slice(), b = x.slice();
    nat.scale(a, n, 0.37);
    ref.scale(b, n, 0.37);
    assert.deepEqual(a, b, `scale n=${n}`);
  }
});

test("reference gemm (float64 sums) = native gemm, all four transpose forms, beta 0 ignores NaN", () => {
  const rng = uniformSource(21);
  for (const [M, N, K] of [[1, 1, 1], [5, 7, 3], [17, 33, 20]]) {
    for (const ta of [false, true]) for (const tb of [false, true]) {
      const A = randomF32(M * K, rng), B = randomF32(K * N, rng);
      for (const [alpha, beta] of [[1, 0], [0.5, 1.5]]) {
        compareBackends(nat, ref, { label: `gemm ${ta ? "T" : "N"}${tb ? "T" : "N"} M=${M} N=${N} K=${K} beta=${beta}`,
          tol: 2e-5, floor: 0.1, outputs: ["C"],
          tensors: { C: beta === 0 ? new Float32Array(M * N).fill(NaN) : randomF32(M * N, rng) },
          call: (be, t) => be.gemm(ta, tb, M, N, K, alpha, A, B, beta, t.C as Float32Array) });
      }
    }
  }
});

test("native ops work on subarray views (offset memory) and name the op and argument on bad shapes", () => {
  const rng = uniformSource(22), B = 2, T = 9, H = 4, Hkv = 2, D = 32, n = B * T * H * D, nk = B * T * Hkv * D;
  const big = randomF32(n + 2 * nk + 40, rng);
  const q = big.subarray(7, 7 + n), k = big.subarray(7 + n, 7 + n + nk), v = big.subarray(7 + n + nk, 7 + n + 2 * nk);
  const o1 = new Float32Array(n + 5), l1 = new Float32Array(B * H * T);
  nat.attentionForward(o1.subarray(5), l1, q, k, v, B, T, H, Hkv, D);
  const o2 = new Float32Array(n), l2 = new Float32Array(B * H * T);
  nat.attentionForward(o2, l2, q.slice(), k.slice(), v.slice(), B, T, H, Hkv, D);
  assert.deepEqual(o1.subarray(5), o2);
  assert.throws(() => nat.attentionForward(o2, l2, q.subarray(1), k, v, B, T, H, Hkv, D), /attentionForward: q has \d+ elements, the shapes need \d+/);
  assert.throws(() => nat.attentionForward(o2, l2, q, k, v, B, T, H, 3, D), /attentionForward: H must be a positive multiple of Hkv/);
  assert.throws(() => nat.rmsnormForward(o2, l2, q, new Float32Array(3), 4, 8, 1e-5), /rmsnormForward: w has 3 elements/);
  assert.throws(() => nat.ropeForward(q, new Float32Array(4), new Float32Array(4), 1, 2, 1, 8, 0), /ropeForward: cos has 4 elements, the shapes need 8/);
  assert.throws(() => nat.attentionCached(o2, q, k, v, 1, 2, H, Hkv, D, 8, 9), /pos0 \+ Tq exceeds/);
});

test("native logSumExp = float64 reference within its bound; rows independent of the batch and thread count", () => {
  const rng = uniformSource(23);
  for (const [R, V, spread] of [[1, 1, 1], [3, 17, 4], [16, 1024, 8], [5, 32768, 20], [2, 151936, 30]]) {
    const x = randomF32(R * V, rng, -spread, spread);
    if (V > 1) x[V - 1] = -Infinity; // a masked entry (padded vocabulary) adds nothing
    const want = new Float32Array(R);
    ref.logSumExp(want, x, R, V);
    const wanted64: number[] = [];
    for (let n = 0; n < R; n++) {
      let m = -Infinity, s = 0;
      for (let j = 0; j < V; j++) m = Math.max(m, x[n * V + j]);
      for (let j = 0; j < V; j++) s += Math.exp(x[n * V + j] - m);
      wanted64.push(m + Math.log(s));
    }
    for (let n = 0; n < R; n++) assert.ok(Math.abs(want[n] - wanted64[n]) <= Math.abs(wanted64[n]) * 2 ** -24, `reference row ${n}`);
    withThreads((th) => {
      const got = new Float32Array(R);
      nat.logSumExp(got, x, R, V);
      for (let n = 0; n < R; n++) {
        // exp_fast is within ~2 ulp; the float32 sum of V terms (16 lanes, then the lanes) adds
        // up to (V/16 + 16) roundings of 2^-24 relative to the sum; the output is rounded to float32.
        const bound = 4 * 2 ** -24 + (V / 16 + 16) * 2 ** -24 + Math.abs(wanted64[n]) * 2 ** -24;
        assert.ok(Math.abs(got[n] - wanted64[n]) <= bound, `R=${R} V=${V} threads=${th} row ${n}: ${got[n]} vs ${wanted64[n]} (bound ${bound})`);
        // each row alone gives the same bits
        const one = new Float32Array(1);
        nat.logSumExp(one, x.subarray(n * V, (n + 1) * V), 1, V);
        assert.equal(one[0], got[n]);
      }
    });
  }
  assert.throws(() => nat.logSumExp(new Float32Array(1), new Float32Array(3), 1, 4), /logSumExp: x has 3 elements, the shapes need 4/);
});

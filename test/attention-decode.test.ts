/**
 * attentionDecode (native/attention_decode.c): one decoding step's rope, KV-cache write and
 * attention over a ragged batch, against the reference backend (float64 sums) and against
 * itself: every row of a batch must have exactly the bits it gets alone, at 1 and at 2 threads.
 * Shapes: GQA (H ≠ Hkv) and not, D = 32, 48, 64, 128 and 40 (not a multiple of the 16-lane
 * vectors), a row at position 0, a row at the cache's last position, a short chunk of one
 * sequence at consecutive positions, and a skipped row (slot −1). And forwardCached, which
 * feeds every decoding row of a step through one such call per layer: each sequence of a
 * ragged batch gets exactly the logits it gets alone.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { referenceBackend as ref } from "../src/core/reference.ts";
import { loadNative, nativeBackend } from "../src/core/native.ts";
import { difference, normalizedMaxDiff, uniformSource, randomF32, ropeTables } from "../src/core/tensor-utils.ts";
import { createCache, forwardCached, type DecodeConfig, type KvCache } from "../src/model/decode.ts";
import { tinyModel } from "./infer-tiny.ts";

const addon = loadNative();
const nat = nativeBackend();
const startThreads = addon.threads();
after(() => addon.setThreads(startThreads));

interface Case { H: number; Hkv: number; D: number; S: number; maxT: number; rows: [number, number][] }

/** The cache filled with random keys/values up to each slot's longest row; NaN past it (must never be read). */
function setup(c: Case, seed: number) {
  const rng = uniformSource(seed), { H, Hkv, D, S, maxT, rows } = c, N = rows.length;
  const per = maxT * Hkv * D;
  const kc = new Float32Array(S * per).fill(NaN), vc = new Float32Array(S * per).fill(NaN);
  for (let s = 0; s < S; s++) {
    const upto = Math.max(-1, ...rows.filter(([sl]) => sl === s).map(([, p]) => p));
    for (let i = 0; i < (upto + 1) * Hkv * D; i++) { kc[s * per + i] = 4 * rng() - 2; vc[s * per + i] = 2 * rng() - 1; }
  }
  return {
    q: randomF32(N * H * D, rng, -2, 2), k: randomF32(N * Hkv * D, rng, -2, 2), v: randomF32(N * Hkv * D, rng),
    kc, vc, slot: Int32Array.from(rows, ([s]) => s), pos: Int32Array.from(rows, ([, p]) => p),
    ...ropeTables(maxT, D, 10000),
  };
}

function run(be: typeof nat, c: Case, t: ReturnType<typeof setup>) {
  const N = c.rows.length, q = t.q.slice(), k = t.k.slice(), kc = t.kc.slice(), vc = t.vc.slice();
  const out = new Float32Array(N * c.H * c.D).fill(7);
  be.attentionDecode(out, q, k, t.v, kc, vc, t.cos, t.sin, t.slot, t.pos, N, c.H, c.Hkv, c.D, c.S, c.maxT);
  return { out, q, k, kc, vc };
}

const CASES: Case[] = [
  // 6 × 384 serving shape: 16 slots at scattered positions, one at 0 and one at the cache end
  { H: 6, Hkv: 6, D: 64, S: 16, maxT: 96, rows: [[0, 40], [1, 0], [2, 95], [3, 17], [4, 63], [5, 64], [6, 1], [7, 33], [8, 80], [9, 5], [10, 15], [11, 16], [12, 47], [13, 70], [14, 2], [15, 31]] },
  // speedrun shape (GQA 4/2, D = 32), with a skipped row and a chunk of 3 tokens of slot 2
  { H: 4, Hkv: 2, D: 32, S: 4, maxT: 50, rows: [[1, 9], [2, 20], [2, 21], [2, 22], [0, 0], [-1, 0], [3, 49]] },
  { H: 8, Hkv: 2, D: 128, S: 3, maxT: 40, rows: [[2, 39], [0, 0], [1, 18]] },
  { H: 6, Hkv: 3, D: 48, S: 2, maxT: 70, rows: [[0, 69], [1, 33]] },
  { H: 4, Hkv: 1, D: 40, S: 2, maxT: 37, rows: [[1, 36], [0, 3]] },
];

test("attentionDecode = reference (rope, cache writes, attention) on ragged batches, 1 and 2 threads", () => {
  CASES.forEach((c, i) => {
    const t = setup(c, 100 + i), want = run(ref, c, t);
    for (const th of [1, 2]) {
      addon.setThreads(th);
      const got = run(nat, c, t), label = `H=${c.H} Hkv=${c.Hkv} D=${c.D} threads=${th}`;
      // rope: one rotation per pair in float32 against float64 rounded once: ≤ 2 ulp of the
      // pair's magnitude (|x| ≤ 2 here, so 2·2⁻²³·2 absolute, ~5e-7)
      for (const [name, a, b] of [["q", got.q, want.q], ["k", got.k, want.k], ["kCache", got.kc, want.kc], ["vCache", got.vc, want.vc]] as const) {
        // (the caches past what was written hold NaN on both sides: NaN = NaN there)
        let worst = 0, at = -1;
        for (let e = 0; e < a.length; e++) {
          const diff = Number.isNaN(a[e]) && Number.isNaN(b[e]) ? 0 : Math.abs(a[e] - b[e]);
          if (!(diff <= worst)) { worst = diff; at = e; }
        }
        assert.ok(worst <= 5e-7, `${label}: ${name} max difference ${worst} at ${at} (${a[at]} vs ${b[at]})`);
      }
      // attention: float32 scores (D products, |q·k|·scale ≤ 2·2·√D), exp_fast (2e-7 relative)
      // and float32 sums of L ≤ 96 weighted values; against float64 a relative error of a few
      // 1e-6 of the output's scale (measured ≤ 1.7e-6; the values are in [−1, 1]). Skipped rows keep their 7s.
      const d = difference(got.out, want.out, 0.05);
      assert.ok(d.maxRel <= 1e-5, `${label}: out max relative difference ${d.maxRel} at ${d.at} (${got.out[d.at]} vs ${want.out[d.at]})`);
    }
  });
});

test("attentionDecode: each row of a batch gets exactly its bits alone, at 1 and at 2 threads", () => {
  CASES.forEach((c, i) => {
    const t = setup(c, 200 + i);
    addon.setThreads(1);
    const base = run(nat, c, t);
    addon.setThreads(2);
    assert.deepEqual(run(nat, c, t).out, base.out, `H=${c.H} D=${c.D}: 2 threads differ from 1`);
    // Alone: the row by itself, on a cache that holds what the batch had written before its
    // attention (the other rows' keys at their positions: a chunk's earlier tokens are part of it).
    const HD = c.H * c.D, kv = c.Hkv * c.D;
    c.rows.forEach(([s], n) => {
      if (s < 0) return;
      const one = new Float32Array(HD);
      const kc = base.kc.slice(), vc = base.vc.slice();
      nat.attentionDecode(one, t.q.slice(n * HD, (n + 1) * HD), t.k.slice(n * kv, (n + 1) * kv), t.v.slice(n * kv, (n + 1) * kv),
        kc, vc, t.cos, t.sin, t.slot.subarray(n, n + 1), t.pos.subarray(n, n + 1), 1, c.H, c.Hkv, c.D, c.S, c.maxT);
      assert.deepEqual(one, base.out.subarray(n * HD, (n + 1) * HD), `H=${c.H} D=${c.D}: row ${n} alone`);
    });
  });
});

test("attentionDecode refuses rows outside the cache and bad head shapes, naming them", () => {
  const c = CASES[1], t = setup(c, 300), N = c.rows.length;
  const call = (slot: Int32Array, pos: Int32Array, H = c.H, D = c.D) =>
    nat.attentionDecode(new Float32Array(N * H * D), t.q.slice(), t.k.slice(), t.v, t.kc.slice(), t.vc.slice(), t.cos, t.sin, slot, pos, N, H, c.Hkv, D, c.S, c.maxT);
  const bad = (i: number, v: number) => { const a = t.pos.slice(); a[i] = v; return a; };
  assert.throws(() => call(t.slot, bad(2, c.maxT)), /attentionDecode: row 2: slot 2, position 50 is outside the cache \(4 slots of 50 positions\)/);
  const s = t.slot.slice(); s[0] = 4;
  assert.throws(() => call(s, t.pos), /row 0: slot 4/);
  assert.throws(() => call(t.slot, t.pos, 3), /H must be a positive multiple of Hkv/);
  assert.throws(() => nat.attentionDecode(new Float32Array(1), t.q, t.k, t.v, t.kc, t.vc, t.cos, t.sin, t.slot, t.pos, N, c.H, c.Hkv, c.D, c.S, c.maxT),
    /out has 1 elements/);
});

// ------------------------------------------------------------------ forwardCached on top of it

// The same math summed in another order, through two layers of dot products of ≤ 128 terms:
// the worst-case reordering error of one such sum is ~K ulps of Σ|a·b| (test/gemm.test.ts's
// bound), so 128 float32 ulps of the largest logit (measured up to 5e-6 of it, ~83 ulps, at AVX2).
const ULPS = 128 * 2 ** -24;

/** Each slot's prompt prefilled alone, then one step of `counts` tokens per slot: batched, and each slot alone. */
function stepBothWays(cfg: Partial<DecodeConfig>, prompts: number[][], counts: number[], seed: number) {
  const m = tinyModel({ seqLen: 64, ...cfg }, seed, nat), V = m.config.vocabSize, S = prompts.length;
  const feed = prompts.map((p, i) => Array.from({ length: counts[i] }, (_, t) => (p.length * 7 + t * 3 + i) % V));
  const prefilled = (): KvCache => {
    const cache = createCache(m, S);
    prompts.forEach((p, i) => forwardCached(m, cache, [i], [p.length], p));
    return cache;
  };
  const slots = prompts.map((_, i) => i);
  const batched = forwardCached(m, prefilled(), slots, counts, feed.flat());
  const alone = slots.map((i) => forwardCached(m, prefilled(), [i], [counts[i]], feed[i]));
  return { batched, alone, V };
}

test("forwardCached: a ragged decoding step gives each sequence exactly its logits alone (1 and 2 threads)", () => {
  // Bitwise with AVX-512, where every product of up to 16 rows gives each row its solo bits
  // (test/gemm.test.ts); at the other levels 9–24 rows of a small W take the blocked GEMM, which
  // sums in another order: there within ULPS of the largest logit.
  const bitwise = addon.simd() === "avx512";
  // GQA with qk-norm and D = 8 (under one vector: masked loads), D = 32 (the speedrun's), D = 64
  // with one kv head; 10 sequences at scattered positions, one of them a 3-token chunk, one at 0
  const prompts = [[1], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21], [5, 6], [9, 9, 9, 9, 9],
    Array.from({ length: 40 }, (_, i) => (i * 5) % 31), [3, 1, 4, 1, 5, 9, 2, 6], [7], [8, 8], Array.from({ length: 62 }, (_, i) => i % 29), [4]];
  const counts = [1, 1, 3, 1, 1, 1, 1, 1, 1, 1];
  for (const cfg of [{}, { nEmbd: 128, nHead: 4, nKvHead: 2, qkNorm: false }, { nEmbd: 128, nHead: 2, nKvHead: 1 }]) {
    for (const th of [1, 2]) {
      addon.setThreads(th);
      const { batched, alone, V } = stepBothWays(cfg, prompts, counts, 41);
      alone.forEach((one, i) => {
        const row = batched.subarray(i * V, (i + 1) * V), label = `${JSON.stringify(cfg)} threads=${th}: sequence ${i}`;
        if (bitwise) assert.deepEqual(row, one, label);
        else assert.ok(normalizedMaxDiff(row, one) <= ULPS, `${label}: ${normalizedMaxDiff(row, one)}`);
      });
    }
  }
});

test("forwardCached: a step mixing a prefill chunk (tiled attention) with decoding rows equals each alone", () => {
  // 20 rows push the products to the blocked GEMM, whose sums run in another order than one
  // row's: equal within ULPS of the largest logit, not bitwise.
  const prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]];
  const counts = [1, 18, 1, 1];
  const { batched, alone, V } = stepBothWays({ nEmbd: 64, nHead: 4, nKvHead: 2 }, prompts, counts, 43);
  alone.forEach((one, i) => {
    const d = normalizedMaxDiff(batched.subarray(i * V, (i + 1) * V), one);
    assert.ok(d <= ULPS, `sequence ${i}: max difference ${d} of the largest logit`);
  });
});

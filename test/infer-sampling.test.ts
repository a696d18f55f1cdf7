/**
 * Sampling: greedy, temperature, top-k, top-p and repetition penalty checked against the
 * distributions they define (computed here from the formulas), and seeded reproducibility.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeRng } from "../src/infer/rng.ts";
import { sampleToken, checkSampling, GREEDY, type SamplingOptions } from "../src/infer/sampling.ts";

const opts = (o: Partial<SamplingOptions>): SamplingOptions => ({ ...GREEDY, temperature: 1, ...o });
const softmax = (z: number[], t = 1): number[] => {
  const m = Math.max(...z);
  const e = z.map((x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};
function freqs(logits: number[], o: SamplingOptions, n: number, seed = 1, ctx: number[] = []): number[] {
  const rng = makeRng(seed);
  const f = new Array(logits.length).fill(0);
  const z = Float32Array.from(logits);
  for (let i = 0; i < n; i++) f[sampleToken(z, o, rng, ctx).id]++;
  return f.map((x) => x / n);
}
// Within 4.5 standard errors of a binomial proportion.
function close(got: number[], want: number[], n: number): void {
  got.forEach((g, i) => {
    const se = Math.sqrt(Math.max(want[i] * (1 - want[i]), 1e-9) / n);
    assert.ok(Math.abs(g - want[i]) <= 4.5 * se + 1e-9, `token ${i}: ${g} vs ${want[i]} (got ${got}, want ${want})`);
  });
}

const Z = [1.0, 2.5, 0.3, 2.0, -1.0];

test("greedy takes the argmax; its logprob is log softmax", () => {
  const r = sampleToken(Float32Array.from(Z), GREEDY, makeRng(0));
  assert.equal(r.id, 1);
  assert.ok(Math.abs(r.logprob - Math.log(softmax(Z)[1])) < 1e-6);
  assert.equal(sampleToken(Float32Array.from([3, 3, 1]), GREEDY, makeRng(0)).id, 0);
});

test("temperature sampling follows softmax(z / T)", () => {
  const n = 20000;
  close(freqs(Z, opts({ temperature: 1 }), n), softmax(Z, 1), n);
  close(freqs(Z, opts({ temperature: 0.5 }), n, 2), softmax(Z, 0.5), n);
  close(freqs(Z, opts({ temperature: 2 }), n, 3), softmax(Z, 2), n);
});

test("top-k keeps the k best, renormalized", () => {
  const n = 20000;
  const p = softmax(Z);
  const k3 = [0, 1, 3];
  const s = k3.reduce((a, i) => a + p[i], 0);
  close(freqs(Z, opts({ topK: 3 }), n), p.map((x, i) => (k3.includes(i) ? x / s : 0)), n);
});

test("top-p keeps the smallest set reaching p", () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const z = probs.map(Math.log);
  const n = 20000;
  close(freqs(z, opts({ topP: 0.7 }), n), [0.5 / 0.8, 0.3 / 0.8, 0, 0], n);
  close(freqs(z, opts({ topP: 0.9 }), n), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], n);
  close(freqs(z, opts({ topP: 0.4 }), n), [1, 0, 0, 0], n);
});

test("repetition penalty divides positive and multiplies negative logits of seen tokens", () => {
  const z = Float32Array.from([2, -1, 1.9]);
  assert.equal(sampleToken(z, { ...GREEDY, repetitionPenalty: 1.5 }, makeRng(0), [0]).id, 2);
  assert.equal(sampleToken(z, { ...GREEDY, repetitionPenalty: 1.5 }, makeRng(0), [2]).id, 0);
  // Sampling: the penalized distribution is softmax([2/1.5, -1·1.5, 1.9]).
  const n = 20000;
  close(freqs([2, -1, 1.9], opts({ repetitionPenalty: 1.5 }), n, 4, [0, 1]), softmax([2 / 1.5, -1.5, 1.9]), n);
});

test("same seed, same samples; another seed, other samples; bad options are named", () => {
  const run = (seed: number): number[] => {
    const rng = makeRng(seed);
    return Array.from({ length: 50 }, () => sampleToken(Float32Array.from(Z), opts({ temperature: 1.5 }), rng).id);
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
  assert.throws(() => checkSampling(opts({ topP: 0 })), /topP/);
  assert.throws(() => checkSampling(opts({ temperature: -1 })), /temperature/);
  assert.throws(() => checkSampling(opts({ topK: 1.5 })), /topK/);
});

/** The sampler as it was before partial selection: sort the whole vocabulary (kept here as the reference). */
function fullSortSample(logits: Float32Array, o: SamplingOptions, rng: ReturnType<typeof makeRng>): number {
  const V = logits.length;
  const z = logits;
  let order = Array.from({ length: V }, (_, i) => i);
  order.sort((a, b) => z[b] - z[a] || a - b);
  if (o.topK > 0 && o.topK < V) order = order.slice(0, o.topK);
  const max = z[order[0]];
  const p = order.map((i) => Math.exp((z[i] - max) / o.temperature));
  let total = p.reduce((s, x) => s + x, 0);
  if (o.topP < 1) {
    let cum = 0, keep = 0;
    while (keep < p.length) {
      cum += p[keep++] / total;
      if (cum >= o.topP) break;
    }
    order = order.slice(0, keep);
    p.length = keep;
    total = p.reduce((s, x) => s + x, 0);
  }
  let u = rng.next() * total;
  let pick = order[order.length - 1];
  for (let j = 0; j < order.length; j++) {
    u -= p[j];
    if (u < 0) { pick = order[j]; break; }
  }
  return pick;
}

test("partial selection picks exactly what sorting the whole vocabulary picked, seed for seed", () => {
  const gen = makeRng(42);
  let draws = 0;
  for (let trial = 0; trial < 400; trial++) {
    const V = [2, 7, 50, 259, 1000, 5000][trial % 6];
    // Logits of several kinds: spread, peaked, and coarse (many exact ties).
    const kind = trial % 3;
    const z = Float32Array.from({ length: V }, () =>
      kind === 0 ? (gen.next() - 0.5) * 8 : kind === 1 ? (gen.next() < 0.01 ? 10 : 0) + gen.next() * 3 : Math.floor(gen.next() * 5));
    const topK = [0, 1, 2, 40, V - 1, V, V + 3][gen.int(7)];
    const topP = [1, 0.95, 0.5, 0.1][gen.int(4)];
    const temperature = [0.3, 0.7, 1, 2][gen.int(4)];
    const o: SamplingOptions = { temperature, topK, topP, repetitionPenalty: 1 };
    if (topK === 1) continue; // greedy (argmax), not the sampling path
    const seed = gen.int(1e9);
    const a = makeRng(seed), b = makeRng(seed);
    for (let i = 0; i < 8; i++) {
      const want = fullSortSample(z, o, a);
      const got = sampleToken(z, o, b).id;
      assert.equal(got, want, `V ${V}, kind ${kind}, ${JSON.stringify(o)}, draw ${i}`);
      draws++;
    }
  }
  assert.ok(draws > 2500, `${draws} draws`);
});

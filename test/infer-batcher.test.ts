/**
 * Continuous batching (infer/batcher.ts) on a tiny random model: requests that join and leave
 * while others decode give exactly the tokens and text of `generate` alone (seeded sampling,
 * stop strings), cancellation frees the slot before the next forward pass, a waiting request
 * takes the freed slot; and the sampler's OpenAI additions: frequency/presence penalties
 * against their formula, top logprobs against a full sort.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { generate, DEFAULT_GENERATE, type GenerateOptions, type Generation } from "../src/infer/generate.ts";
import { ContinuousBatcher } from "../src/infer/batcher.ts";
import { makeRng } from "../src/infer/rng.ts";
import { sampleToken, topLogprobs, logSoftmaxAt, GREEDY, checkSampling } from "../src/infer/sampling.ts";
import { charTokenizer } from "../src/tokenizer/char.ts";
import { tinyModel } from "./infer-tiny.ts";

const chars = "abcdefghijklmnopqrstuvwxyz .,!?\n<>|/#é中文".split("");
const tok = charTokenizer(chars.slice(0, 40));

test("a vocabulary padded past the tokenizer (Qwen) never yields a padding id, batched as alone", () => {
  // 48 embedding rows for a 40-token tokenizer; the padding rows' logits pushed far up, so
  // any sampler that looked at them would pick one.
  const m = tinyModel({ vocabSize: 48 }, 9);
  const head = m.weight("lm_head.weight");
  for (let i = 40 * 32; i < 48 * 32; i++) head[i] *= 40;
  const opts: GenerateOptions = { ...DEFAULT_GENERATE, temperature: 1.5, seed: 3, maxNewTokens: 20, stopTokens: [] };
  const alone = generate(m, tok, [1, 2, 3], opts);
  const b = new ContinuousBatcher(m, tok, 2);
  let got: Generation | null = null;
  b.add({ prompt: [1, 2, 3], opts, onDone: (g) => { got = g; } });
  b.add({ prompt: [4], opts: { ...opts, seed: 4 } });
  while (b.busy) b.step();
  assert.deepEqual(got!.ids, alone.ids);
  assert.ok(alone.ids.length === 20 && alone.ids.every((id) => id < 40), `ids ${alone.ids}`);
  assert.ok(got!.logprobs.every((lp, j) => Math.abs(lp - alone.logprobs[j]) < 1e-5));
});

test("requests joining and leaving a running batch decode exactly as alone", () => {
  const m = tinyModel({ seqLen: 96 }, 5);
  const reqs: { prompt: number[]; opts: GenerateOptions }[] = [
    { prompt: [1, 2, 3], opts: { ...DEFAULT_GENERATE, temperature: 0.9, topK: 10, topP: 0.9, seed: 1, maxNewTokens: 30, stopTokens: [] } },
    { prompt: [7, 7, 8, 9, 10, 11], opts: { ...DEFAULT_GENERATE, temperature: 1.2, seed: 2, maxNewTokens: 12, stopTokens: [] } },
    { prompt: [20], opts: { ...DEFAULT_GENERATE, maxNewTokens: 25, stopTokens: [], frequencyPenalty: 0.5, presencePenalty: 0.3, temperature: 0.7, seed: 3 } },
    { prompt: [4, 5], opts: { ...DEFAULT_GENERATE, temperature: 1, seed: 4, maxNewTokens: 40, stopTokens: [], stopStrings: ["ab", "q"] } },
    { prompt: [30, 31, 32, 33], opts: { ...DEFAULT_GENERATE, seed: 5, maxNewTokens: 18, stopTokens: [], repetitionPenalty: 1.3 } },
  ];
  const alone = reqs.map((r) => generate(m, tok, r.prompt, r.opts));
  // 2 slots for 5 requests, added at different steps: joins, leaves and waits all happen.
  const b = new ContinuousBatcher(m, tok, 2);
  // onForward sees the rows each forward pass feeds (a prefill's prompt, then 1 per sequence).
  const fed: number[] = [];
  b.onForward = (rows) => fed.push(rows);
  const got: Generation[] = [], texts = reqs.map(() => "");
  const add = (i: number): void => {
    b.add({ prompt: reqs[i].prompt, opts: reqs[i].opts, onStep: (t) => { texts[i] += t; }, onDone: (g) => { got[i] = g; } });
  };
  add(0);
  b.step();
  b.step();
  assert.deepEqual(fed, [reqs[0].prompt.length, 1]);
  add(1);
  add(2);
  b.step();
  add(3);
  add(4);
  let steps = 0;
  while (b.busy) { b.step(); steps++; assert.ok(b.activeCount <= 2); }
  for (let i = 0; i < reqs.length; i++) {
    assert.deepEqual(got[i].ids, alone[i].ids, `request ${i}`);
    assert.equal(got[i].text, alone[i].text, `request ${i}`);
    assert.equal(texts[i], alone[i].text, `request ${i}: streamed text`);
    assert.equal(got[i].finish, alone[i].finish);
    got[i].logprobs.forEach((lp, j) => assert.ok(Math.abs(lp - alone[i].logprobs[j]) < 1e-5));
  }
  // Fewer steps than decoding one after another: the batch really ran together.
  const serial = alone.reduce((s, g) => s + g.ids.length, 0);
  assert.ok(steps < serial, `${steps} steps vs ${serial} serial`);
  assert.equal(fed.length, b.steps); // one forward pass per step
  assert.ok(b.time.forwardMs > 0 && b.time.sampleMs > 0);
});

test("serve's threads per step: 1 for the speedrun shape's steps, every CPU for wide matrices or long prefills", async () => {
  const { stepThreads, largestMatrix } = await import("../src/serve/step-threads.ts");
  const speedrun = { nEmbd: 128, nHead: 4, ffnHidden: 352, vocabSize: 1024 };
  assert.equal(largestMatrix(speedrun), 128 * 1024);
  assert.equal(stepThreads(speedrun, 1, 2), 1);
  assert.equal(stepThreads(speedrun, 16, 2), 1); // 16 streams decoding
  assert.equal(stepThreads(speedrun, 128, 2), 1); // a 128-token prefill: not worth a second thread
  assert.equal(stepThreads(speedrun, 256, 2), 2); // a 256-token prefill
  assert.equal(stepThreads({ nEmbd: 384, nHead: 6, ffnHidden: 1024, vocabSize: 1024 }, 1, 2), 2);
  assert.equal(stepThreads({ nEmbd: 128, nHead: 4, ffnHidden: 352, vocabSize: 32768 }, 1, 4), 4); // a big vocabulary's head
});

test("cancel frees the slot before the next forward pass; a waiting request takes it", () => {
  const m = tinyModel({ seqLen: 64 }, 6);
  const b = new ContinuousBatcher(m, tok, 1);
  const opts = { ...DEFAULT_GENERATE, maxNewTokens: 50, stopTokens: [] };
  let first: Generation | undefined, second: Generation | undefined, started = 0;
  const h = b.add({ prompt: [1, 2], opts, onDone: (g) => { first = g; } });
  b.add({ prompt: [3, 4], opts: { ...opts, maxNewTokens: 5 }, onStart: () => { started++; }, onDone: (g) => { second = g; } });
  b.step();
  b.step();
  assert.equal(b.pendingCount, 1);
  b.cancel(h);
  b.step();
  assert.equal(first!.stoppedBy, "cancelled");
  assert.equal(first!.ids.length, 2);
  assert.equal(started, 1);
  while (b.busy) b.step();
  assert.deepEqual(second!.ids, generate(m, tok, [3, 4], { ...opts, maxNewTokens: 5 }).ids);
  // A cancelled waiting request is answered without running.
  const c = b.add({ prompt: [5], opts, onDone: (g) => { first = g; } });
  b.cancel(c);
  b.step();
  assert.equal(first!.ids.length, 0);
  assert.equal(b.busy, false);
  assert.throws(() => b.add({ prompt: new Array(64).fill(1), opts }), /64 tokens, the context window is 64/);
});

test("frequency and presence penalties follow OpenAI's formula", () => {
  const logits = Float32Array.from([2, 1.5, 1, 0.5, 0]);
  const generated = [0, 0, 0, 1];
  const o = { ...GREEDY, frequencyPenalty: 0.4, presencePenalty: 0.3 };
  // z0 = 2 − 3·0.4 − 0.3 = 0.5; z1 = 1.5 − 0.4 − 0.3 = 0.8; so token 2 (logit 1) wins.
  assert.equal(sampleToken(logits, o, makeRng(1), [], generated).id, 2);
  assert.equal(sampleToken(logits, { ...o, presencePenalty: 0 }, makeRng(1), [], generated).id, 1);
  // The reported logprob stays the model's (before penalties).
  assert.ok(Math.abs(sampleToken(logits, o, makeRng(1), [], generated).logprob - logSoftmaxAt(logits, 2)) < 1e-12);
  // Sampled frequencies follow softmax of the penalised logits.
  const z = [0.5, 0.8, 1, 0.5, 0], e = z.map(Math.exp), s = e.reduce((a, b) => a + b);
  const f = new Array(5).fill(0), rng = makeRng(9), n = 20000;
  for (let i = 0; i < n; i++) f[sampleToken(logits, { ...o, temperature: 1 }, rng, [], generated).id]++;
  f.forEach((c, i) => { const p = e[i] / s; assert.ok(Math.abs(c / n - p) < 4.5 * Math.sqrt(p * (1 - p) / n), `token ${i}: ${c / n} vs ${p}`); });
  assert.throws(() => checkSampling({ ...GREEDY, frequencyPenalty: 2.5 }), /frequencyPenalty: must be in \[-2, 2\]/);
});

test("top logprobs are the k best of the log-softmax, ties by lower id", () => {
  const rng = makeRng(4);
  const logits = Float32Array.from({ length: 300 }, () => rng.next() * 8 - 4);
  logits[17] = logits[5] = 9;
  const want = Array.from(logits, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, 7);
  const got = topLogprobs(logits, 7);
  assert.deepEqual(got.map((x) => x.id), want);
  got.forEach((x) => assert.ok(Math.abs(x.logprob - logSoftmaxAt(logits, x.id)) < 1e-12));
  assert.deepEqual(topLogprobs(logits, 0), []);
  assert.equal(topLogprobs(Float32Array.from([1, 2]), 5).length, 2);
});

/**
 * The generation engine on a tiny random model, on the native backend (what users run) and on
 * a plain-loop test backend: KV-cached logits match an independent float64 forward written
 * here from the architecture, KV-cached greedy decoding gives exactly the tokens of full
 * recomputation, batched slots equal single runs, seeded sampling is reproducible, stop
 * strings that span tokens are cut and never streamed, and mynah's byte-level stream decoder
 * never splits a character.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCache, forwardCached, type DecodeModel } from "../src/model/decode.ts";
import { generate, generateBatch, DEFAULT_GENERATE } from "../src/infer/generate.ts";
import { charTokenizer } from "../src/tokenizer/char.ts";
import { trainBpe } from "../src/tokenizer/index.ts";
import { nativeBackend } from "../src/core/native.ts";
import type { Backend } from "../src/core/backend.ts";
import type { Tokenizer } from "../src/tokenizer/types.ts";
import { tinyModel as tinyOn, fullForwardLast, plain } from "./infer-tiny.ts";

const argmax = (x: ArrayLike<number>): number => { let b = 0; for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i; return b; };
const chars = "abcdefghijklmnopqrstuvwxyz .,!?\n<>|/#é中文".split("");
const tok = charTokenizer(chars.slice(0, 40));
/** float32 machine epsilon (2^-23). */
const EPS32 = 2 ** -23;

for (const backend of [nativeBackend(), plain] as Backend[]) {
const on = ` [${backend.name}]`;
const tinyModel = (cfg: Parameters<typeof tinyOn>[0] = {}, seed = 1): DecodeModel => tinyOn(cfg, seed, backend);

test(`KV-cached prefill logits match the independent float64 forward${on}`, () => {
  for (const [cfg, seed] of [[{}, 1], [{ nKvHead: 4, tiedEmbeddings: true, qkNorm: false }, 2]] as const) {
    const m = tinyModel(cfg, seed);
    const ids = [3, 17, 5, 22, 9, 1, 30, 12, 4, 4, 8, 39, 0, 2, 11, 19];
    const cache = createCache(m, 1);
    const all = forwardCached(m, cache, [0], [ids.length], ids, true);
    // The float32 path rounds at every step (2 layers of norms, products over ≤ 48 terms in
    // SIMD order, attention, residual adds); measured worst ≈ 14 ε of the row's largest logit
    // on the native kernels, 5 ε on plain loops. Bound: 32 ε (1 ULP-scale error per stage).
    let worst = 0;
    for (let t = 1; t <= ids.length; t++) {
      const ref = fullForwardLast(m, ids.slice(0, t));
      let scale = 0;
      for (let v = 0; v < 40; v++) scale = Math.max(scale, Math.abs(ref[v]));
      for (let v = 0; v < 40; v++) worst = Math.max(worst, Math.abs(ref[v] - all[(t - 1) * 40 + v]) / (scale * EPS32));
    }
    assert.ok(worst <= 32, `largest logit difference ${worst.toFixed(1)} ε of the row's largest logit`);
  }
});

for (const [name, cfg] of [["grouped-query, qk-norm", {}], ["multi-head, tied, no qk-norm", { nKvHead: 4, tiedEmbeddings: true, qkNorm: false }]] as const) {
  test(`greedy KV-cached generation = full recomputation (${name})${on}`, () => {
    const m = tinyModel(cfg, 3);
    const prompt = [4, 8, 15, 16, 23];
    const gen = generate(m, tok, prompt, { ...DEFAULT_GENERATE, maxNewTokens: 20, stopTokens: [] });
    const seq = [...prompt];
    const want: number[] = [];
    for (let i = 0; i < 20; i++) {
      const id = argmax(fullForwardLast(m, seq));
      want.push(id);
      seq.push(id);
    }
    assert.deepEqual(gen.ids, want);
    assert.equal(gen.finish, "length");
  });
}

test(`batched generation of different-length prompts equals one-by-one${on}`, () => {
  const m = tinyModel({}, 5);
  const prompts = [[1, 2, 3], [7], [9, 9, 9, 9, 9, 9, 2], [30, 31]];
  const opts = { ...DEFAULT_GENERATE, temperature: 0.9, topK: 10, seed: 11, maxNewTokens: 12, stopTokens: [0] };
  const batch = generateBatch(m, tok, prompts, opts);
  prompts.forEach((p, i) => {
    const one = generate(m, tok, p, { ...opts, seed: 11 + i });
    assert.deepEqual(batch[i].ids, one.ids, `prompt ${i}`);
    // Same ops on the same rows; a batched call may sum in another order: a few ε of the logits.
    for (let j = 0; j < one.logprobs.length; j++) assert.ok(Math.abs(batch[i].logprobs[j] - one.logprobs[j]) <= 64 * EPS32 * 16, `${batch[i].logprobs[j]} vs ${one.logprobs[j]}`);
  });
});

test(`a batch of equal-length prompts (one batched attention call) equals one-by-one${on}`, () => {
  const m = tinyModel({}, 6);
  const prompts = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
  const opts = { ...DEFAULT_GENERATE, maxNewTokens: 10, stopTokens: [] };
  const batch = generateBatch(m, tok, prompts, opts);
  prompts.forEach((p, i) => assert.deepEqual(batch[i].ids, generate(m, tok, p, opts).ids, `prompt ${i}`));
});

test(`seeded sampling is reproducible and the seed matters${on}`, () => {
  const m = tinyModel({}, 7);
  const o = { ...DEFAULT_GENERATE, temperature: 1.2, topP: 0.95, maxNewTokens: 25, stopTokens: [] };
  const a = generate(m, tok, [5, 6], { ...o, seed: 123 }).ids;
  assert.deepEqual(generate(m, tok, [5, 6], { ...o, seed: 123 }).ids, a);
  assert.notDeepEqual(generate(m, tok, [5, 6], { ...o, seed: 124 }).ids, a);
});

test(`stop strings spanning tokens are cut and never streamed; stop tokens end it${on}`, () => {
  const m = tinyModel({}, 9);
  const free = generate(m, tok, [2, 3], { ...DEFAULT_GENERATE, maxNewTokens: 30, stopTokens: [] });
  assert.ok(free.text.length >= 6);
  // Take 3 characters from the middle of the free run as a stop string (3 tokens long).
  const stop = free.text.slice(3, 6);
  const at = free.text.indexOf(stop);
  let streamed = "";
  const cut = generate(m, tok, [2, 3], { ...DEFAULT_GENERATE, maxNewTokens: 30, stopTokens: [], stopStrings: [stop], onText: (t) => (streamed += t) });
  assert.equal(cut.text, free.text.slice(0, at));
  assert.equal(streamed, cut.text);
  assert.equal(cut.finish, "stop");
  assert.equal(cut.stoppedBy, stop);
  // A stop token: the first generated id of the free run ends it at once.
  const st = generate(m, tok, [2, 3], { ...DEFAULT_GENERATE, maxNewTokens: 30, stopTokens: [free.ids[0]] });
  assert.deepEqual(st.ids, []);
  assert.equal(st.finish, "stop");
  // The context window: a cache of 8 positions ends generation at 8 − prompt.
  const ctx = generateBatch(m, tok, [[1, 2, 3]], { ...DEFAULT_GENERATE, maxNewTokens: 50, stopTokens: [] }, 8)[0];
  assert.equal(ctx.finish, "context");
  assert.equal(ctx.ids.length, 6);
});

test(`mynah's byte-level stream decoder never splits a character while generating${on}`, () => {
  // A byte-level BPE trained here on Chinese and accented text, with few merges, so many
  // tokens are single bytes of multi-byte characters.
  const text = "中文很好。你好，世界！数学是美丽的。café naïve résumé été 日本語もあります。".repeat(5);
  const bpe: Tokenizer = trainBpe([text], { vocabSize: 256 + 8 + 24 });
  const m = tinyOn({ vocabSize: bpe.vocabSize }, 13, backend);
  // Tokens that are not whole characters: lone bytes ≥ 0x80.
  const partial = new Set<number>();
  for (let id = 0; id < bpe.vocabSize; id++) {
    const b = bpe.decodeBytes([id]);
    if (b.length > 0 && new TextDecoder().decode(b).includes("\uFFFD")) partial.add(id);
  }
  assert.ok(partial.size > 50, `${partial.size} partial-character tokens`);
  let midChar = 0, assembled = 0;
  for (let seed = 0; seed < 20; seed++) {
    const pieces: string[] = [];
    const g = generate(m, bpe, bpe.encode("中文"), { ...DEFAULT_GENERATE, temperature: 1, seed, maxNewTokens: 40, stopTokens: [], onText: (t) => pieces.push(t) });
    // Decoding all generated bytes at once is the truth: a piece that ended inside a character
    // would have turned that character into U+FFFD, and the pieces would differ from it.
    const whole = new TextDecoder().decode(bpe.decodeBytes(g.ids));
    assert.equal(pieces.join(""), whole, `seed ${seed}: ${JSON.stringify(pieces)}`);
    assert.equal(g.text, whole);
    // The generated tokens do end in the middle of characters, and characters are assembled.
    midChar += g.ids.filter((id) => partial.has(id)).length;
    assembled += [...whole].filter((c) => c > "\u007f" && c !== "\uFFFD").length;
  }
  assert.ok(midChar > 100 && assembled > 20, `${midChar} partial-character tokens, ${assembled} characters assembled from them`);
  // The check can fail: a decoder that decodes each token on its own splits characters.
  const naive: Tokenizer = { ...bpe, streamDecoder: () => ({ push: (id: number) => new TextDecoder().decode(bpe.decodeBytes([id])), flush: () => "" }) };
  let broken = 0;
  for (let seed = 0; seed < 5; seed++) {
    const pieces: string[] = [];
    const g = generate(m, naive, bpe.encode("中文"), { ...DEFAULT_GENERATE, temperature: 1, seed, maxNewTokens: 40, stopTokens: [], onText: (t) => pieces.push(t) });
    if (pieces.join("") !== new TextDecoder().decode(bpe.decodeBytes(g.ids))) broken++;
  }
  assert.ok(broken > 0, "the naive decoder splits characters, and the check above sees it");
});
}

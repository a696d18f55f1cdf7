/**
 * The generation engine on a tiny random model: KV-cached greedy decoding gives exactly the
 * tokens of full recomputation (an independent, cache-free forward written here from the
 * architecture), batched slots equal single runs, seeded sampling is reproducible, stop
 * strings that span tokens are cut and never streamed, and UTF-8 is never split.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { generate, generateBatch, DEFAULT_GENERATE } from "../src/infer/generate.ts";
import { charTokenizer } from "../src/tokenizer/char.ts";
import { tinyModel, fullForwardLast } from "./infer-tiny.ts";

const argmax = (x: ArrayLike<number>): number => { let b = 0; for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i; return b; };
const chars = "abcdefghijklmnopqrstuvwxyz .,!?\n<>|/#é中文".split("");
const tok = charTokenizer(chars.slice(0, 40));

test("KV-cached prefill logits match the independent full forward", () => {
  const m = tinyModel();
  const ids = [3, 17, 5, 22, 9, 1, 30, 12];
  const cache = createCache(m, 1);
  const all = forwardCached(m, cache, [0], [ids.length], ids, true);
  let worst = 0;
  for (let t = 1; t <= ids.length; t++) {
    const ref = fullForwardLast(m, ids.slice(0, t));
    for (let v = 0; v < 40; v++) worst = Math.max(worst, Math.abs(ref[v] - all[(t - 1) * 40 + v]));
  }
  assert.ok(worst < 2e-3, `largest logit difference ${worst}`);
});

for (const [name, cfg] of [["grouped-query, qk-norm", {}], ["multi-head, tied, no qk-norm", { nKvHead: 4, tiedEmbeddings: true, qkNorm: false }]] as const) {
  test(`greedy KV-cached generation = full recomputation (${name})`, () => {
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

test("batched generation of different-length prompts equals one-by-one", () => {
  const m = tinyModel({}, 5);
  const prompts = [[1, 2, 3], [7], [9, 9, 9, 9, 9, 9, 2], [30, 31]];
  const opts = { ...DEFAULT_GENERATE, temperature: 0.9, topK: 10, seed: 11, maxNewTokens: 12, stopTokens: [0] };
  const batch = generateBatch(m, tok, prompts, opts);
  prompts.forEach((p, i) => {
    const one = generate(m, tok, p, { ...opts, seed: 11 + i });
    assert.deepEqual(batch[i].ids, one.ids, `prompt ${i}`);
    for (let j = 0; j < one.logprobs.length; j++) assert.ok(Math.abs(batch[i].logprobs[j] - one.logprobs[j]) < 1e-4);
  });
});

test("a batch of equal-length prompts (one batched attention call) equals one-by-one", () => {
  const m = tinyModel({}, 6);
  const prompts = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
  const opts = { ...DEFAULT_GENERATE, maxNewTokens: 10, stopTokens: [] };
  const batch = generateBatch(m, tok, prompts, opts);
  prompts.forEach((p, i) => assert.deepEqual(batch[i].ids, generate(m, tok, p, opts).ids, `prompt ${i}`));
});

test("seeded sampling is reproducible and the seed matters", () => {
  const m = tinyModel({}, 7);
  const o = { ...DEFAULT_GENERATE, temperature: 1.2, topP: 0.95, maxNewTokens: 25, stopTokens: [] };
  const a = generate(m, tok, [5, 6], { ...o, seed: 123 }).ids;
  assert.deepEqual(generate(m, tok, [5, 6], { ...o, seed: 123 }).ids, a);
  assert.notDeepEqual(generate(m, tok, [5, 6], { ...o, seed: 124 }).ids, a);
});

test("stop strings spanning tokens are cut and never streamed; stop tokens end it", () => {
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

test("streaming through a byte-level decoder never splits a character", () => {
  // A fake byte tokenizer: ids are bytes; stream decoding must hold partial UTF-8 sequences.
  const m = tinyModel({ vocabSize: 40 }, 13);
  const bytes = new TextEncoder().encode("中文é");
  const byteTok = {
    vocabSize: 40, special: new Map<string, number>(),
    encode: () => [], decode: (ids: ArrayLike<number>) => new TextDecoder().decode(Uint8Array.from(Array.from(ids, (i) => bytes[i % bytes.length]))),
    decodeBytes: (ids: ArrayLike<number>) => Uint8Array.from(Array.from(ids, (i) => bytes[i % bytes.length])),
    streamDecoder() {
      let buf: number[] = [];
      const td = new TextDecoder();
      return {
        push(id: number) { buf.push(bytes[id % bytes.length]); const s = td.decode(Uint8Array.from(buf), { stream: true }); buf = []; return s; },
        flush() { return td.decode(); },
      };
    },
  };
  const pieces: string[] = [];
  const g = generate(m, byteTok, [1], { ...DEFAULT_GENERATE, temperature: 1, seed: 3, maxNewTokens: 40, stopTokens: [], onText: (t) => pieces.push(t) });
  assert.equal(pieces.join(""), g.text);
  for (const p of pieces) assert.ok(!/\uFFFD/.test(p.slice(0, -1)) || g.text.includes("\uFFFD"));
});

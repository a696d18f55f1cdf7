/**
 * Evaluation scoring against hand computation. The model is a bigram table with known
 * log-probabilities, run on the native kernels: no layers, the embedding is the identity
 * (width = vocabulary), the final RMSNorm gain undoes the norm of a one-hot row, so the logits
 * after token i are column i of lm_head, L[·, i]. Every expected number below is computed in
 * float64 from L directly, not through the code under test.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inferenceBackend } from "../src/infer/load.ts";
import type { DecodeModel } from "../src/model/decode.ts";
import { charTokenizer } from "../src/tokenizer/char.ts";
import { seededRng } from "../src/core/rng.ts";
import { scoreItems, windowItems } from "../src/eval/score.ts";
import { runBpb, runExact, runMc, type EvalSettings, type TaskContext } from "../src/eval/tasks-run.ts";
import { parseTaskSpec } from "../src/eval/tasks.ts";
import { wilson } from "../src/eval/stats.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";

const EPS = 1e-5;

/** A bigram model over `chars`: logits after token i are L[j·V + i] for j = 0..V−1. */
function bigramModel(V: number, L: Float64Array, seqLen: number): DecodeModel {
  const emb = new Float32Array(V * V), head = new Float32Array(V * V), norm = new Float32Array(V).fill(Math.sqrt(1 / V + EPS));
  for (let i = 0; i < V; i++) emb[i * V + i] = 1;
  for (let k = 0; k < V * V; k++) head[k] = L[k];
  const w: Record<string, Float32Array> = { "model.embed_tokens.weight": emb, "model.norm.weight": norm, "lm_head.weight": head };
  return {
    config: { nLayer: 0, nHead: 1, nKvHead: 1, nEmbd: V, ffnHidden: 4, vocabSize: V, seqLen, ropeTheta: 10000, normEps: EPS, tiedEmbeddings: false, qkNorm: false },
    weight: (n) => { if (!w[n]) throw new Error(`no weight ${n}`); return w[n]; },
    backend: inferenceBackend(),
  };
}

/** log p(next = j | current = i) from the table, float64. */
function logp(L: Float64Array, V: number, i: number, j: number): number {
  let max = -Infinity;
  for (let k = 0; k < V; k++) max = Math.max(max, L[k * V + i]);
  let s = 0;
  for (let k = 0; k < V; k++) s += Math.exp(L[k * V + i] - max);
  return L[j * V + i] - max - Math.log(s);
}
const seqLogp = (L: Float64Array, V: number, ctx: number[], cont: number[]): number => {
  const ids = [...ctx, ...cont];
  let s = 0;
  for (let t = ctx.length; t < ids.length; t++) s += logp(L, V, ids[t - 1], ids[t]);
  return s;
};

const ALPHABET = [...new Set([..."Question: Answer\nABCD. abcdefghijklmnopqrstuvwxyz?,'0123456789+#"])].sort();
if (ALPHABET.length % 2) ALPHABET.push("#"); // an even width (rope needs D/2)
const V = ALPHABET.length;
const tok = charTokenizer(ALPHABET);

function randomTable(seed: number, scale: number): Float64Array {
  const rng = seededRng(seed);
  const L = new Float64Array(V * V);
  // Values as float32 holds them, so the expected numbers use the model's exact weights.
  for (let k = 0; k < L.length; k++) L[k] = Math.fround(scale * rng.normal());
  return L;
}

const settings: EvalSettings = {
  batch: 5, limit: Infinity, chat: "auto", samples: 1, temperature: 0, topK: 0, topP: 1, maxNewTokens: 16, seed: 0,
  extract: { kind: "auto" }, extractSpec: "auto", screen: DEFAULT_SCREEN_CONFIG, screenSpec: "default", perSkill: 5,
};
const ctxOf = (model: DecodeModel): TaskContext => ({ model, tok, modelDir: "/nonexistent", settings, progress: () => {} });

test("scoreItems: Σ log p of the scored tokens equals the table's, batched with mixed lengths and masks", () => {
  const L = randomTable(1, 2);
  const model = bigramModel(V, L, 24);
  const rng = seededRng(5);
  const items = Array.from({ length: 11 }, (_, i) => {
    const n = 2 + rng.int(22);
    const ids = Array.from({ length: n }, () => rng.int(V));
    const mask = i % 3 === 0 ? Uint8Array.from(ids, () => rng.int(2)) : null;
    return { ids, start: 1 + rng.int(n - 1), mask };
  });
  const got = scoreItems(model, items, { batch: 4 });
  items.forEach((it, k) => {
    let want = 0, n = 0;
    for (let t = it.start; t < it.ids.length; t++) {
      if (it.mask && !it.mask[t]) continue;
      want += logp(L, V, it.ids[t - 1], it.ids[t]);
      n++;
    }
    assert.equal(got[k].tokens, n);
    assert.ok(Math.abs(got[k].logprob - want) < 2e-5 * Math.max(1, n), `item ${k}: ${got[k].logprob} vs ${want}`);
  });
  // The same items one at a time give the same sums.
  const single = scoreItems(model, items, { batch: 1 });
  single.forEach((s, k) => assert.ok(Math.abs(s.logprob - got[k].logprob) < 1e-5 * Math.max(1, s.tokens)));
});

test("windowItems: every token after the first is scored exactly once", () => {
  const ids = Array.from({ length: 50 }, (_, i) => i);
  const w = windowItems(ids, 8);
  const scored: number[] = [];
  for (const it of w) {
    assert.ok(it.ids.length <= 8);
    for (let t = it.start; t < it.ids.length; t++) scored.push(it.ids[t]);
  }
  assert.deepEqual(scored, ids.slice(1));
});

const dir = mkdtempSync(join(tmpdir(), "mynah-eval-"));

test("mc (MMLU shape, plain text): raw, per-byte and letter accuracies equal the hand computation", async () => {
  const L = randomTable(2, 1.5);
  const model = bigramModel(V, L, 64);
  const rng = seededRng(9);
  const word = (n: number): string => Array.from({ length: n }, () => "abcdefghijklmnopqrstuvwxyz"[rng.int(26)]).join("");
  const qs = Array.from({ length: 40 }, () => ({ question: `${word(4)} ${word(3)}?`, choices: [word(1 + rng.int(5)), word(1 + rng.int(5)), word(1 + rng.int(5)), word(1 + rng.int(5))], answer: rng.int(4) }));
  const file = join(dir, "mmlu.jsonl");
  writeFileSync(file, qs.map((q) => JSON.stringify(q)).join("\n") + "\n");
  let raw = 0, norm = 0, letter = 0;
  const argmax = (xs: number[]): number => xs.reduce((b, x, i) => (x > xs[b] ? i : b), 0);
  for (const q of qs) {
    const ctx = tok.encode(`Question: ${q.question}\nAnswer:`);
    const ll = q.choices.map((c) => seqLogp(L, V, ctx, tok.encode(" " + c)));
    const pb = ll.map((x, i) => x / (1 + q.choices[i].length));
    const lctx = tok.encode(`Question: ${q.question}\n${q.choices.map((c, i) => `${"ABCD"[i]}. ${c}`).join("\n")}\nAnswer:`);
    const lp = [..."ABCD"].map((l) => seqLogp(L, V, lctx, tok.encode(" " + l)));
    if (argmax(ll) === q.answer) raw++;
    if (argmax(pb) === q.answer) norm++;
    if (argmax(lp) === q.answer) letter++;
  }
  const r = await runMc(parseTaskSpec(`mc:${file}`), ctxOf(model));
  assert.equal(r.metrics.mode, "text");
  assert.equal(r.metrics.accuracy, raw / 40);
  assert.equal(r.metrics.accuracyNorm, norm / 40);
  assert.equal(r.metrics.accuracyLetter, letter / 40);
  assert.equal(r.metrics.random, 0.25);
  const ci = wilson(raw, 40);
  assert.equal(r.metrics.accuracyLo, ci.lo);
  assert.equal(r.metrics.accuracyHi, ci.hi);
  // The three scorings disagree on some questions (the check above is not vacuous).
  assert.ok(new Set([raw, norm, letter]).size > 1, `raw ${raw}, norm ${norm}, letter ${letter}`);
});

test("mc (ARC and HellaSwag shapes): a table that forces the right answer scores 100 %, a reversed one 0 %", async () => {
  // After any character, 'z' is far more likely than anything else; the right choice is "zzz".
  const L = new Float64Array(V * V);
  const z = ALPHABET.indexOf("z");
  for (let i = 0; i < V; i++) L[z * V + i] = 6;
  const model = bigramModel(V, L, 64);
  const arc = join(dir, "arc.jsonl"), hs = join(dir, "hs.jsonl");
  const rows = Array.from({ length: 12 }, (_, i) => i % 4);
  writeFileSync(arc, rows.map((a, i) => {
    const text = ["abc", "bca", "cab"];
    text.splice(a, 0, "zzz");
    return JSON.stringify({ id: `q${i}`, question: "which?", choices: { text, label: ["A", "B", "C", "D"] }, answerKey: "ABCD"[a] });
  }).join("\n"));
  writeFileSync(hs, rows.map((a) => {
    const endings = ["abc", "bca", "cab"];
    endings.splice(a, 0, "zzz");
    return JSON.stringify({ ctx: "the end", endings, label: String(a) });
  }).join("\n"));
  const ra = await runMc(parseTaskSpec(`mc:${arc}`), ctxOf(model));
  assert.equal(ra.metrics.shape, "arc");
  assert.equal(ra.metrics.accuracy, 1);
  assert.equal(ra.metrics.accuracyNorm, 1);
  const rh = await runMc(parseTaskSpec(`mc:${hs}`), ctxOf(model));
  assert.equal(rh.metrics.shape, "hellaswag");
  assert.equal(rh.metrics.accuracy, 1);
  assert.equal(rh.metrics.accuracyLetter, undefined);
  // 'z' made least likely: the right answer is never chosen.
  for (let i = 0; i < V; i++) L[z * V + i] = -6;
  const rr = await runMc(parseTaskSpec(`mc:${hs}`), ctxOf(bigramModel(V, L, 64)));
  assert.equal(rr.metrics.accuracy, 0);
});

test("bpb: Σ −log p over every predicted token / (ln 2 · bytes), across windows", async () => {
  const L = randomTable(3, 1);
  const model = bigramModel(V, L, 16);
  const docs = ["abc def ghi jkl mno pqr stu vwx yz abc", "question answer", "zz"];
  const file = join(dir, "text.txt");
  writeFileSync(file, docs.join("\n\n") + "\n");
  let nats = 0, bytes = 0, tokens = 0;
  for (const d of docs) {
    const ids = tok.encode(d);
    nats -= seqLogp(L, V, ids.slice(0, 1), ids.slice(1));
    bytes += d.length - 1;
    tokens += ids.length - 1;
  }
  const r = await runBpb(parseTaskSpec(`bpb:${file}`), ctxOf(model));
  assert.equal(r.metrics.tokens, tokens);
  assert.equal(r.metrics.bytes, bytes);
  assert.ok(Math.abs(Number(r.metrics.bpb) - nats / (Math.LN2 * bytes)) < 1e-6, `${r.metrics.bpb} vs ${nats / (Math.LN2 * bytes)}`);
  assert.ok(Math.abs(Number(r.metrics.loss) - nats / tokens) < 1e-6);
});

test("exact: a table that makes the model answer 4 after \"Answer:\" scores GSM8K's #### 4 right, greedy and sampled", async () => {
  const L = new Float64Array(V * V);
  const id = (c: string): number => ALPHABET.indexOf(c);
  // After ":" comes " ", after " " comes "4", after "4" a newline, after a newline "Q": the reply is " 4\nQ…"
  // until the stop string "\nQuestion:" could start; the answer extracted is 4 (the last number).
  L[id(" ") * V + id(":")] = 30;
  L[id("4") * V + id(" ")] = 30;
  L[id("\n") * V + id("4")] = 30;
  const model = bigramModel(V, L, 64);
  const file = join(dir, "gsm.jsonl");
  writeFileSync(file, [{ question: "what is 2 + 2?", answer: "2 + 2 = 4\n#### 4" }, { question: "what is 3 + 3?", answer: "#### 6" }].map((r) => JSON.stringify(r)).join("\n"));
  const r = await runExact(parseTaskSpec(`exact:${file}`), { ...ctxOf(model), settings: { ...settings, maxNewTokens: 3 } });
  assert.equal(r.metrics.mode, "text");
  assert.equal(r.metrics.accuracy, 0.5); // 4 is right for the first question only
  assert.equal(r.metrics.extracted, 1);
  // Sampling at temperature 1: "4" after " " has probability e^30 / (e^30 + V − 1) ≈ 1, so every sample is right on the first question.
  const s = await runExact(parseTaskSpec(`exact:${file}`), { ...ctxOf(model), settings: { ...settings, maxNewTokens: 3, samples: 3, temperature: 1 } });
  assert.equal(s.metrics.passAt1, 0.5);
  assert.equal(s.metrics.passAt3, 0.5);
});

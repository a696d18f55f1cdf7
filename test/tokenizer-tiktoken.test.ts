/**
 * gpt2, cl100k_base and o200k_base loaded by mynah give the same ids as the `tiktoken` npm
 * package (Rust compiled to WASM, an independent implementation) on every shared corpus file
 * and on adversarial strings.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { get_encoding, type TiktokenEncoding } from "tiktoken";
import { loadTokenizer, type BpeTokenizer } from "../src/tokenizer/index.ts";

const here = dirname(fileURLToPath(import.meta.url));
const DATA = process.env.MYNAH_SHARED_DATA ?? join(here, "..", "..", "shared", "data");
const haveData = existsSync(join(DATA, "text")) && existsSync(join(DATA, "chat"));
const encoderJson = (name: string): string => join(dirname(createRequire(import.meta.url).resolve("tiktoken")), "encoders", `${name}.json`);

/** Index of the first difference, −1 when equal. */
function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return -1;
}

// Long runs are 20 k here, not 100 k: the tiktoken npm package is quadratic on them (100 k
// spaces take it ~5 s with cl100k_base); mynah's own 100 k cases are timed below.
const ADVERSARIAL: string[] = [
  "",
  " ".repeat(20_000),
  " ".repeat(10_000) + "x",
  "1".repeat(20_000),
  "12345678901234567890 3.14159 1,000,000 ١٢٣ ⅷ ²³",
  "\n".repeat(1000) + " \n \r\n\t\t \u000b\f",
  "😀👍🏽👨‍👩‍👧‍👦🇫🇷 emoji 🤖🤖🤖",
  "中文English混合text 日本語のテキスト 한국어 텍스트 русский текст العربية हिन्दी",
  "lone \ud800 high, lone \udfff low, reversed \udc00\ud800, pair \ud83d\ude00",
  "\ufeffBOM \u0085NEL \u00a0nbsp \u2028LS \u2029PS \u3000ideographic \u200bZWSP",
  "I'LL you'Re he's THEY'VE we'd 'tis ''''' can't",
  "<|endoftext|> <|im_start|> <|fim_prefix|> special-token text as ordinary text",
  "e\u0301 a\u0308 combining ñ n\u0303 Å A\u030a",
  "a".repeat(5_000) + "b".repeat(5_000),
  "!!!???...;;;" + "-".repeat(5000) + "/".repeat(3000) + "\n/\n",
  "   leading spaces\ttabs\t\t and trailing spaces   ",
  "camelCaseWords HTTPServer iPhone XMLHttpRequest ABCdef aBC",
  "\u0000\u0001\u0002\u007f control chars \u001b[31m",
];

for (const name of ["gpt2", "cl100k_base", "o200k_base"] as const) {
  test(`${name}: identical ids to tiktoken (npm) on adversarial strings and every shared file`, async (t) => {
    const mine: BpeTokenizer = loadTokenizer(encoderJson(name));
    const ref = get_encoding(name as TiktokenEncoding);
    try {
      for (const s of ADVERSARIAL) {
        const a = mine.encodeOrdinary(s);
        const b = ref.encode_ordinary(s);
        const d = firstDiff(a, b);
        assert.equal(d, -1, `${name} differs on ${JSON.stringify(s.slice(0, 60))} at token ${d}`);
        assert.equal(mine.decode(a), (s as unknown as { toWellFormed(): string }).toWellFormed()); // lone surrogates → U+FFFD
      }
      // 100 k-long runs: no quadratic blow-up, lossless
      for (const s of [" ".repeat(100_000), " ".repeat(100_000) + "x", "9".repeat(100_000), "ab".repeat(50_000)]) {
        const t0 = performance.now();
        const ids = mine.encodeOrdinary(s);
        assert.ok(performance.now() - t0 < 2000, `${name}: ${s.length} chars took ${(performance.now() - t0).toFixed(0)} ms`);
        assert.equal(mine.decode(ids), s);
      }
      // special tokens, when allowed, agree too
      const chat = "hello<|endoftext|>world";
      assert.deepEqual(mine.encode(chat, { allowedSpecial: "all" }), Array.from(ref.encode(chat, "all")));
      if (!haveData) {
        t.skip(`shared corpora not found at ${DATA}: file identity checks skipped`);
        return;
      }
      for (const dir of ["text", "chat"]) {
        for (const f of readdirSync(join(DATA, dir)).sort()) {
          const text = readFileSync(join(DATA, dir, f), "utf8");
          const a = mine.encodeOrdinary(text);
          const b = ref.encode_ordinary(text);
          const d = firstDiff(a, b);
          assert.equal(d, -1, `${name} differs on ${dir}/${f} at token ${d}: ${JSON.stringify(mine.decode(a.slice(Math.max(0, d - 3), d + 3)))}`);
        }
      }
    } finally {
      ref.free();
    }
  });
}

test(".tiktoken rank file: loads and encodes like tiktoken", () => {
  // Write gpt2's ranks in the .tiktoken format ("base64 rank" lines) straight from the npm
  // package's encoder JSON, then load that file.
  const j = JSON.parse(readFileSync(encoderJson("gpt2"), "utf8")) as { bpe_ranks: string };
  const lines: string[] = [];
  for (const line of j.bpe_ranks.split("\n")) {
    if (!line) continue;
    const [, first, ...toks] = line.split(" ");
    toks.forEach((b64, i) => lines.push(`${b64} ${Number(first) + i}`));
  }
  const dir = mkdtempSync(join(tmpdir(), "mynah-tt-"));
  try {
    const file = join(dir, "gpt2.tiktoken");
    writeFileSync(file, lines.join("\n") + "\n");
    const mine = loadTokenizer(file);
    const ref = get_encoding("gpt2");
    try {
      for (const s of ADVERSARIAL.slice(4, 14)) assert.deepEqual(mine.encodeOrdinary(s), Array.from(ref.encode_ordinary(s)));
      assert.equal(mine.special.get("<|endoftext|>"), 50256);
    } finally {
      ref.free();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cl100k_base saved as tokenizer.json (merges derived from ranks) reads back in @huggingface/tokenizers with tiktoken's ids", async () => {
  const { Tokenizer: HfTokenizer } = await import("@huggingface/tokenizers");
  const { saveTokenizer } = await import("../src/tokenizer/index.ts");
  const dir = mkdtempSync(join(tmpdir(), "mynah-tt-"));
  const ref = get_encoding("cl100k_base");
  try {
    saveTokenizer(dir, loadTokenizer(encoderJson("cl100k_base")));
    const json = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    assert.equal(json.model.ignore_merges, true);
    const hf = new HfTokenizer(json, {});
    const back = loadTokenizer(dir);
    // left out: BOM/NEL (tokenizers.js uses JavaScript's \s, not Unicode White_Space) and
    // special-token text (tokenizers.js always splits added tokens out)
    const samples = ADVERSARIAL.filter((s) => s.length < 30_000 && !/[\ufeff\u0085]/.test(s) && !s.includes("<|"));
    if (haveData) for (const dir2 of ["text", "chat"]) for (const f of readdirSync(join(DATA, dir2)).sort()) samples.push(readFileSync(join(DATA, dir2, f), "utf8").slice(0, 30_000));
    for (const s of samples) {
      const want = Array.from(ref.encode_ordinary(s));
      assert.equal(firstDiff(hf.encode(s, { add_special_tokens: false }).ids, want), -1, `tokenizers.js differs on ${JSON.stringify(s.slice(0, 40))}`);
      assert.equal(firstDiff(back.encodeOrdinary(s), want), -1, `reloaded tokenizer.json differs on ${JSON.stringify(s.slice(0, 40))}`);
    }
  } finally {
    ref.free();
    rmSync(dir, { recursive: true, force: true });
  }
});

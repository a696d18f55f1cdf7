/** `mynah tokenizer train|encode|decode|info`, run in-process on a tiny generated corpus. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerTokenizer } from "../src/cli/tokenizer.ts";
import { loadTokenizer, trainBpe } from "../src/tokenizer/index.ts";
import { inProcessCli } from "./helpers/cli.ts";

/** Runs `mynah <args>` in-process; returns what it printed. */
const mynah = inProcessCli(registerTokenizer);

test("tokenizer CLI: train, info, encode with special tokens, decode", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tokcli-"));
  try {
    // made-up words from a few syllables (enough pairs for 136 merges), plus some Chinese
    const syl = ["al", "pha", "be", "ta", "gam", "ma", "del", "to", "ken", "mer", "ge", "你", "好", "世", "界"];
    let text = "";
    for (let i = 0; i < 5000; i++) text += (i % 13 === 0 ? "\n" : " ") + syl[(i * 7) % 15] + syl[(i * 11 + (i >> 4)) % 15] + (i % 3 ? syl[(i >> 2) % 15] : "");
    writeFileSync(join(dir, "a.txt"), text);
    writeFileSync(join(dir, "b.jsonl"), JSON.stringify({ messages: [{ role: "user", content: "alpha beta" }, { role: "assistant", content: "gamma" }] }) + "\n");
    const out = join(dir, "tok");
    const msg = await mynah("tokenizer", "train", "--vocab-size", "400", "--out", out, join(dir, "a.txt"), join(dir, "b.jsonl"));
    assert.match(msg, /trained 400 tokens/);
    assert.ok(existsSync(join(out, "tokenizer.json")));
    const cfg = JSON.parse(readFileSync(join(out, "tokenizer_config.json"), "utf8"));
    assert.equal(cfg.eos_token, "<|im_end|>");
    assert.match(cfg.chat_template, /im_start/);
    assert.match(await mynah("tokenizer", "info", "--tokenizer", out), /vocabulary: 400 ids/);
    const tok = loadTokenizer(out);
    const ids = (await mynah("tokenizer", "encode", "--tokenizer", out, "--allow-special", "--text", "<|im_start|>alpha 你好<|im_end|>")).split(" ").map(Number);
    assert.equal(ids[0], tok.special.get("<|im_start|>"));
    assert.equal(ids[ids.length - 1], tok.special.get("<|im_end|>"));
    assert.equal(await mynah("tokenizer", "decode", "--tokenizer", out, ...ids.map(String)), "<|im_start|>alpha 你好<|im_end|>");
    // a file's ids as uint32 through the worker pool equal encode()
    const bin = join(dir, "ids.bin");
    assert.match(await mynah("tokenizer", "encode", "--tokenizer", out, "--file", join(dir, "a.txt"), "--out", bin, "--workers", "2"), /tokens →/);
    const buf = readFileSync(bin);
    assert.deepEqual(Array.from(new Uint32Array(buf.buffer, buf.byteOffset, buf.length / 4)), tok.encode(text));
    // convert: a tokenizer.json copy encodes the same
    const copy = join(dir, "copy");
    assert.match(await mynah("tokenizer", "convert", "--tokenizer", join(out, "tokenizer.json"), "--out", copy), /wrote 400 tokens/);
    assert.deepEqual(loadTokenizer(copy).encode(text), tok.encode(text));
    await assert.rejects(mynah("tokenizer", "train", "--vocab-size", "100", "--out", out, join(dir, "a.txt")), /smaller than 256 bytes/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("tokenizer train reads like data prepare: NFC, control characters, --text-field, --doc-split, --skip-bad, dedup", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tokcli-read-"));
  try {
    // Decomposed accents (NFD), a bell and CRLF line ends: cleaning makes "é" one code point and drops the rest.
    const words = ["cafe\u0301", "re\u0301sume\u0301", "nai\u0308ve", "the", "a\u0007b", "and"];
    const paras: string[] = [];
    for (let p = 0; p < 60; p++) paras.push(Array.from({ length: 12 }, (_, i) => words[(p * 5 + i * 3) % words.length]).join(" "));
    writeFileSync(join(dir, "a.txt"), paras.join("\r\n\r\n") + "\r\n");
    const bodies = ["bodies are read through --text-field", "a second body, and a second body", "bodies are read through --text-field"];
    writeFileSync(join(dir, "b.jsonl"), bodies.map((body) => JSON.stringify({ id: 1, body })).join("\n") + "\n{broken\n");
    const out = join(dir, "tok");
    const special = "<|endoftext|>";
    const args = ["tokenizer", "train", "--vocab-size", "300", "--special", special, "--out", out, "--text-field", "body", join(dir, "a.txt"), join(dir, "b.jsonl")];
    await assert.rejects(mynah(...args), /b\.jsonl:4: malformed JSON/);
    const msg = await mynah(...args, "--skip-bad");
    assert.match(msg, /read \d+ documents from 2 files \(\d+ duplicates or shorter than --min-chars dropped\); 1 bad records skipped/);
    // The reference: the cleaned, deduplicated documents, by an independent reading of the files.
    const clean = (s: string): string => s.normalize("NFC").replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, "");
    const seen = new Set<string>();
    const docs = [...paras.map(clean), ...bodies.map(clean)].filter((d) => !seen.has(d) && seen.add(d));
    const want = trainBpe(docs, { vocabSize: 300, specialTokens: [special] });
    const got = loadTokenizer(out);
    assert.equal(got.vocabSize, want.vocabSize);
    assert.deepEqual(got.encode(docs.join("\n")), want.encode(docs.join("\n")));
    assert.equal(got.encode("café").length, want.encode("café").length);
    // No merge was learned across the decomposed form: "e\u0301" never occurs in the cleaned text.
    assert.equal(got.encode("e\u0301").length, 3);
    // --doc-split line: every line its own document (duplicates by line then drop out).
    writeFileSync(join(dir, "lines.txt"), "same line\nsame line\nother line\n");
    assert.match(await mynah("tokenizer", "train", "--vocab-size", "270", "--special", special, "--out", join(dir, "t2"), "--doc-split", "line", join(dir, "lines.txt")),
      /read 2 documents from 1 files \(1 duplicates/);
    await assert.rejects(mynah("tokenizer", "train", "--out", join(dir, "t3"), "--doc-split", "para", join(dir, "lines.txt")), /option '--doc-split <mode>' argument 'para' is invalid\. Allowed choices are blank, line, file/);
    writeFileSync(join(dir, "empty.txt"), "\n\n");
    await assert.rejects(mynah("tokenizer", "train", "--vocab-size", "270", "--out", join(dir, "t4"), join(dir, "empty.txt")), /no documents to learn from:\n  .*empty\.txt: empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

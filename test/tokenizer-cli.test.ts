/** `mynah tokenizer train|encode|decode|info`, run in-process on a tiny generated corpus. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { registerTokenizer } from "../src/cli/tokenizer.ts";
import { loadTokenizer } from "../src/tokenizer/index.ts";

/** Runs `mynah <args>` and returns what it printed with console.log. */
async function mynah(...args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerTokenizer(program);
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    await program.parseAsync(["node", "mynah", ...args]);
  } finally {
    console.log = log;
  }
  return lines.join("\n");
}

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

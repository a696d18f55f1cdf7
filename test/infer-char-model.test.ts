/**
 * A character-level run (`mynah train --data FILE.txt`, the README's Tiny Shakespeare example)
 * is a model folder like any other: its checkpoints carry a tokenizer.json (one that Hugging
 * Face's tokenizers runs as the same character-level tokenizer) and load in generate and chat.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { pretrain } from "../src/train/pretrain.ts";
import { latestCheckpoint } from "../src/train/checkpoint.ts";
import { loadChatModel } from "../src/infer/load.ts";
import { generate, DEFAULT_GENERATE } from "../src/infer/generate.ts";
import { ChatSession } from "../src/infer/session.ts";
import { loadTokenizer, loadModelTokenizer } from "../src/tokenizer/index.ts";
import { charTokenizerFor } from "../src/tokenizer/char.ts";
import { buildProgram } from "../src/cli/main.ts";

const TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n" +
  "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo? 你好。\n\n";

test("a character-level checkpoint loads as a model folder in generate and chat", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-char-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "play.txt"), TEXT.repeat(40));
  await pretrain({
    data: [join(dir, "play.txt")], valFraction: 0.1, model: { preset: "tiny" },
    loop: { steps: 6, batchSize: 4, seqLen: 32, gradAccum: 1, schedule: "cosine", warmup: 2, minLrRatio: 0.1,
            optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 3 },
    evalBatches: 0, sampleTokens: 0, out: join(dir, "run"), resume: false, keep: 1, write: () => {}, tty: false, logEvery: 10,
  });
  const ckpt = latestCheckpoint(join(dir, "run"))!;

  // The tokenizer files say what they are, and give the run's ids.
  const cfg = JSON.parse(readFileSync(join(ckpt, "tokenizer_config.json"), "utf8"));
  assert.equal(cfg.mynah_tokenizer, "characters");
  const expected = charTokenizerFor(TEXT.repeat(40));
  const tok = loadModelTokenizer(ckpt);
  assert.equal(tok.vocabSize, expected.vocabSize);
  assert.deepEqual(tok.encode(TEXT), expected.encode(TEXT));
  assert.throws(() => loadTokenizer(ckpt), /tokenizer\.json: is a character-level tokenizer/);

  // Hugging Face's tokenizers reads the same file as the same tokenizer.
  const { Tokenizer: HfTokenizer } = await import("@huggingface/tokenizers");
  const hf = new HfTokenizer(JSON.parse(readFileSync(join(ckpt, "tokenizer.json"), "utf8")), cfg);
  assert.deepEqual(hf.encode(TEXT).ids, expected.encode(TEXT));
  assert.equal(hf.decode(expected.encode(TEXT)), TEXT);

  // Generation and a chat (plain-text mode: the tokenizer has no chat turns).
  const { model, tokenizer } = loadChatModel(ckpt);
  const g = generate(model, tokenizer, tokenizer.encode("ROMEO:\n"), { ...DEFAULT_GENERATE, maxNewTokens: 20 });
  assert.equal(g.ids.length, 20);
  assert.equal(tokenizer.decode(g.ids), g.text);
  const s = new ChatSession(model, tokenizer, { gen: { temperature: 0, maxNewTokens: 16 } });
  assert.equal(s.mode, "text");
  const r = s.send("JULIET:");
  assert.ok(r.generation.ids.length > 0);
  assert.ok(!r.generation.text.includes("\n\n"), "a reply ends at a blank line");
  assert.equal(s.messages.length, 2);

  // A checkpoint written before checkpoints carried a tokenizer.json loads from its state.json.
  unlinkSync(join(ckpt, "tokenizer.json"));
  assert.deepEqual(loadChatModel(ckpt).tokenizer.encode(TEXT), expected.encode(TEXT));

  // The CLI: generate from the run folder.
  let out = "";
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((c: string | Uint8Array) => ((out += String(c)), true)) as typeof process.stdout.write;
  const err = process.stderr.write.bind(process.stderr);
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await buildProgram().parseAsync(["node", "mynah", "generate", "--model", join(dir, "run"), "--prompt", "ROMEO:", "--max-new-tokens", "12", "--screen-log", join(dir, "log.jsonl")]);
  } finally {
    process.stdout.write = write;
    process.stderr.write = err;
  }
  assert.ok(out.length >= 2, JSON.stringify(out));
});

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { referenceBackend } from "../src/core/reference.ts";
import { trainBpe, saveTokenizer, loadTokenizer } from "../src/tokenizer/index.ts";
import { CHAT_TEMPLATE } from "../src/data/chat-template.ts";
import { prepareData } from "../src/data/prepare.ts";
import { loadConversations, renderExamples } from "../src/data/chat-batches.ts";
import { createGPT } from "../src/model/gpt.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { pretrain, PretrainSettingsError } from "../src/train/pretrain.ts";
import { latestCheckpoint, loadCheckpoint } from "../src/train/checkpoint.ts";
import { sft, SftSettingsError, type SftOptions } from "../src/train/sft.ts";
import { chatLoss } from "../src/train/sft-eval.ts";

const SHARED = (process.env.MYNAH_SHARED_DATA ?? new URL("../../shared/data", import.meta.url).pathname) + "/";
const TEXT = ["text/tinyshakespeare.txt", "text/fortunes_zh.txt"].map((f) => SHARED + f);
const EN = SHARED + "chat/chatterbot_en.jsonl";
const ZH = SHARED + "chat/chatterbot_zh.jsonl";
const skip = [...TEXT, EN, ZH].every(existsSync) ? false : "../shared/data not present";

const tmp = mkdtempSync(join(tmpdir(), "mynah-sft-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const T = 48;
const loop = (steps: number): SftOptions["loop"] => ({
  steps, batchSize: 4, seqLen: T, gradAccum: 1, schedule: "cosine", warmup: 2, minLrRatio: 0.1,
  optimizer: { ...DEFAULT_OPTIMIZER, kind: "adamw", lr: 3e-3, weightDecay: 0 }, clip: 1,
  evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 7,
});
const quiet = { write: (): void => {}, tty: false, logEvery: 1 };
const sftOpts = (out: string, steps: number, evalConversations = 40): SftOptions => ({
  from: join(tmp, "base"), data: [EN, ZH], valFraction: 0.1, evalConversations, packing: "packed", loop: loop(steps),
  out, resume: false, keep: 2, backend: referenceBackend, ...quiet,
});

test("data prepare → train → sft: fine-tuning lowers held-out assistant-token loss (English and Chinese)", { skip, timeout: 120_000 }, async () => {
  // A tokenizer with the chat special tokens, trained on a little of every input.
  const tokDir = join(tmp, "tok");
  const sample = [...TEXT, EN, ZH].map((f) => readFileSync(f, "utf8").slice(0, 150_000));
  saveTokenizer(tokDir, trainBpe(sample, { vocabSize: 256 + 8 + 400 }), { chatTemplate: CHAT_TEMPLATE });
  // Pretraining data and a briefly pretrained base model.
  const dataDir = join(tmp, "data");
  await prepareData({ inputs: TEXT, out: dataDir, tokenizer: tokDir, threads: 1, clean: { valFraction: 0.05 } });
  await pretrain({
    data: [dataDir], valFraction: 0, model: { preset: "tiny" }, loop: { ...loop(15), evalEvery: 0 },
    evalBatches: 0, sampleTokens: 0, out: join(tmp, "base"), resume: false, keep: 1, backend: referenceBackend, ...quiet,
  });

  const r = await sft(sftOpts(join(tmp, "sft"), 40));
  assert.equal(r.status, "done");
  assert.ok(r.conversations.train > 900 && r.conversations.val === 40, JSON.stringify(r.conversations));
  console.log(`held-out assistant-token loss ${r.before.loss.toFixed(3)} → ${r.after.loss.toFixed(3)}`);
  assert.ok(r.after.loss < r.before.loss - 0.2, `held-out assistant-token loss ${r.before.loss} → ${r.after.loss}`);

  // Per language, scored independently from the checkpoints: base vs fine-tuned.
  const tok = loadTokenizer(tokDir);
  const pad = tok.special.get("<|endoftext|>")!;
  const base = loadCheckpoint(latestCheckpoint(join(tmp, "base"))!);
  const tuned = loadCheckpoint(latestCheckpoint(join(tmp, "sft"))!);
  for (const file of [EN, ZH]) {
    const held = (await loadConversations([file], { valFraction: 0.1, seed: 7 })).val;
    const ex = renderExamples(tok, held, T).examples;
    const lb = chatLoss(createGPT(base.config, referenceBackend, { params: base.params }), ex, { B: 8, T, pad });
    const lt = chatLoss(createGPT(tuned.config, referenceBackend, { params: tuned.params }), ex, { B: 8, T, pad });
    assert.ok(lb.tokens > 100);
    console.log(`${file.split("/").pop()}: ${lb.loss.toFixed(3)} → ${lt.loss.toFixed(3)}`);
    assert.ok(lt.loss < lb.loss - 0.15, `${file}: ${lb.loss} → ${lt.loss}`);
  }
});

test("sft stopped midway and resumed takes the same steps as an uninterrupted run", { skip, timeout: 120_000 }, async () => {
  const full = await sft(sftOpts(join(tmp, "full"), 8, 16));
  const ctl = new AbortController();
  const out = join(tmp, "part");
  const first = await sft({
    ...sftOpts(out, 8, 16), signal: ctl.signal,
    write: (s) => {
      if (/^step 3\/8 /.test(s)) ctl.abort();
    },
  });
  assert.equal(first.status, "stopped");
  assert.equal(first.step, 3);
  // The second half with --recompute: the same gradients, so still the same losses.
  const rest = await sft({ ...sftOpts(out, 8, 16), resume: true, recompute: true });
  assert.equal(rest.status, "done");
  assert.deepEqual([...first.losses, ...rest.losses], full.losses);
  assert.equal(rest.before.loss, full.before.loss);
  assert.equal(rest.after.loss, full.after.loss);
});

test("sft refuses bad settings with its own settings error (not pretraining's)", async () => {
  const { SftSettingsError } = await import("../src/train/sft.ts");
  const { SettingsError } = await import("../src/core/errors.ts");
  const { PretrainSettingsError } = await import("../src/train/pretrain.ts");
  const check = (e: unknown): boolean => e instanceof SftSettingsError && e instanceof SettingsError && !(e instanceof PretrainSettingsError);
  await assert.rejects(sft({ ...sftOpts(join(tmp, "nowhere-out"), 1), from: join(tmp, "no-such-model") }), (e) => check(e) && /--from .*no-such-model: no such/.test((e as Error).message));
  await assert.rejects(sft({ ...sftOpts(join(tmp, "nowhere-out"), 1), loop: { ...loop(1), batchSize: 0 } }), (e) => check(e) && /--batch-size must be an integer ≥ 1/.test((e as Error).message));
});

test("sft --max-memory refuses a run whose estimate exceeds it, before writing anything", { skip, timeout: 60_000 }, async () => {
  const out = join(tmp, "too-big");
  await assert.rejects(sft({ ...sftOpts(out, 8, 16), maxMemory: { bytes: 2 ** 20, typed: "1M" } }),
    (e: Error) => e instanceof SftSettingsError && /^--max-memory 1M: this run needs an estimated .*\(gradients .*runtime and data/.test(e.message));
  assert.ok(!existsSync(out));
});

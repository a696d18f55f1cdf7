/**
 * The speedrun's two training stages on a wall-clock budget. Both read batches of rendered
 * conversations through the SFT batch source (src/data/chat-batches.ts): pretraining gives
 * every token a loss (the rendered conversations and the fact statements are its text), SFT
 * only the assistant replies (the chat template's mask). The model is mynah's GPT, the
 * optimizer and schedule mynah's (src/train); the result is a model folder.
 *
 * On a time budget the step count comes from timing a few passes first; the loop (src/train/
 * loop.ts, the one training loop) then runs that many steps with a cosine schedule.
 */
import { mkdirSync } from "node:fs";
import type { ChatMessage } from "../data/chat-template.ts";
import { renderExamples, openChatSource, type ChatExample } from "../data/chat-batches.ts";
import { configFromPreset, parameterCount, type ModelConfig } from "../model/config.ts";
import { createGPT } from "../model/gpt.ts";
import { loadModelFolder, saveModelFolder } from "../model/weights.ts";
import { DEFAULT_OPTIMIZER } from "../train/optim.ts";
import { trainLoop } from "../train/loop.ts";
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
  // Steps for the budget: time a few forward/backward passes (no update, so the weights stay
  // as they are), then leave 5 % for the optimizer and the checkpoint.
  const probe = src.state();
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const { inputs, targets } = src.nextBatch(B, T);
    const t = performance.now();
    model.zeroGrad();
    model.forward(inputs, targets, B, T);
    model.backward();
    if (i > 0) times.push(performance.now() - t); // the first pass warms caches
  }
  src.restore(probe);
  // The median: the machine may be busy with other work now and then.
  const probeMs = times.sort((a, b) => a - b)[2];
  const steps = Math.max(10, Math.floor((o.seconds * 1000 * 0.95) / (probeMs * 1.08)));
  o.log(`${o.kind}: ${examples.length} examples, model ${parameterCount(config).toLocaleString("en")} parameters ` +
    `(${config.nLayer}×${config.nEmbd}, vocab ${config.vocabSize}), batch ${B}×${T}, ${steps} steps for ${o.seconds} s ` +
    `(${probeMs.toFixed(0)} ms a step), backend ${backend.name}`);
  // Should the machine be slower than measured, stop at 125 % of the budget anyway.
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), o.seconds * 1250);
  const t0 = performance.now();
  let lastLog = t0, lossAvg = NaN;
  const r = await trainLoop(model, src, {
    steps, batchSize: B, seqLen: T, gradAccum: 1, schedule: "cosine", warmup: Math.min(o.kind === "pretrain" ? 30 : 10, Math.floor(steps / 10)),
    minLrRatio: 0.1, optimizer: { ...DEFAULT_OPTIMIZER, lr, weightDecay: 0 }, clip: 1, evalEvery: 0, sampleEvery: 0,
    checkpointEvery: 0, seed: p.seed, peakFlops: 0,
  }, {
    signal: stop.signal,
    onStep(m) {
      lossAvg = Number.isNaN(lossAvg) ? m.loss : 0.95 * lossAvg + 0.05 * m.loss;
      const now = performance.now();
      if (now - lastLog > 10_000 || m.step === steps) {
        lastLog = now;
        o.log(`  ${o.kind} step ${m.step}/${steps}  loss ${lossAvg.toFixed(3)}  ${m.tokensPerSec.toFixed(0)} tok/s  ` +
          `${((now - t0) / 1000).toFixed(0)} s, about ${m.etaSec.toFixed(0)} s to go`);
      }
    },
  });
  clearTimeout(timer);
  const step = r.step, tokens = r.tokens;
  mkdirSync(o.outDir, { recursive: true });
  saveModelFolder(o.outDir, model.params, { mynah: { stage: o.kind, steps: step, tokens, loss: lossAvg } });
  const s = (performance.now() - t0) / 1000;
  return `${r.status === "stopped" ? "stopped at the time limit after " : ""}${step} steps, ${tokens.toLocaleString("en")} tokens (${(tokens / s).toFixed(0)} tok/s), final loss ${lossAvg.toFixed(3)}`;
}

/**
 * The speedrun's two training stages on a wall-clock budget. Both read batches of rendered
 * conversations through the SFT batch source (src/data/chat-batches.ts): pretraining gives
 * every token a loss (the rendered conversations and the fact statements are its text), SFT
 * only the assistant replies (the chat template's mask). The model is mynah's GPT, the
 * optimizer and schedule mynah's (src/train); the result is a model folder.
 *
 * Training runs through the one training loop (src/train/loop.ts), in resumed segments so that
 * a cosine schedule fits a wall-clock budget (see below).
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { ChatMessage } from "../data/chat-template.ts";
import { renderExamples, openChatSource, type ChatExample } from "../data/chat-batches.ts";
import { configFromPreset, parameterCount, type ModelConfig } from "../model/config.ts";
import { createGPT } from "../model/gpt.ts";
import { loadModelFolder, saveModelFolder } from "../model/weights.ts";
import { DEFAULT_OPTIMIZER } from "../train/optim.ts";
import { trainLoop, type LoopResult, type LoopSnapshot, type ResumeFrom } from "../train/loop.ts";
import { latestCheckpoint, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from "../train/checkpoint.ts";
import type { StoredTensor } from "../core/safetensors.ts";
import type { Backend } from "../core/backend.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { nativeBackend } from "../core/native.ts";
import { createReporter } from "../train/report.ts";
import { machinePeakFlops } from "../train/pretrain.ts";
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
  /** Compute backend (default: the native one; tests may pass the TypeScript reference). */
  backend?: Backend;
  /** Ctrl-C: stop after the current step, save a checkpoint, return (the stage is then unfinished). */
  signal?: AbortSignal;
}

/** Where a training stage keeps its checkpoint while it runs (removed when the stage finishes). */
export function stageCheckpointDir(outDir: string): string {
  return `${outDir}-checkpoint`;
}

/** What a stage's checkpoint must match to be resumed. */
interface StageCheckpointOptions {
  kind: string;
  config: ModelConfig;
  seed: number;
  seconds: number;
  examples: number;
  /** Seconds of training done when it was saved (the wall-clock budget continues from there). */
  elapsed: number;
}

/** The model config of a plan for a tokenizer. */
export function speedrunModelConfig(plan: SpeedrunPlan, vocabSize: number): ModelConfig {
  const m = plan.model;
  return configFromPreset("small", { nLayer: m.nLayer, nEmbd: m.nEmbd, nHead: m.nHead, nKvHead: m.nKvHead, vocabSize, contextLength: m.seqLen, tiedEmbeddings: false });
}

function fullLoss(ex: ChatExample): ChatExample {
  return { ids: ex.ids, mask: new Uint8Array(ex.ids.length).fill(1) };
}

/**
 * Steps a time-budgeted stage will reach: the steps done plus the time left at the measured
 * pace (elapsed / step). What a progress line shows; the schedule's own total in the first,
 * measuring segment is a placeholder no step time could reach, never an estimate to print.
 */
export function stepsEstimate(step: number, elapsedSeconds: number, budgetSeconds: number): number {
  if (step <= 0 || !(elapsedSeconds > 0)) return step;
  return step + Math.max(0, Math.floor((budgetSeconds - elapsedSeconds) / (elapsedSeconds / step)));
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
  // Training needs the native kernels: nativeBackend() throws, saying how to build them, when
  // they are missing (the TypeScript reference would train hundreds of times slower, silently).
  const backend = o.backend ?? nativeBackend();
  let config: ModelConfig;
  let model;
  // An interrupted run of this stage left a checkpoint: continue from it when it matches.
  const ckptDir = stageCheckpointDir(o.outDir);
  let saved: LoadedCheckpoint | undefined;
  const latest = existsSync(ckptDir) ? latestCheckpoint(ckptDir) : null;
  if (latest) {
    const c = loadCheckpoint(latest);
    const so = c.state.options as unknown as StageCheckpointOptions;
    const fresh = o.initFrom ? loadModelFolder(o.initFrom).config : speedrunModelConfig(p, tok.vocabSize);
    if (so.kind === o.kind && so.seed === p.seed && so.seconds === o.seconds && so.examples === examples.length &&
        JSON.stringify(so.config) === JSON.stringify(fresh)) saved = c;
    else o.log(`${o.kind}: ${latest} is from other settings; starting the stage afresh`);
  }
  if (saved) {
    config = saved.config;
    model = createGPT(config, backend, { params: saved.params });
  } else if (o.initFrom) {
    const loaded = loadModelFolder(o.initFrom);
    config = loaded.config;
    model = createGPT(config, backend, { params: loaded.params });
  } else {
    config = speedrunModelConfig(p, tok.vocabSize);
    model = createGPT(config, backend, { seed: p.seed });
  }
  // metrics.jsonl in the stage's folder, as `mynah train` writes it (for `mynah report`); a re-run starts it afresh.
  mkdirSync(o.outDir, { recursive: true });
  const metrics = join(o.outDir, "metrics.jsonl");
  rmSync(metrics, { force: true });
  const rep = createReporter({ write: () => {}, tty: false, every: Number.MAX_SAFE_INTEGER, jsonl: metrics });
  const peak = machinePeakFlops().flops; // for the MFU column of metrics.jsonl
  rep.run({ kind: `speedrun-${o.kind}`, params: parameterCount(config), backend: backend.name, seconds: o.seconds });
  const src = openChatSource(examples, { seed: p.seed + (o.kind === "sft" ? 17 : 0), packing: "packed", pad: eot });
  const lr = o.kind === "pretrain" ? 3e-3 : 1e-3;
  o.log(`${o.kind}: ${examples.length} examples, model ${parameterCount(config).toLocaleString("en")} parameters ` +
    `(${config.nLayer}×${config.nEmbd}, vocab ${config.vocabSize}), batch ${B}×${T}, ${o.seconds} s, backend ${backend.name}`);
  // On a wall-clock budget the number of steps is an estimate that the machine's load can
  // upset, and the cosine schedule needs it. So the loop runs in segments of about 20 s:
  // after each, the total is re-estimated from the measured step time and the next segment
  // resumes (optimizer state, data position, step) with the new total. The last segment runs
  // to the end of the schedule.
  const before = saved ? (saved.state.options as unknown as StageCheckpointOptions).elapsed : 0;
  const t0 = performance.now() - before * 1000;
  const elapsed = (): number => (performance.now() - t0) / 1000;
  let resume: ResumeFrom | undefined = saved
    ? { step: saved.state.step, tokens: saved.state.tokens, optimizer: saved.optimizer, rng: saved.state.rng, data: saved.state.data, file: saved.dir }
    : undefined;
  if (saved) o.log(`${o.kind}: resuming from ${saved.dir} at step ${saved.state.step} (${before.toFixed(0)} of ${o.seconds} s done)`);
  // A checkpoint after every segment (about every 20 s) and when Ctrl-C stops the stage.
  const checkpoint = (snap: LoopSnapshot): void => {
    const options: StageCheckpointOptions = { kind: o.kind, config, seed: p.seed, seconds: o.seconds, examples: examples.length, elapsed: elapsed() };
    saveCheckpoint(ckptDir, model.params, snap.optimizer.stateTensors(), {
      format: 1, step: snap.step, tokens: snap.tokens, data: snap.data, rng: snap.rng, tokenizer: null,
      options: options as unknown as Record<string, unknown>,
    }, 1);
  };
  let r: LoopResult | undefined;
  let lastLog = t0, lossAvg = NaN, total = 0;
  const warmupFor = (steps: number): number => Math.min(o.kind === "pretrain" ? 30 : 10, Math.floor(steps / 10));
  for (let segment = 0; ; segment++) {
    const done = resume?.step ?? 0;
    const left = o.seconds - elapsed();
    // Step time so far. The first segment assumes 1 ms, a total it cannot reach before its
    // timer ends it: it only measures.
    const msPerStep = done > 0 ? (elapsed() * 1000) / done : 1;
    total = Math.max(done + 1, done + Math.floor((left * 1000) / msPerStep));
    // The first segment only measures (a quarter of the budget at most); the last runs out the schedule.
    const last = done > 0 && left <= 30;
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), (last ? left * 1.25 + 5 : Math.min(20, done > 0 ? left - 10 : Math.max(2, left * 0.25))) * 1000);
    const onUser = (): void => stop.abort();
    o.signal?.addEventListener("abort", onUser);
    if (o.signal?.aborted) stop.abort();
    let snap: LoopSnapshot | undefined;
    r = await trainLoop(model, src, {
      steps: total, batchSize: B, seqLen: T, gradAccum: 1, schedule: "cosine", warmup: warmupFor(total),
      minLrRatio: 0.1, optimizer: { ...DEFAULT_OPTIMIZER, lr, weightDecay: 0 }, clip: 1, evalEvery: 0, sampleEvery: 0,
      checkpointEvery: 0, seed: p.seed, peakFlops: peak,
    }, {
      signal: stop.signal,
      save: (s) => { snap = s; },
      onStep(m) {
        rep.step(m, total);
        lossAvg = Number.isNaN(lossAvg) ? m.loss : 0.95 * lossAvg + 0.05 * m.loss;
        const now = performance.now();
        if (now - lastLog > 10_000) {
          lastLog = now;
          o.log(`  ${o.kind} step ${m.step}/~${stepsEstimate(m.step, elapsed(), o.seconds)}  loss ${lossAvg.toFixed(3)}  lr ${m.lr.toExponential(1)}  ` +
            `${m.tokensPerSec.toFixed(0)} tok/s  ${elapsed().toFixed(0)}/${o.seconds} s`);
        }
      },
    }, resume);
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", onUser);
    if (snap) checkpoint(snap);
    if (o.signal?.aborted) {
      const at = snap?.step ?? resume?.step ?? 0;
      o.log(`${o.kind}: stopped at step ${at}; checkpoint in ${ckptDir}`);
      return `interrupted at step ${at}`;
    }
    if (r.status === "done" || last || !snap) break;
    const opt = new Map<string, StoredTensor>(snap.optimizer.stateTensors().map(([n, t]) => [n, { dtype: "F32" as const, shape: t.shape, data: Float32Array.from(t.data) }]));
    resume = { step: snap.step, tokens: snap.tokens, optimizer: opt, rng: snap.rng, data: snap.data, file: `${o.kind} segment ${segment}` };
  }
  const step = r!.step, tokens = r!.tokens;
  mkdirSync(o.outDir, { recursive: true });
  saveModelFolder(o.outDir, model.params, { mynah: { stage: o.kind, steps: step, tokens, loss: lossAvg } });
  rmSync(ckptDir, { recursive: true, force: true }); // finished: a later --stage starts afresh
  const s = (performance.now() - t0) / 1000;
  return `${r!.status === "stopped" ? "stopped at the time limit after " : ""}${step} steps, ${tokens.toLocaleString("en")} tokens (${(tokens / s).toFixed(0)} tok/s), final loss ${lossAvg.toFixed(3)}`;
}

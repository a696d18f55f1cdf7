/**
 * Supervised fine-tuning, end to end: load a checkpoint, read conversations (chat JSONL,
 * ShareGPT, Alpaca, Parquet), split them by content into train and held-out, render them with
 * the one chat template (loss only on assistant replies and their <|im_end|>), and run the
 * shared training loop (src/train/loop.ts) with its checkpoints, resume and progress. Reports
 * the held-out assistant-token loss of the starting model and of the fine-tuned one.
 * `mynah sft` parses flags into SftOptions and calls sft(); nothing here exits.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Backend } from "../core/backend.ts";
import { nativeBackend } from "../core/native.ts";
import { loadConversations, openChatSource, renderExamples, type ChatExample, type ChatPacking } from "../data/chat-batches.ts";
import { chatPadId, usesOwnTemplate } from "../data/chat-template.ts";
import type { DataError } from "../data/errors.ts";
import type { InputFormat } from "../data/readers.ts";
import { parameterCount, type ModelConfig } from "../model/config.ts";
import { createGPT, type Precision } from "../model/gpt.ts";
import { loadModelFolder } from "../model/weights.ts";
import type { ParamSet } from "../model/params.ts";
import { loadModelTokenizer as loadTokenizer } from "../tokenizer/io.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { latestCheckpoint, loadCheckpoint, resolvePrecision, resumeBackendNote, saveCheckpoint, type CheckpointState, type LoadedCheckpoint, type TokenizerRef } from "./checkpoint.ts";
import { trainLoop, type LoopOptions, type LoopResult } from "./loop.ts";
import { checkLoopOptions, describePrecision, machinePeakFlops, resumePoint, startRun, tokenizerFilesOf, tokenizerFromRef } from "./pretrain.ts";
import { SettingsError } from "../core/errors.ts";
import { describeEstimate, estimateTrainingMemory, memoryRefusal } from "./memory.ts";
import { createReporter } from "./report.ts";
import { chatLoss, type ChatLoss } from "./sft-eval.ts";

/** A fine-tuning setting refused before training starts; the message names the flag. */
export class SftSettingsError extends SettingsError {
  constructor(message: string) {
    super(message);
    this.name = "SftSettingsError";
  }
}

/** What a fine-tuning run (sft, dpo) takes besides its data and objective. */
export interface RunOptions {
  /** Training loop settings; seqLen 0 = the model's context length. */
  loop: Omit<LoopOptions, "peakFlops">;
  out: string;
  resume: boolean;
  /** Without resume: replace an earlier run in `out` (else refused). */
  force?: boolean;
  keep: number;
  skipBad?: boolean;
  onSkip?: (e: DataError) => void;
  backend?: Backend;
  write: (s: string) => void;
  tty: boolean;
  logEvery: number;
  signal?: AbortSignal;
  /** GEMM operand precision (`--precision`; default fp32, or the checkpoint's on resume). */
  precision?: Precision;
}

export interface SftOptions extends RunOptions {
  /** A checkpoint folder, a run folder (its latest checkpoint), or a model folder (with `tokenizer`). */
  from: string;
  /** Conversation files, folders or globs. */
  data: string[];
  format?: InputFormat;
  /** Tokenizer folder, when `from` does not name one (a bare model folder). */
  tokenizer?: string;
  /** Fraction of conversations held out (by content hash) for the before/after loss. */
  valFraction: number;
  /** Held-out conversations scored per evaluation (the first ones; 0 = all). */
  evalConversations: number;
  packing: ChatPacking;
  /** Keep only block inputs; recompute each block in the backward (`--recompute`). */
  recompute?: boolean;
  /** Refuse the run when its memory estimate exceeds this many bytes (`--max-memory`, as typed). */
  maxMemory?: { bytes: number; typed: string };
}

export interface SftResult extends LoopResult {
  runDir: string;
  config: ModelConfig;
  /** Held-out assistant-token loss of the starting model and of the fine-tuned one. */
  before: ChatLoss;
  after: ChatLoss;
  losses: number[];
  conversations: { train: number; val: number; skipped: number; truncated: number };
}

export interface Start {
  config: ModelConfig;
  params: ParamSet;
  tokenizer: Tokenizer;
  ref: TokenizerRef;
  describe: string;
}

/** The model and tokenizer SFT starts from. */
export function loadStart(from: string, tokenizerPath: string | undefined): Start {
  if (!existsSync(from)) throw new SftSettingsError(`--from ${from}: no such checkpoint or model folder`);
  // The tokenizer: --tokenizer, else the copy inside the folder, else the one its state names.
  const tokFrom = (ref: TokenizerRef | null, where: string): { tokenizer: Tokenizer; ref: TokenizerRef } => {
    if (tokenizerPath) return { tokenizer: loadTokenizer(tokenizerPath), ref: { kind: "file", path: resolve(tokenizerPath) } };
    if (existsSync(join(where, "tokenizer.json"))) return { tokenizer: loadTokenizer(where), ref: { kind: "file", path: resolve(where) } };
    if (!ref) throw new SftSettingsError(`--from ${where}: the folder holds no tokenizer.json and names no tokenizer; pass --tokenizer`);
    return { tokenizer: tokenizerFromRef(ref), ref };
  };
  const ckpt = existsSync(join(from, "state.json")) ? from : existsSync(join(from, "latest")) ? latestCheckpoint(from) : null;
  if (ckpt) {
    const c = loadCheckpoint(ckpt);
    return { config: c.config, params: c.params, ...tokFrom(c.state.tokenizer, ckpt), describe: `${ckpt} (step ${c.state.step})` };
  }
  const m = loadModelFolder(from);
  return { config: m.config, params: m.params, ...tokFrom(null, from), describe: from };
}

/** Where fine-tuning starts: the checkpoint a --resume continues (with its tokenizer), else --from (loadStart). */
export function fineTuneStart(saved: LoadedCheckpoint | null, from: string, tokenizerPath: string | undefined): Start {
  if (!saved) return loadStart(from, tokenizerPath);
  return {
    config: saved.config, params: saved.params, ref: saved.state.tokenizer!, describe: `${saved.dir} (resuming)`,
    tokenizer: existsSync(join(saved.dir, "tokenizer.json")) ? loadTokenizer(saved.dir) : tokenizerFromRef(saved.state.tokenizer!),
  };
}

export function checkChatTokenizer(tok: Tokenizer): number {
  if (usesOwnTemplate(tok)) {
    // A model with its own chat template (tokenizer_config.json): rows are padded with its pad/eos token.
    const pad = chatPadId(tok);
    if (pad === undefined) throw new SftSettingsError(`the model's tokenizer_config.json names no pad_token or eos_token that is a special token; SFT needs one to pad rows`);
    return pad;
  }
  for (const s of ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]) {
    if (!tok.special.has(s)) throw new SftSettingsError(`the model's tokenizer has no ${s} special token: fine-tuning needs a BPE tokenizer from \`mynah tokenizer train\` (and a model pretrained with it via \`mynah data prepare\`)`);
  }
  return tok.special.get("<|endoftext|>")!;
}

export async function sft(o: SftOptions): Promise<SftResult> {
  checkLoopOptions({ ...o.loop, seqLen: o.loop.seqLen || 1 }, SftSettingsError); // seqLen 0 is resolved below, once the model is known
  const begun = startRun(o, SftSettingsError);
  const { run, saved } = begun;
  let loop = begun.loop;
  const savedBefore = (begun.prev.before as ChatLoss | undefined) ?? null;
  const start = fineTuneStart(saved, o.from, o.tokenizer);
  const pad = checkChatTokenizer(start.tokenizer);
  // No --seq-len: rows as long as the model's context.
  if (!loop.seqLen) loop = { ...loop, seqLen: start.config.contextLength };
  if (loop.seqLen > start.config.contextLength) throw new SftSettingsError(`--seq-len ${loop.seqLen} is longer than the model's context ${start.config.contextLength}`);
  if (start.tokenizer.vocabSize > start.config.vocabSize) throw new SftSettingsError(`the tokenizer has ${start.tokenizer.vocabSize} tokens, the model only ${start.config.vocabSize}`);

  const convs = await loadConversations(o.data, { valFraction: o.valFraction, seed: loop.seed, format: o.format, skipBad: o.skipBad, onSkip: o.onSkip });
  const T = loop.seqLen;
  // Each checkpoint carries its tokenizer, so `mynah chat --model` opens it as it is.
  const tokenizerFiles = tokenizerFilesOf(start.ref);
  const train = renderExamples(start.tokenizer, convs.train, T);
  const valAll = renderExamples(start.tokenizer, convs.val, T).examples;
  const val: ChatExample[] = o.evalConversations > 0 ? valAll.slice(0, o.evalConversations) : valAll;
  if (train.examples.length === 0) throw new SftSettingsError(`--data: no training conversations (${convs.train.length} read)`);
  if (val.length === 0) throw new SftSettingsError(`--data: no held-out conversations; raise --val-fraction (now ${o.valFraction})`);

  // The parameters are loaded already (part of the process's resident set).
  const memory = estimateTrainingMemory(start.config, loop.batchSize, T, { recompute: o.recompute, paramsLoaded: true });
  const tooBig = memoryRefusal(memory, o.maxMemory?.bytes, o.maxMemory?.typed, Boolean(o.recompute));
  if (tooBig) throw new SftSettingsError(tooBig);
  const backend = o.backend ?? nativeBackend();
  const { precision, note: precisionNote } = resolvePrecision(o.precision, saved?.state ?? null);
  const model = createGPT(start.config, backend, { params: start.params, recompute: o.recompute, precision });
  const source = openChatSource(train.examples, { seed: loop.seed, packing: o.packing, pad });
  const resume = saved ? resumePoint(saved) : undefined;
  run.replace();
  mkdirSync(o.out, { recursive: true });
  const rep = createReporter({ write: o.write, tty: o.tty, every: o.logEvery, jsonl: join(o.out, "metrics.jsonl") });
  const c = start.config;
  rep.run({ kind: "sft", params: parameterCount(c), backend: backend.name, precision, ...(saved ? { resumedAt: saved.state.step } : {}) });
  rep.note(`model: ${start.describe}: ${c.nLayer} layers, width ${c.nEmbd}, context ${c.contextLength}, ${(parameterCount(c) / 1e6).toFixed(2)}M parameters; backend ${backend.name}`);
  const backendNote = saved && resumeBackendNote(saved.state, backend.name);
  if (backendNote) rep.note(`note: ${backendNote}`);
  if (precisionNote) rep.note(`note: ${precisionNote}`);
  if (precision === "bf16") rep.note(`precision: ${describePrecision(precision, backend, c)}`);
  rep.note(`memory: estimated peak ${describeEstimate(memory)}${o.recompute ? "; --recompute" : ""}`);
  rep.note(`data: ${train.examples.length} training conversations, ${val.length} held out` +
    (train.truncated ? `, ${train.truncated} cut to ${T + 1} tokens (oldest turns dropped)` : "") +
    (train.dropped ? `, ${train.dropped} left with no reply after cutting (skipped)` : "") +
    (convs.skipped ? `, ${convs.skipped} bad records skipped` : "") + `; ${o.packing} rows of ${T}`);
  const evalB = Math.max(1, loop.batchSize);
  const score = (): ChatLoss => chatLoss(model, val, { B: evalB, T, pad });
  const before = savedBefore ?? score();
  rep.note(`held-out assistant-token loss before: ${before.loss.toFixed(4)} (${before.tokens} tokens, ${before.conversations} conversations)`);

  const peak = machinePeakFlops(precision);
  const options = { kind: "sft", loop, from: resolve(o.from), data: o.data.map((p) => resolve(p)), valFraction: o.valFraction, packing: o.packing, before };
  const losses: number[] = [];
  const result = await trainLoop(model, source, { ...loop, peakFlops: peak.flops, precision }, {
    evaluate: () => {
      const r = score();
      return { loss: r.loss, bpb: null, tokens: r.tokens };
    },
    onStep: (m) => {
      losses.push(m.loss);
      rep.step(m, loop.steps);
    },
    onEval: (s, r) => rep.eval(s, r),
    save: (s) => {
      const state: CheckpointState = { format: 1, step: s.step, tokens: s.tokens, data: s.data, rng: s.rng, tokenizer: start.ref, options, backend: backend.name, precision };
      rep.note(`checkpoint: ${saveCheckpoint(o.out, model.params, s.optimizer.stateTensors(), state, o.keep, tokenizerFiles)}`);
    },
    signal: o.signal,
  }, resume);
  const after = result.lastEval && result.step === loop.steps ? { ...before, loss: result.lastEval.loss, tokens: result.lastEval.tokens } : score();
  rep.done();
  rep.note(`held-out assistant-token loss: ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}`);
  if (result.status === "stopped") rep.note(`stopped at step ${result.step}; continue with --resume`);
  return {
    ...result, runDir: o.out, config: c, before, after, losses,
    conversations: { train: train.examples.length, val: val.length, skipped: convs.skipped, truncated: train.truncated },
  };
}

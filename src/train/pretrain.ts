/**
 * Pretraining, end to end: open the data (text files → a character-level corpus, or a folder
 * from `mynah data prepare` → token shards), size the model, train with checkpoints, resume.
 * `mynah train` parses flags into PretrainOptions and calls pretrain(); nothing here exits.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Backend } from "../core/backend.ts";
import { loadNative, nativeBackend } from "../core/native.ts";
import { openTextSource, loadTextCorpus } from "../data/text.ts";
import { openShardSource } from "../data/loader.ts";
import { loadPreparedTokenizer, readManifest } from "../data/prepare.ts";
import type { BatchSource } from "../data/types.ts";
import { configFromPreset, headDimOf, parameterCount, ModelConfigError, type ModelConfig } from "../model/config.ts";
import { bf16Attention, createGPT, type GPT, type Precision } from "../model/gpt.ts";
import { charTokenizer, charTokenizerConfig, charTokenizerJson } from "../tokenizer/char.ts";
import { loadTokenizer } from "../tokenizer/io.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { clearRun, latestCheckpoint, loadCheckpoint, resolvePrecision, resumeBackendNote, runFiles, saveCheckpoint, type CheckpointState, type LoadedCheckpoint, type TokenizerRef } from "./checkpoint.ts";
import { evaluate, tokenByteLengths, type EvalResult } from "./eval.ts";
import { trainLoop, type LoopOptions, type LoopResult, type ResumeFrom } from "./loop.ts";
import { describeEstimate, estimateTrainingMemory, memoryRefusal } from "./memory.ts";
import { createReporter } from "./report.ts";
import { SettingsError } from "../core/errors.ts";

/** Nominal FP32 peak of the reference machine (2 cores), used when no measurement is available. */
export const NOMINAL_PEAK_GFLOPS = 224;

export interface ModelShapeOptions {
  preset: string;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  width?: number;
  ffn?: number;
  /** Context length (default: the sequence length). */
  context?: number;
  qkNorm?: boolean;
  tiedEmbeddings?: boolean;
  ropeTheta?: number;
}

export interface PretrainOptions {
  /** Text files, or one folder prepared by `mynah data prepare`. */
  data: string[];
  /** Text data: the last fraction of the tokens is held out for validation. */
  valFraction: number;
  model: ModelShapeOptions;
  loop: Omit<LoopOptions, "peakFlops">;
  /** Batches of [batchSize, seqLen] per validation. */
  evalBatches: number;
  /** Tokens per sample (0: no samples). */
  sampleTokens: number;
  /**
   * Draws a sample of up to n tokens after `prompt` with `seed` (the CLI passes the chat's
   * engine, src/infer/train-sample.ts; train does not import infer). Needed when sampleTokens > 0.
   */
  sampler?: (model: GPT, tok: Tokenizer, prompt: readonly number[], n: number, seed: number) => number[];
  /** Run folder (checkpoints, metrics.jsonl). */
  out: string;
  /** Continue from RUN/latest. */
  resume: boolean;
  /** Without resume: replace an earlier run in `out` (else refused: two runs never mix). */
  force?: boolean;
  /** Checkpoints kept. */
  keep: number;
  backend?: Backend;
  /** Output (progress lines), whether it is a terminal, and plain-line frequency. */
  write: (s: string) => void;
  tty: boolean;
  logEvery: number;
  signal?: AbortSignal;
  /** Called after each validation (e.g. to stop at a target loss through `signal`). */
  onEval?: (step: number, loss: number, bpb: number | null) => void;
  /** Keep only block inputs; recompute each block in the backward (`--recompute`). */
  recompute?: boolean;
  /** Refuse the run when its memory estimate exceeds this many bytes (`--max-memory`, as typed). */
  maxMemory?: { bytes: number; typed: string };
  /** GEMM operand precision (`--precision`; default fp32, or the checkpoint's on resume). */
  precision?: Precision;
}

/** A pretraining setting refused before training starts; the message names the flag. */
export class PretrainSettingsError extends SettingsError {
  constructor(message: string) {
    super(message);
    this.name = "PretrainSettingsError";
  }
}

export const NO_DATA_HELP =
  "mynah train needs training data: --data FILE.txt (one or more plain-text files, trained at character level)\n" +
  "or --data FOLDER (prepared with `mynah data prepare`). For example:\n" +
  "  mynah train --data ../shared/data/text/tinyshakespeare.txt --preset small --steps 2000\n" +
  "Or run `mynah speedrun`, which gets its data, tokenizer and model ready with no settings.";

interface TrainData {
  train: BatchSource;
  val: BatchSource | null;
  vocabSize: number;
  tokenizer: Tokenizer;
  ref: TokenizerRef;
  describe: string;
}

/** evalRows: rows one validation reads (evalBatches × batch size), spread over the text's split. */
function openData(paths: string[], valFraction: number, seed: number, savedRef: TokenizerRef | null,
                  evalRows: number, T: number): TrainData {
  if (paths.length === 0) throw new PretrainSettingsError(NO_DATA_HELP);
  for (const p of paths) if (!existsSync(p)) throw new PretrainSettingsError(`--data ${p}: no such file or folder`);
  const dirs = paths.filter((p) => statSync(p).isDirectory());
  if (dirs.length > 0) {
    if (paths.length > 1) throw new PretrainSettingsError(`--data: give one prepared folder, or text files only (got ${paths.join(", ")})`);
    const dir = dirs[0];
    const m = readManifest(dir);
    // The folder's own copy, checked against the digest recorded when the shards were made.
    let tokenizer: Tokenizer, tokPath: string;
    try {
      ({ tokenizer, path: tokPath } = loadPreparedTokenizer(dir, m));
    } catch (err) {
      throw new PretrainSettingsError(`--data ${(err as Error).message}`);
    }
    const val = m.splits.val && m.splits.val.tokens > 0 ? openShardSource(dir, "val", seed) : null;
    return {
      train: openShardSource(dir, "train", seed), val, vocabSize: m.tokenizer.vocabSize, tokenizer,
      ref: { kind: "file", path: resolve(basename(tokPath) === "tokenizer.json" ? dirname(tokPath) : tokPath) },
      describe: `${dir}: ${m.splits.train.tokens} training tokens${val ? `, ${m.splits.val.tokens} validation` : ""}, vocabulary ${m.tokenizer.vocabSize}`,
    };
  }
  const corpus = loadTextCorpus(paths, valFraction);
  // On resume the saved character set wins: it fixes the ids the weights were trained on.
  if (savedRef?.kind === "char" && savedRef.chars.join("") !== corpus.tokenizer.chars.join("")) {
    throw new PretrainSettingsError(`--data: the text's characters differ from those the checkpoint was trained on (did the files change?)`);
  }
  const tokenizer = corpus.tokenizer;
  return {
    train: openTextSource(corpus.train, { seed, order: "random" }),
    val: corpus.val.length > 1
      ? openTextSource(corpus.val, { seed, order: "sequential", stride: Math.max(T, Math.floor((corpus.val.length - T - 1) / Math.max(1, evalRows))) })
      : null,
    vocabSize: tokenizer.vocabSize, tokenizer, ref: { kind: "char", chars: tokenizer.chars },
    describe: `${paths.join(", ")}: ${corpus.train.length} training characters, ${corpus.val.length} validation, vocabulary ${tokenizer.vocabSize}`,
  };
}

/**
 * A fresh run (no --resume) into a folder that holds another run's checkpoints or metrics is
 * refused, unless --force, which removes that run's files once every setting has been checked
 * (`replace()`): a folder never mixes two runs' metrics.jsonl, checkpoints and `latest`.
 */
export function claimRunFolder(out: string, resume: boolean, force: boolean,
  Err: new (message: string) => SettingsError = PretrainSettingsError): { replace: () => void } {
  const old = resume ? [] : runFiles(out);
  if (old.length > 0 && !force) {
    const shown = old.length > 4 ? [...old.slice(0, 4), `… ${old.length - 4} more`] : old;
    throw new Err(`--out ${out} already holds a run (${shown.join(", ")}); continue it with --resume, choose another --out, or pass --force to replace it`);
  }
  return { replace: () => { if (old.length > 0) clearRun(out); } };
}

/** Where a run starts: its claimed folder and, with --resume, the checkpoint it continues. */
export interface RunStart<L> {
  run: { replace: () => void };
  /** The loop settings: with --resume the run's own, but for --steps and how often it evaluates, samples and saves. */
  loop: L;
  saved: LoadedCheckpoint | null;
  /** The options the resumed run recorded in its checkpoint (empty for a fresh run). */
  prev: Record<string, unknown>;
}

/**
 * The start of `train`, `sft` and `dpo`: claims the run folder (claimRunFolder) and, with
 * --resume, loads its latest checkpoint. The run's own loop settings continue, except how long
 * it runs and how often it reports and saves; a checkpoint already at --steps is refused.
 * `check` may refuse the recorded options (another kind of run) before anything else is used.
 */
export function startRun<L extends Omit<LoopOptions, "peakFlops">>(o: { out: string; resume: boolean; force?: boolean; loop: L },
  Err: new (message: string) => SettingsError = PretrainSettingsError, check?: (prev: Record<string, unknown>, dir: string) => void): RunStart<L> {
  const run = claimRunFolder(o.out, o.resume, o.force ?? false, Err);
  if (!o.resume) return { run, loop: o.loop, saved: null, prev: {} };
  const dir = latestCheckpoint(o.out);
  if (!dir) throw new Err(`--resume: ${o.out} has no checkpoint to resume from (no ${join(o.out, "latest")})`);
  const saved = loadCheckpoint(dir);
  const prev = saved.state.options as Record<string, unknown> & { loop?: L };
  check?.(prev, dir);
  const loop = prev.loop ? { ...prev.loop, steps: o.loop.steps, evalEvery: o.loop.evalEvery, sampleEvery: o.loop.sampleEvery, checkpointEvery: o.loop.checkpointEvery } : o.loop;
  if (saved.state.step >= loop.steps) throw new Err(`--resume: the checkpoint is at step ${saved.state.step}, already at --steps ${loop.steps}; raise --steps to train further`);
  return { run, loop, saved, prev };
}

/** The training loop's resume point in a loaded checkpoint. */
export function resumePoint(saved: LoadedCheckpoint): ResumeFrom {
  return { step: saved.state.step, tokens: saved.state.tokens, optimizer: saved.optimizer, rng: saved.state.rng, data: saved.state.data, file: join(saved.dir, "optimizer.safetensors") };
}

/** The model config the options describe (vocabulary from the data). Throws naming the flag. */
export function modelConfigFor(m: ModelShapeOptions, vocabSize: number, seqLen: number): ModelConfig {
  const context = m.context ?? seqLen;
  if (seqLen > context) throw new PretrainSettingsError(`--seq-len ${seqLen} is longer than the model's context (--context ${context})`);
  try {
    return configFromPreset(m.preset, {
      vocabSize, contextLength: context, nLayer: m.layers, nHead: m.heads, nEmbd: m.width, ffnHidden: m.ffn,
      nKvHead: m.kvHeads,
      qkNorm: m.qkNorm, tiedEmbeddings: m.tiedEmbeddings, ropeTheta: m.ropeTheta,
    });
  } catch (err) {
    if (err instanceof ModelConfigError) {
      throw new PretrainSettingsError(`model settings (--preset ${m.preset}, --layers/--heads/--kv-heads/--width): ${err.message.replace(/^preset \S+: /, "")}`);
    }
    throw err;
  }
}

/** Checks the loop settings; throws `Err` (the calling stage's settings error) naming the flag. */
export function checkLoopOptions(o: Omit<LoopOptions, "peakFlops">, Err: new (message: string) => SettingsError = PretrainSettingsError): void {
  const int = (flag: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) throw new Err(`--${flag} must be an integer ≥ ${min}, got ${v}`);
  };
  int("steps", o.steps, 1); int("batch-size", o.batchSize, 1); int("seq-len", o.seqLen, 1); int("grad-accum", o.gradAccum, 1);
  int("warmup", o.warmup, 0); int("eval-every", o.evalEvery, 0); int("sample-every", o.sampleEvery, 0); int("checkpoint-every", o.checkpointEvery, 0);
  if (!(o.optimizer.lr > 0)) throw new Err(`--lr must be positive, got ${o.optimizer.lr}`);
  if (!(o.minLrRatio >= 0 && o.minLrRatio <= 1)) throw new Err(`--min-lr must be between 0 and --lr`);
  if (o.schedule !== "cosine" && o.schedule !== "wsd") throw new Err(`--schedule must be cosine or wsd, got ${o.schedule}`);
  if (o.optimizer.kind !== "adamw" && o.optimizer.kind !== "muon") throw new Err(`--optimizer must be adamw or muon, got ${o.optimizer.kind}`);
  if (!(o.clip >= 0)) throw new Err(`--clip must be ≥ 0 (0 = off), got ${o.clip}`);
}

/**
 * Measured machine peak FLOP/s (one core's best FMA rate × threads), else the nominal figure.
 * precision bf16: the peak of the unit gemmBf16 runs on (its register-only loop), when the
 * CPU has one; without (the float32 fallback) the float32 FMA peak, which bounds that path.
 */
export function machinePeakFlops(precision: Precision = "fp32"): { flops: number; measured: boolean; what: string } {
  try {
    const a = loadNative() as ReturnType<typeof loadNative> & { gemmPeakGflops?: () => number };
    if (precision === "bf16" && typeof a.gemmBf16PeakGflops === "function" && a.gemmBf16PeakGflops() > 0) {
      let best = 0;
      for (let i = 0; i < 3; i++) best = Math.max(best, a.gemmBf16PeakGflops());
      return { flops: best * a.threads() * 1e9, measured: true, what: `measured bf16 peak (${a.gemmBf16Info().split(" ")[1]}) × threads` };
    }
    if (typeof a.gemmPeakGflops === "function") {
      // Best of 5 short FMA runs (~40 ms each): other processes only ever make it look lower.
      let best = 0;
      for (let i = 0; i < 5; i++) best = Math.max(best, a.gemmPeakGflops());
      return { flops: best * a.threads() * 1e9, measured: true, what: "measured FMA peak × threads" };
    }
  } catch {
    // no native addon: fall through
  }
  return { flops: NOMINAL_PEAK_GFLOPS * 1e9, measured: false, what: "nominal" };
}

/**
 * How a run's GEMMs compute, for its start-up line: "float32", or for bf16 the unit (AMX tiles,
 * VDPBF16PS, or the float32 fallback, which is slower than fp32 and only reproduces bf16 results).
 */
export function describePrecision(precision: Precision, backend: Backend, config: ModelConfig): string {
  if (precision === "fp32") return "float32";
  let unit = "";
  try {
    if (backend.name.startsWith("native")) unit = loadNative().gemmBf16Info().split(" ")[1];
  } catch {
    // no addon: the backend's own gemmBf16
  }
  const where = unit === "AMX" ? "on AMX tiles" : unit === "VDPBF16PS" ? "on AVX512_BF16 (VDPBF16PS)"
    : unit === "fallback" ? "on the float32 fallback: this CPU has no bf16 unit, so this is slower than --precision fp32" : `on ${backend.name}`;
  const D = headDimOf(config);
  const attention = bf16Attention(backend, D) ? "bf16 attention matmuls on AMX tiles"
    : backend.attentionForwardBf16 ? `float32 attention (its bf16 kernel needs a head size that is a multiple of 32, this model's is ${D})` : "float32 attention";
  return `bf16 GEMM operands ${where}; ${attention}; float32 weights, optimizer, norms, softmax and loss`;
}

export interface PretrainResult extends LoopResult {
  runDir: string;
  config: ModelConfig;
  /** Per-step losses of this process's steps, in order (the resume test compares them). */
  losses: number[];
}

export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  checkLoopOptions(o.loop);
  const { run, loop, saved } = startRun(o);
  const data = openData(o.data, o.valFraction, loop.seed, saved?.state.tokenizer ?? null, o.evalBatches * loop.batchSize, loop.seqLen);
  const config = saved ? saved.config : modelConfigFor(o.model, data.vocabSize, loop.seqLen);
  if (loop.seqLen > config.contextLength) throw new PretrainSettingsError(`--seq-len ${loop.seqLen} is longer than the model's context ${config.contextLength}`);
  if (config.vocabSize < data.vocabSize) throw new PretrainSettingsError(`the checkpoint's vocabulary (${config.vocabSize}) is smaller than the data's (${data.vocabSize})`);
  const memory = estimateTrainingMemory(config, loop.batchSize, loop.seqLen, { recompute: o.recompute, paramsLoaded: Boolean(saved) });
  const tooBig = memoryRefusal(memory, o.maxMemory?.bytes, o.maxMemory?.typed, Boolean(o.recompute));
  if (tooBig) throw new PretrainSettingsError(tooBig);
  const backend = o.backend ?? nativeBackend();
  const { precision, note: precisionNote } = resolvePrecision(o.precision, saved?.state ?? null);
  const model = createGPT(config, backend, { ...(saved ? { params: saved.params } : { seed: loop.seed }), recompute: o.recompute, precision });
  const resume = saved ? resumePoint(saved) : undefined;
  run.replace();
  mkdirSync(o.out, { recursive: true });
  const peak = machinePeakFlops(precision);
  const rep = createReporter({ write: o.write, tty: o.tty, every: o.logEvery, jsonl: join(o.out, "metrics.jsonl") });
  rep.note(`data: ${data.describe}`);
  rep.run({ kind: "pretrain", params: parameterCount(config), backend: backend.name, precision, ...(saved ? { resumedAt: saved.state.step } : {}) });
  rep.note(`model: ${config.nLayer} layers, ${config.nHead} heads (${config.nKvHead} kv), width ${config.nEmbd}, MLP ${config.ffnHidden}, ` +
    `context ${config.contextLength}, ${(parameterCount(config) / 1e6).toFixed(2)}M parameters; backend ${backend.name}`);
  rep.note(`training: ${loop.steps} steps of ${loop.gradAccum}×${loop.batchSize}×${loop.seqLen} tokens, ${loop.optimizer.kind}, lr ${loop.optimizer.lr}` +
    `${loop.optimizer.kind === "muon" ? ` (muon ${loop.optimizer.muonLr})` : ""}, ${loop.schedule} schedule; ` +
    `${describePrecision(precision, backend, config)}; MFU against ` +
    `${(peak.flops / 1e9).toFixed(0)} GFLOP/s (${peak.what})` +
    (saved ? `; resuming from ${saved.dir} at step ${saved.state.step}` : ""));
  const backendNote = saved && resumeBackendNote(saved.state, backend.name);
  if (backendNote) rep.note(`note: ${backendNote}`);
  if (precisionNote) rep.note(`note: ${precisionNote}`);
  rep.note(`memory: estimated peak ${describeEstimate(memory)}${o.recompute ? "; --recompute" : ""}`);

  const bytes = tokenByteLengths(data.tokenizer);
  const tokenizerFiles = tokenizerFilesOf(data.ref);
  const losses: number[] = [];
  const options = { loop, model: o.model, data: o.data.map((p) => resolve(p)), valFraction: o.valFraction };
  const result = await trainLoop(model, data.train, { ...loop, peakFlops: peak.flops, precision }, {
    evaluate: data.val && o.evalBatches > 0
      ? (m): EvalResult => evaluate(m, data.val!, o.evalBatches, loop.batchSize, loop.seqLen, bytes)
      : undefined,
    sample: o.sampleTokens > 0 && o.sampler
      ? (m, rng): string => data.tokenizer.decode(o.sampler!(m, data.tokenizer, [samplePrompt(data.tokenizer)], o.sampleTokens, rng.int(2 ** 31)))
      : undefined,
    onStep: (m) => {
      losses.push(m.loss);
      rep.step(m, loop.steps);
    },
    onEval: (s, r) => {
      rep.eval(s, r);
      o.onEval?.(s, r.loss, r.bpb);
    },
    onSample: (s, t) => rep.sample(s, t),
    save: (s) => {
      const state: CheckpointState = {
        format: 1, step: s.step, tokens: s.tokens, data: s.data, rng: s.rng, tokenizer: data.ref, options, backend: backend.name, precision,
      };
      const dir = saveCheckpoint(o.out, model.params, s.optimizer.stateTensors(), state, o.keep, tokenizerFiles);
      rep.note(`checkpoint: ${dir}`);
    },
    signal: o.signal,
  }, resume);
  rep.done();
  if (result.status === "stopped") rep.note(`stopped at step ${result.step}; continue with --resume`);
  return { ...result, runDir: o.out, config, losses };
}

/** A run's tokenizer files (tokenizer.json, tokenizer_config.json), copied into its checkpoints. */
export function tokenizerFilesOf(ref: TokenizerRef): Record<string, Uint8Array> {
  if (ref.kind === "char") {
    // A character-level run gets a tokenizer.json too, so its checkpoints are model folders.
    const utf8 = (o: object): Uint8Array => Buffer.from(JSON.stringify(o, null, 1) + "\n", "utf8");
    return { "tokenizer.json": utf8(charTokenizerJson({ chars: ref.chars })), "tokenizer_config.json": utf8(charTokenizerConfig()) };
  }
  const dir = statSync(ref.path).isDirectory() ? ref.path : dirname(ref.path);
  const out: Record<string, Uint8Array> = {};
  const main = statSync(ref.path).isDirectory() ? join(dir, "tokenizer.json") : ref.path;
  if (main.endsWith(".json")) out["tokenizer.json"] = readFileSync(main);
  if (existsSync(join(dir, "tokenizer_config.json"))) out["tokenizer_config.json"] = readFileSync(join(dir, "tokenizer_config.json"));
  // Hugging Face folders saved by newer transformers keep the chat template in a file of its own.
  if (existsSync(join(dir, "chat_template.jinja"))) out["chat_template.jinja"] = readFileSync(join(dir, "chat_template.jinja"));
  return out;
}

/** The token a sample starts from: <|endoftext|> when the tokenizer has it, else a newline. */
function samplePrompt(tok: Tokenizer): number {
  const eot = tok.special.get("<|endoftext|>");
  if (eot !== undefined) return eot;
  try {
    return tok.encode("\n")[0] ?? 0;
  } catch {
    return 0;
  }
}

/** The char tokenizer a checkpoint's state names (for loading char-level runs elsewhere). */
export function tokenizerFromRef(ref: TokenizerRef): Tokenizer {
  return ref.kind === "char" ? charTokenizer(ref.chars) : loadTokenizer(ref.path);
}

/**
 * Direct Preference Optimization, end to end: load the starting model (an SFT checkpoint, run
 * or model folder), read preference pairs, split them by prompt into train and held-out, render
 * them with the one chat template (loss on the reply tokens only), score every reply once under
 * the starting model — the frozen reference — and cache those log-probs in the run folder, then
 * train with the shared loop (src/train/loop.ts: checkpoints, --resume, Ctrl-C, schedules,
 * progress, metrics.jsonl) on the DPO objective (dpo-loss.ts). Only the policy is in memory
 * while training. Held-out pairs are scored before and after (TRL's metric names); at the end,
 * with a sampler, the KL to the reference is estimated on held-out prompts.
 * `mynah dpo` parses flags into DpoOptions and calls dpo(); nothing here exits.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { nativeBackend } from "../core/native.ts";
import { renderChat } from "../data/chat-template.ts";
import type { ChatMessage } from "../data/chat.ts";
import { loadPreferences, openPairSource, pairBatch, renderPair, type KeyedPair, type PairBatch, type RenderedPair } from "../data/preferences.ts";
import type { Batch } from "../data/types.ts";
import { parameterCount, type ModelConfig } from "../model/config.ts";
import { createGPT, type GPT, type Precision } from "../model/gpt.ts";
import { loadModelFolder } from "../model/weights.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { latestCheckpoint, loadCheckpoint, resolvePrecision, saveCheckpoint, type CheckpointState } from "./checkpoint.ts";
import { checkDpoLoss, dpoLoss, type DpoLossKind, type DpoLossOptions, type DpoMetrics } from "./dpo-loss.ts";
import { trainLoop, type LoopResult, type MicroStep, type Objective } from "./loop.ts";
import { checkLoopOptions, describePrecision, machinePeakFlops, resumePoint, startRun, tokenizerFilesOf } from "./pretrain.ts";
import { SettingsError } from "../core/errors.ts";
import { createReporter } from "./report.ts";
import { checkChatTokenizer, fineTuneStart, type RunOptions } from "./sft.ts";

/**
 * Samples one reply per prompt (ids after the generation prompt, the stop token included when
 * it stopped) at temperature 1, for the KL estimate. The CLI passes infer's batched engine.
 */
export type ReplySampler = (model: GPT, tok: Tokenizer, prompts: number[][], o: { maxNewTokens: number; seed: number }) => number[][];

/** A bad `mynah dpo` setting (exit status 2), named as the user typed it. */
export class DpoSettingsError extends SettingsError {
  constructor(message: string) {
    super(message);
    this.name = "DpoSettingsError";
  }
}

/** loop.batchSize = pairs per micro-batch (2 rows each). */
export interface DpoOptions extends RunOptions {
  /** A checkpoint folder, a run folder (its latest checkpoint), or a model folder (with `tokenizer`). */
  from: string;
  /** Preference files, folders or globs. */
  data: string[];
  tokenizer?: string;
  loss: DpoLossKind;
  beta: number;
  labelSmoothing: number;
  /** Weight of the chosen replies' NLL added to the loss (TRL's rpo_alpha; 0 = plain DPO). */
  rpoAlpha?: number;
  /** Mean instead of summed reply log-probs ("auto": on for ipo, as TRL does). */
  lengthNorm: boolean | "auto";
  /** Fraction of prompts held out. */
  valFraction: number;
  /** Held-out pairs scored per evaluation (the first ones; 0 = all). */
  evalPairs: number;
  /** Held-out prompts for the KL estimate (0 = none; needs `sampler`). */
  klPrompts: number;
  klMaxTokens: number;
  sampler?: ReplySampler;
}

/** Held-out figures: the DPO loss and TRL's metrics over held-out pairs. */
export interface DpoEval extends DpoMetrics {
  loss: number;
  pairs: number;
}

export interface DpoResult extends LoopResult {
  runDir: string;
  config: ModelConfig;
  before: DpoEval;
  after: DpoEval;
  /** Estimated KL(policy ‖ reference) per reply on held-out prompts (nats); null without a sampler. */
  kl: number | null;
  losses: number[];
  pairs: { train: number; val: number; skipped: number; truncated: number; dropped: number };
}

/** Reference log-probs: per pair [Σ chosen, tokens chosen, Σ rejected, tokens rejected]. */
interface RefCache {
  format: 1;
  from: string;
  seqLen: number;
  /** The GEMM precision they were scored in (absent: fp32); the policy is scored in the same. */
  precision?: Precision;
  pairs: Record<string, [number, number, number, number]>;
}

export const REFERENCE_FILE = "reference-logps.json";

/**
 * Summed log-probs of the reply tokens of every sequence in a pair batch (rows 0..P−1 chosen,
 * P..2P−1 rejected). `losses` receives each position's −log p.
 */
function rowSums(batch: PairBatch, losses: Float32Array): { sums: Float64Array; counts: Int32Array } {
  const R = 2 * batch.pairs, T = batch.T;
  const sums = new Float64Array(R), counts = new Int32Array(R);
  for (let r = 0; r < R; r++) {
    for (let t = 0; t < T; t++) {
      const i = r * T + t;
      if (batch.targets[i] < 0) continue;
      sums[r] -= losses[i];
      counts[r]++;
    }
  }
  return { sums, counts };
}

/** Log-probs of both replies of every pair under `model`, P pairs per forward, no gradients. */
export function scorePairs(model: GPT, examples: readonly RenderedPair[], P: number): { chosen: Float64Array; rejected: Float64Array; nChosen: Int32Array; nRejected: Int32Array } {
  const n = examples.length;
  const out = { chosen: new Float64Array(n), rejected: new Float64Array(n), nChosen: new Int32Array(n), nRejected: new Int32Array(n) };
  for (let s = 0; s < n; s += P) {
    const idx = Array.from({ length: Math.min(P, n - s) }, (_, i) => s + i);
    const b = pairBatch(examples, idx, 0);
    const losses = new Float32Array(b.inputs.length);
    model.forward(b.inputs, b.targets, 2 * b.pairs, b.T, { grad: false, losses });
    const { sums, counts } = rowSums(b, losses);
    idx.forEach((e, i) => {
      out.chosen[e] = sums[i];
      out.nChosen[e] = counts[i];
      out.rejected[e] = sums[b.pairs + i];
      out.nRejected[e] = counts[b.pairs + i];
    });
  }
  return out;
}

function readRefCache(path: string, from: string, seqLen: number, precision: Precision): RefCache | null {
  if (!existsSync(path)) return null;
  let c: RefCache;
  try {
    c = JSON.parse(readFileSync(path, "utf8")) as RefCache;
  } catch (err) {
    throw new DpoSettingsError(`${path}: unreadable reference log-probs (${(err as Error).message}); delete it to recompute`);
  }
  if (c.format !== 1 || c.from !== from || c.seqLen !== seqLen || (c.precision ?? "fp32") !== precision) return null;
  return c;
}

/**
 * Held-out DPO loss and metrics: the policy's log-probs of held-out replies against the
 * cached reference ones.
 */
function evalPairs(model: GPT, examples: readonly RenderedPair[], ref: { c: Float64Array; r: Float64Array }, lossOpts: DpoLossOptions, norm: boolean, P: number): DpoEval {
  const s = scorePairs(model, examples, P);
  const n = examples.length;
  const pc = new Float64Array(n), pr = new Float64Array(n), rc = new Float64Array(n), rr = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const dc = norm ? s.nChosen[i] : 1, dr = norm ? s.nRejected[i] : 1;
    pc[i] = s.chosen[i] / dc;
    pr[i] = s.rejected[i] / dr;
    rc[i] = ref.c[i] / dc;
    rr[i] = ref.r[i] / dr;
  }
  const r = dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: rc, refRejected: rr }, lossOpts);
  return { loss: r.loss, pairs: n, ...r.metrics };
}

/**
 * KL(π ‖ π_ref) estimated on prompts: one reply sampled from the policy per prompt, then
 * mean over prompts of log π(y|x) − log π_ref(y|x) (the sequence-level k1 estimator, unbiased).
 */
export function estimateKl(policy: GPT, reference: GPT, tok: Tokenizer, prompts: ChatMessage[][], sampler: ReplySampler, o: { maxNewTokens: number; seed: number; T: number }): number {
  // Prompt (its last tokens) and reply together fit the T + 1 tokens the pairs were scored in.
  const maxNew = Math.max(1, Math.min(o.maxNewTokens, Math.floor(o.T / 2)));
  const pids = prompts.map((p) => {
    const ids = renderChat(tok, p, { addGenerationPrompt: true }).ids;
    return ids.slice(Math.max(0, ids.length - (o.T - maxNew)));
  });
  const gens = sampler(policy, tok, pids, { maxNewTokens: maxNew, seed: o.seed });
  // Each sample as a "pair" whose both sides are the sampled reply (only the chosen half is read).
  const ex: RenderedPair[] = gens.map((reply, i) => {
    const ids = Int32Array.from([...pids[i], ...reply]);
    const mask = new Uint8Array(ids.length);
    mask.fill(1, pids[i].length);
    const seq = { ids, mask, tokens: reply.length };
    return { chosen: seq, rejected: seq, truncated: false };
  }).filter((e) => e.chosen.tokens > 0);
  if (ex.length === 0) return 0;
  const lp = scorePairs(policy, ex, 8).chosen, lr = scorePairs(reference, ex, 8).chosen;
  let kl = 0;
  for (let i = 0; i < ex.length; i++) kl += lp[i] - lr[i];
  return kl / ex.length;
}

export async function dpo(o: DpoOptions): Promise<DpoResult> {
  checkLoopOptions({ ...o.loop, seqLen: o.loop.seqLen || 1 }, DpoSettingsError);
  const begun = startRun(o, DpoSettingsError, (prev, dir) => {
    if (prev.kind !== "dpo") throw new DpoSettingsError(`--resume: ${dir} is not a DPO checkpoint`);
  });
  const { run, saved } = begun;
  let loop = begun.loop;
  const lossOpts: DpoLossOptions = { kind: o.loss, beta: o.beta, labelSmoothing: o.labelSmoothing };
  const bad = checkDpoLoss(lossOpts);
  if (bad) throw new DpoSettingsError(bad);
  if (!(o.valFraction > 0 && o.valFraction < 1)) throw new DpoSettingsError(`--val-fraction must be in (0, 1), got ${o.valFraction}`);
  if (o.rpoAlpha !== undefined && !(o.rpoAlpha >= 0 && Number.isFinite(o.rpoAlpha))) throw new DpoSettingsError(`--rpo-alpha must be a number ≥ 0, got ${o.rpoAlpha}`);
  if (o.klPrompts < 0 || !Number.isInteger(o.klPrompts)) throw new DpoSettingsError(`--kl-prompts must be a whole number ≥ 0, got ${o.klPrompts}`);
  const norm = o.lengthNorm === "auto" ? o.loss === "ipo" : o.lengthNorm;
  const prev = begun.prev as { before?: DpoEval; from?: string };
  const savedBefore = prev.before ?? null;
  // The reference is the starting checkpoint itself (not a run folder's "latest", which may move).
  const from = prev.from ?? (existsSync(o.from) ? resolve(startDir(o.from)) : resolve(o.from));
  const start = fineTuneStart(saved, o.from, o.tokenizer);
  const pad = checkChatTokenizer(start.tokenizer);
  if (!loop.seqLen) loop = { ...loop, seqLen: start.config.contextLength };
  const T = loop.seqLen;
  if (T > start.config.contextLength) throw new DpoSettingsError(`--seq-len ${T} is longer than the model's context ${start.config.contextLength}`);

  const prefs = await loadPreferences(o.data, { valFraction: o.valFraction, seed: loop.seed, skipBad: o.skipBad, onSkip: o.onSkip });
  let truncated = 0, dropped = 0;
  const render = (pairs: KeyedPair[]): { ex: RenderedPair[]; keys: string[]; pairs: KeyedPair[] } => {
    const out = { ex: [] as RenderedPair[], keys: [] as string[], pairs: [] as KeyedPair[] };
    for (const p of pairs) {
      const r = renderPair(start.tokenizer, p, T);
      if (r.chosen.tokens === 0 || r.rejected.tokens === 0) {
        dropped++;
        continue;
      }
      if (r.truncated) truncated++;
      out.ex.push(r);
      out.keys.push(p.hash);
      out.pairs.push(p);
    }
    return out;
  };
  const train = render(prefs.train);
  const valAll = render(prefs.val);
  const nVal = o.evalPairs > 0 ? Math.min(o.evalPairs, valAll.ex.length) : valAll.ex.length;
  const val = { ex: valAll.ex.slice(0, nVal), keys: valAll.keys.slice(0, nVal), pairs: valAll.pairs.slice(0, nVal) };
  if (train.ex.length === 0) throw new DpoSettingsError(`--data: no training pairs (${prefs.train.length} read${dropped ? `, ${dropped} with no reply token left at --seq-len ${T}` : ""})`);
  if (val.ex.length === 0) throw new DpoSettingsError(`--data: no held-out pairs; raise --val-fraction (now ${o.valFraction}) or add pairs (${train.ex.length} for training)`);

  const backend = o.backend ?? nativeBackend();
  run.replace();
  mkdirSync(o.out, { recursive: true });
  const rep = createReporter({
    write: o.write, tty: o.tty, every: o.logEvery, jsonl: join(o.out, "metrics.jsonl"),
    show: { "rewards/accuracies": "acc", "rewards/margins": "margin" },
  });
  const c = start.config;
  rep.note(`model: ${start.describe}: ${c.nLayer} layers, width ${c.nEmbd}, context ${c.contextLength}, ${(parameterCount(c) / 1e6).toFixed(2)}M parameters; backend ${backend.name}`);
  rep.note(`data: ${train.ex.length} training pairs, ${val.ex.length} held out` + (truncated ? `, ${truncated} cut to ${T + 1} tokens` : "") +
    (dropped ? `, ${dropped} with no reply token left (skipped)` : "") + (prefs.skipped ? `, ${prefs.skipped} bad records skipped` : "") +
    `; loss ${o.loss}, beta ${o.beta}` + (o.labelSmoothing ? `, label smoothing ${o.labelSmoothing}` : "") + (o.rpoAlpha ? `, rpo alpha ${o.rpoAlpha}` : "") + (norm ? ", length-normalised log-probs" : ""));

  const { precision, note: precisionNote } = resolvePrecision(o.precision, saved?.state ?? null);
  if (precisionNote) rep.note(`note: ${precisionNote}`);
  if (precision === "bf16") rep.note(`precision: ${describePrecision(precision, backend, c)}; reference log-probs scored the same way`);
  const model = createGPT(c, backend, { params: start.params, precision });
  // Reference log-probs: cached by pair hash; missing ones scored by the starting model.
  const refPath = join(o.out, REFERENCE_FILE);
  const cache: RefCache = readRefCache(refPath, from, T, precision) ?? { format: 1, from, seqLen: T, precision, pairs: {} };
  const all = { ex: [...train.ex, ...val.ex], keys: [...train.keys, ...val.keys] };
  const missing = all.keys.map((k, i) => (cache.pairs[k] ? -1 : i)).filter((i) => i >= 0);
  if (missing.length > 0) {
    // On --resume the model in hand is the policy: the reference is the starting model on disk.
    const refModel = saved ? createGPT(c, backend, { params: loadStartParams(from), precision }) : model;
    const t0 = performance.now();
    const s = scorePairs(refModel, missing.map((i) => all.ex[i]), Math.max(1, loop.batchSize));
    missing.forEach((e, i) => (cache.pairs[all.keys[e]] = [s.chosen[i], s.nChosen[i], s.rejected[i], s.nRejected[i]]));
    writeAtomic(refPath, JSON.stringify(cache));
    rep.note(`reference log-probs: ${missing.length} pairs scored in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${refPath}`);
  } else rep.note(`reference log-probs: all ${all.keys.length} pairs from ${refPath}`);
  const refOf = (keys: string[]): { c: Float64Array; r: Float64Array; nc: Int32Array; nr: Int32Array } => ({
    c: Float64Array.from(keys, (k) => cache.pairs[k][0]), nc: Int32Array.from(keys, (k) => cache.pairs[k][1]),
    r: Float64Array.from(keys, (k) => cache.pairs[k][2]), nr: Int32Array.from(keys, (k) => cache.pairs[k][3]),
  });
  const trainRef = refOf(train.keys), valRef = refOf(val.keys);

  const P = Math.max(1, loop.batchSize);
  const score = (): DpoEval => evalPairs(model, val.ex, valRef, lossOpts, norm, P);
  const before = savedBefore ?? score();
  const fmt = (e: DpoEval): string => `loss ${e.loss.toFixed(4)}, reward accuracy ${(100 * e["rewards/accuracies"]).toFixed(1)}%, margin ${e["rewards/margins"].toFixed(3)}`;
  rep.note(`held-out pairs before: ${fmt(before)} (${before.pairs} pairs)`);

  const objective = dpoObjective(trainRef, lossOpts, norm, o.rpoAlpha ?? 0);
  const source = openPairSource(train.ex, { seed: loop.seed, pad });
  const resume = saved ? resumePoint(saved) : undefined;
  const tokenizerFiles = tokenizerFilesOf(start.ref);
  const options = {
    kind: "dpo", loop, from, data: o.data.map((p) => resolve(p)), valFraction: o.valFraction,
    loss: o.loss, beta: o.beta, labelSmoothing: o.labelSmoothing, rpoAlpha: o.rpoAlpha ?? 0, lengthNorm: norm, before,
  };
  const losses: number[] = [];
  let lastEval: DpoEval | null = null;
  const result = await trainLoop(model, source, { ...loop, peakFlops: machinePeakFlops(precision).flops, precision }, {
    objective,
    evaluate: () => {
      lastEval = score();
      const { loss, pairs: _n, ...metrics } = lastEval;
      return { loss, bpb: null, tokens: lastEval.pairs, extra: metrics };
    },
    onStep: (m) => {
      losses.push(m.loss);
      rep.step(m, loop.steps);
    },
    onEval: (s, r) => rep.eval(s, r),
    save: (s) => {
      const state: CheckpointState = { format: 1, step: s.step, tokens: s.tokens, data: s.data, rng: s.rng, tokenizer: start.ref, options, precision };
      rep.note(`checkpoint: ${saveCheckpoint(o.out, model.params, s.optimizer.stateTensors(), state, o.keep, tokenizerFiles)}`);
    },
    signal: o.signal,
  }, resume);
  const after: DpoEval = lastEval && result.step === loop.steps ? lastEval : score();
  rep.done();
  rep.note(`held-out pairs after:  ${fmt(after)}`);
  let kl: number | null = null;
  if (o.sampler && o.klPrompts > 0 && result.status === "done") {
    const reference = createGPT(c, backend, { params: loadStartParams(from), precision });
    const prompts = val.pairs.slice(0, o.klPrompts).map((p) => p.prompt);
    kl = estimateKl(model, reference, start.tokenizer, prompts, o.sampler, { maxNewTokens: o.klMaxTokens, seed: loop.seed, T });
    rep.note(`KL(policy ‖ reference) on ${prompts.length} held-out prompts: ${kl.toFixed(4)} nats per reply (one sample each)`);
  }
  const summary = { type: "summary", before, after, kl, pairs: { train: train.ex.length, val: val.ex.length } };
  writeAtomic(join(o.out, "dpo-summary.json"), JSON.stringify(summary, null, 2) + "\n");
  if (result.status === "stopped") rep.note(`stopped at step ${result.step}; continue with --resume`);
  return {
    ...result, runDir: o.out, config: c, before, after, kl, losses,
    pairs: { train: train.ex.length, val: val.ex.length, skipped: prefs.skipped, truncated, dropped },
  };
}

/**
 * The DPO objective for the training loop: policy log-probs of both replies of each pair in one
 * forward, the DPO loss against the cached reference (ref.c/r: summed log-probs of the pairs,
 * indexed by PairBatch.index; nc/nr their token counts), and each reply token's ∂L/∂(−log p)
 * as the row scale of the backward. With rpoAlpha > 0 (TRL's rpo_alpha, "RPO"), α times the
 * mean negative log-likelihood of the chosen replies' tokens is added, which keeps the chosen
 * replies likely: plain DPO can lower both replies' log-probs while widening their margin.
 */
export function dpoObjective(ref: { c: Float64Array; r: Float64Array; nc: Int32Array; nr: Int32Array }, lossOpts: DpoLossOptions, norm: boolean, rpoAlpha = 0): Objective {
  const trainRef = ref;
  return (m: GPT, b: Batch): MicroStep => {
    const batch = b as PairBatch;
    const R = 2 * batch.pairs, Tb = batch.T, N = R * Tb;
    const losses = new Float32Array(N);
    m.forward(batch.inputs, batch.targets, R, Tb, { losses });
    const { sums, counts } = rowSums(batch, losses);
    const Pb = batch.pairs;
    const pc = new Float64Array(Pb), pr = new Float64Array(Pb), rc = new Float64Array(Pb), rr = new Float64Array(Pb);
    const dc = new Float64Array(R);
    for (let i = 0; i < Pb; i++) {
      const e = batch.index[i];
      dc[i] = norm ? counts[i] : 1;
      dc[Pb + i] = norm ? counts[Pb + i] : 1;
      pc[i] = sums[i] / dc[i];
      pr[i] = sums[Pb + i] / dc[Pb + i];
      rc[i] = trainRef.c[e] / (norm ? trainRef.nc[e] : 1);
      rr[i] = trainRef.r[e] / (norm ? trainRef.nr[e] : 1);
    }
    const r = dpoLoss({ policyChosen: pc, policyRejected: pr, refChosen: rc, refRejected: rr }, lossOpts);
    // The forward's gradient rows are ∂(−log p_t)/∂logits / count; logp_row = −Σ_t (−log p_t) / d_row.
    let count = 0;
    for (let i = 0; i < N; i++) if (batch.targets[i] >= 0) count++;
    // RPO: α · Σ_chosen (−log p_t) / nChosenTokens; each chosen token's weight is α / nChosenTokens.
    let nChosen = 0, nll = 0;
    for (let i = 0; i < Pb; i++) {
      nChosen += counts[i];
      nll -= sums[i];
    }
    const rpo = rpoAlpha > 0 && nChosen > 0 ? rpoAlpha / nChosen : 0;
    const rowScale = new Float32Array(N);
    for (let row = 0; row < R; row++) {
      const g = row < Pb ? r.dChosen[row] : r.dRejected[row - Pb];
      const w = count * (-g / dc[row] + (row < Pb ? rpo : 0));
      for (let t = 0; t < Tb; t++) if (batch.targets[row * Tb + t] >= 0) rowScale[row * Tb + t] = w;
    }
    m.backward(rowScale);
    const nllMean = nChosen > 0 ? nll / nChosen : 0;
    return { loss: r.loss + rpoAlpha * nllMean, tokens: N, metrics: { ...r.metrics, ...(rpoAlpha > 0 ? { nll_loss: nllMean } : {}) } };
  };
}

/** A run folder's latest checkpoint; a checkpoint or model folder itself. */
function startDir(from: string): string {
  return !existsSync(join(from, "state.json")) && existsSync(join(from, "latest")) ? latestCheckpoint(from) ?? from : from;
}

/** The starting model's weights again (the reference, when the policy has moved on). */
function loadStartParams(from: string): ReturnType<typeof loadModelFolder>["params"] {
  const dir = startDir(from);
  return existsSync(join(dir, "state.json")) ? loadCheckpoint(dir).params : loadModelFolder(dir).params;
}

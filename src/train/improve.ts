/**
 * The feedback loop's training half: from an exported feedback folder (what `mynah feedback
 * export` writes: conversations.jsonl with corrected replies, preferences.jsonl with pairs)
 * to a better model. SFT on the corrected conversations (if there are enough), then DPO on the
 * pairs (if there are enough) from the SFT result, then the starting and the final model are
 * compared on held-out pairs (how often each prefers the chosen reply) and held-out
 * conversations (assistant-token loss), with a few greedy replies side by side.
 *
 * Held-out pairs are split by prompt, and corrected conversations that begin with a held-out
 * prompt are kept out of SFT too, so the comparison is on prompts neither stage trained on.
 * `mynah improve` calls improve(); the --db step (exporting from the server's database) lives
 * in the CLI, above this layer.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import type { Backend } from "../core/backend.ts";
import { nativeBackend } from "../core/native.ts";
import { loadConversations, renderExamples } from "../data/chat-batches.ts";
import type { ChatMessage } from "../data/chat.ts";
import { loadPreferences, renderPair, type KeyedPair } from "../data/preferences.ts";
import { createGPT, type GPT } from "../model/gpt.ts";
import { loadModelFolder } from "../model/weights.ts";
import { latestCheckpoint, loadCheckpoint } from "./checkpoint.ts";
import { dpo, scorePairs, type DpoOptions, type DpoResult, type ReplySampler } from "./dpo.ts";
import type { DpoLossKind } from "./dpo-loss.ts";
import type { LoopOptions } from "./loop.ts";
import { DEFAULT_OPTIMIZER } from "./optim.ts";
import { claimRunFolder } from "./pretrain.ts";
import { SettingsError } from "../core/errors.ts";
import { chatLoss } from "./sft-eval.ts";
import { checkChatTokenizer, loadStart, sft, type SftResult } from "./sft.ts";

/** Greedy replies of a model (checkpoint or model folder) to prompts, for the side-by-side. */
export type GreedyReplies = (modelDir: string, prompts: ChatMessage[][]) => string[];

export interface ImproveOptions {
  /** Folder holding conversations.jsonl and/or preferences.jsonl. */
  feedback: string;
  /** The model the feedback was collected on (checkpoint, run or model folder). */
  from: string;
  tokenizer?: string;
  out: string;
  /** Replace the SFT and DPO runs already in `out` (else such a folder is refused). */
  force?: boolean;
  /** Fewer corrected conversations than this: no SFT stage. */
  minConversations: number;
  /** Fewer preference pairs than this: no DPO stage. */
  minPairs: number;
  /** Held out (by prompt) for the before/after comparison. */
  valFraction: number;
  sftSteps: number;
  sftLr: number;
  dpoSteps: number;
  dpoLr: number;
  batchSize: number;
  /** 0 = the model's context. */
  seqLen: number;
  loss: DpoLossKind;
  beta: number;
  rpoAlpha: number;
  seed: number;
  sampler?: ReplySampler;
  greedy?: GreedyReplies;
  backend?: Backend;
  write: (s: string) => void;
  tty: boolean;
  logEvery: number;
  signal?: AbortSignal;
}

export interface ModelScore {
  /** Held-out pairs where the model gives the chosen reply the higher mean per-token log-prob. */
  prefersChosen: number | null;
  /** Held-out assistant-token loss on corrected conversations. */
  conversationLoss: number | null;
}

export interface ImproveResult {
  status: "done" | "stopped";
  counts: { conversations: number; pairs: number };
  sft: SftResult | null;
  dpo: DpoResult | null;
  /** The improved model: the last stage's run folder. */
  model: string;
  before: ModelScore;
  after: ModelScore;
  heldOut: { pairs: number; conversations: number };
  examples: { prompt: string; before: string; after: string }[];
}

/** A bad `mynah improve` setting (exit status 2), named as the user typed it. */
export class ImproveSettingsError extends SettingsError {
  constructor(message: string) {
    super(message);
    this.name = "ImproveSettingsError";
  }
}

/** Thrown when the feedback is too thin to learn from; the message says how much there is. */
export class NotEnoughFeedbackError extends ImproveSettingsError {}

const key = (ms: readonly ChatMessage[]): string => JSON.stringify(ms.map((m) => [m.role, m.content]));

function modelAt(dir: string, backend: Backend): GPT {
  const d = !existsSync(join(dir, "state.json")) && existsSync(join(dir, "latest")) ? latestCheckpoint(dir)! : dir;
  const m = existsSync(join(d, "state.json")) ? loadCheckpoint(d) : loadModelFolder(d);
  return createGPT(m.config, backend, { params: m.params });
}

export async function improve(o: ImproveOptions): Promise<ImproveResult> {
  const convFile = join(o.feedback, "conversations.jsonl");
  const prefFile = join(o.feedback, "preferences.jsonl");
  if (!existsSync(convFile) && !existsSync(prefFile)) throw new ImproveSettingsError(`--feedback ${o.feedback}: neither conversations.jsonl nor preferences.jsonl is there (write them with \`mynah feedback export\`)`);
  if (!(o.valFraction > 0 && o.valFraction < 1)) throw new ImproveSettingsError(`--val-fraction must be in (0, 1), got ${o.valFraction}`);
  // One round per folder: the SFT and DPO runs of an earlier round are not mixed with this one's.
  for (const stage of ["sft", "dpo"]) claimRunFolder(join(o.out, stage), false, o.force ?? false, ImproveSettingsError);
  const start = loadStart(o.from, o.tokenizer);
  checkChatTokenizer(start.tokenizer);
  const tok = start.tokenizer;
  const T = o.seqLen || start.config.contextLength;

  const prefs = existsSync(prefFile) ? await loadPreferences([prefFile], { valFraction: o.valFraction, seed: o.seed }) : { train: [], val: [], skipped: 0 };
  const heldPrompts = new Set(prefs.val.map((p) => key(p.prompt)));
  const convs = existsSync(convFile) ? await loadConversations([convFile], { valFraction: o.valFraction, seed: o.seed }) : { train: [], val: [] };
  // A corrected conversation that begins with a held-out prompt would leak it into SFT.
  const leaks = (c: ChatMessage[]): boolean => c.some((_, i) => c[i].role === "user" && heldPrompts.has(key(c.slice(0, i + 1))));
  const convTrain = convs.train.filter((c) => !leaks(c));
  const nConv = convs.train.length + convs.val.length, nPairs = prefs.train.length + prefs.val.length;
  const doSft = convTrain.length >= o.minConversations && convs.val.length > 0;
  const doDpo = prefs.train.length >= o.minPairs && prefs.val.length > 0;
  if (!doSft && !doDpo) {
    throw new NotEnoughFeedbackError(`too little feedback to learn from in ${o.feedback}: ${nConv} conversations (${convTrain.length} for training; SFT needs ${o.minConversations}) ` +
      `and ${nPairs} preference pairs (${prefs.train.length} for training, ${prefs.val.length} held out; DPO needs ${o.minPairs} and at least one held out). ` +
      `Rate more replies (thumbs up/down on regenerated replies) or correct them in the chat, then export again.`);
  }
  mkdirSync(o.out, { recursive: true });
  const say = (s: string): void => o.write(s + "\n");
  say(`feedback: ${nConv} conversations (corrections applied), ${nPairs} preference pairs (${prefs.val.length} held out by prompt)`);
  say(`plan: ${doSft ? `SFT on ${convTrain.length} conversations (${o.sftSteps} steps)` : "no SFT (too few conversations)"}, ` +
    `${doDpo ? `DPO on ${prefs.train.length} pairs (${o.dpoSteps} steps)` : "no DPO (too few pairs)"}`);

  const loop = (steps: number, lr: number): Omit<LoopOptions, "peakFlops"> => ({
    steps, batchSize: o.batchSize, seqLen: o.seqLen, gradAccum: 1, schedule: "cosine", warmup: Math.min(10, Math.floor(steps / 10)), minLrRatio: 0.1,
    optimizer: { ...DEFAULT_OPTIMIZER, kind: "adamw", lr, weightDecay: 0 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: o.seed,
  });
  const common = { resume: false, force: o.force, keep: 1, backend: o.backend, write: o.write, tty: o.tty, logEvery: o.logEvery, signal: o.signal, tokenizer: o.tokenizer };
  let model = resolve(o.from);
  let sftResult: SftResult | null = null;
  let dpoResult: DpoResult | null = null;
  let status: "done" | "stopped" = "done";
  if (doSft) {
    // The conversations SFT may see: training ones without held-out prompts, and the held-out ones (split again identically).
    const data = join(o.out, "sft-conversations.jsonl");
    writeAtomic(data, [...convTrain, ...convs.val].map((messages) => JSON.stringify({ messages })).join("\n") + "\n");
    say(`— SFT on corrected conversations → ${join(o.out, "sft")}`);
    sftResult = await sft({ ...common, from: model, data: [data], valFraction: o.valFraction, evalConversations: 0, packing: "padded", loop: loop(o.sftSteps, o.sftLr), out: join(o.out, "sft") });
    model = join(o.out, "sft");
    status = sftResult.status;
  }
  if (doDpo && status === "done") {
    say(`— DPO on preference pairs → ${join(o.out, "dpo")}`);
    const d: DpoOptions = {
      ...common, from: model, data: [prefFile], loss: o.loss, beta: o.beta, labelSmoothing: 0, rpoAlpha: o.rpoAlpha, lengthNorm: "auto",
      valFraction: o.valFraction, evalPairs: 0, klPrompts: o.sampler ? Math.min(16, prefs.val.length) : 0, klMaxTokens: 48, sampler: o.sampler,
      loop: loop(o.dpoSteps, o.dpoLr), out: join(o.out, "dpo"),
    };
    dpoResult = await dpo(d);
    model = join(o.out, "dpo");
    status = dpoResult.status;
  }

  // Before / after on what no stage trained on.
  const backend = o.backend ?? nativeBackend();
  const heldPairs: KeyedPair[] = prefs.val;
  const pairEx = heldPairs.map((p) => renderPair(tok, p, T)).filter((r) => r.chosen.tokens > 0 && r.rejected.tokens > 0);
  const convEx = renderExamples(tok, convs.val, T).examples;
  const pad = tok.special.get("<|endoftext|>")!;
  const scoreOf = (m: GPT): ModelScore => {
    let prefersChosen: number | null = null;
    if (pairEx.length > 0) {
      const s = scorePairs(m, pairEx, Math.max(1, o.batchSize));
      let wins = 0;
      for (let i = 0; i < pairEx.length; i++) if (s.chosen[i] / s.nChosen[i] > s.rejected[i] / s.nRejected[i]) wins++;
      prefersChosen = wins / pairEx.length;
    }
    const conversationLoss = convEx.length > 0 ? chatLoss(m, convEx, { B: Math.max(1, o.batchSize), T, pad }).loss : null;
    return { prefersChosen, conversationLoss };
  };
  const before = scoreOf(modelAt(o.from, backend));
  const after = scoreOf(modelAt(model, backend));
  const prompts = heldPairs.slice(0, 3).map((p) => p.prompt);
  const examples: ImproveResult["examples"] = [];
  if (o.greedy && prompts.length > 0) {
    const b = o.greedy(o.from, prompts), a = o.greedy(model, prompts);
    prompts.forEach((p, i) => examples.push({ prompt: p.at(-1)!.content, before: b[i], after: a[i] }));
  }
  const pct = (x: number | null): string => (x === null ? "n/a" : `${(100 * x).toFixed(1)}%`);
  const num = (x: number | null): string => (x === null ? "n/a" : x.toFixed(4));
  say(`— what changed (held out: ${pairEx.length} pairs, ${convEx.length} conversations)`);
  say(`  prefers the chosen reply: ${pct(before.prefersChosen)} → ${pct(after.prefersChosen)}`);
  say(`  held-out conversation loss: ${num(before.conversationLoss)} → ${num(after.conversationLoss)}`);
  if (dpoResult) say(`  DPO reward accuracy (vs its reference): ${pct(dpoResult.before["rewards/accuracies"])} → ${pct(dpoResult.after["rewards/accuracies"])}` + (dpoResult.kl !== null ? `, KL ${dpoResult.kl.toFixed(3)}` : ""));
  for (const e of examples) say(`  "${e.prompt}"\n    before: ${JSON.stringify(e.before)}\n    after:  ${JSON.stringify(e.after)}`);
  say(`improved model: ${model}  (chat with: mynah chat --model ${model})`);
  const result: ImproveResult = {
    status, counts: { conversations: nConv, pairs: nPairs }, sft: sftResult, dpo: dpoResult, model, before, after,
    heldOut: { pairs: pairEx.length, conversations: convEx.length }, examples,
  };
  writeAtomic(join(o.out, "improve-summary.json"), JSON.stringify({ counts: result.counts, model, before, after, heldOut: result.heldOut, examples }, null, 2) + "\n");
  return result;
}

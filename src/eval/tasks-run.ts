/**
 * Running one task on one model. Every kind scores through the same two engines: sequence
 * log-likelihoods (score.ts, batched forwardCached) for bpb, chat-loss and mc, and batched
 * generation (src/infer/generate.ts, the one sampler) for exact, skills and screen.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { renderChat, type ChatMessage } from "../data/chat-template.ts";
import { generateBatch, DEFAULT_GENERATE, type GenerateOptions } from "../infer/generate.ts";
import type { DecodeModel } from "../model/decode.ts";
import { screenReply, type ScreenConfig } from "../screen/index.ts";
import { tokenByteLengths } from "../train/eval.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { speedrunSkills } from "../speedrun/skills.ts";
import { heldOutExamples, trainingQuestions, type Conversation } from "../speedrun/corpus.ts";
import { evaluate as evaluateSkills } from "../speedrun/evaluate.ts";
import { answersMatch, extractAnswer, passAtK, type Extractor } from "./extract.ts";
import { continuationItem, scoreItems, windowItems, type ScoreItem } from "./score.ts";
import { wilson } from "./stats.ts";
import { docText, loadDocs, loadExact, loadMc, promptOf, type McQuestion, type TaskSpec } from "./tasks.ts";
import { hasChatTemplate } from "./models.ts";

export interface EvalSettings {
  /** Sequences per forward pass (scoring) or prompts decoded together (generation). */
  batch: number;
  /** At most this many questions / documents / prompts per task (Infinity = all). */
  limit: number;
  /** Ask questions as chat turns: auto = when the model's tokenizer has the chat template. */
  chat: "auto" | "on" | "off";
  /** exact: samples per question (1 = greedy unless a temperature is set). */
  samples: number;
  temperature: number;
  topK: number;
  topP: number;
  maxNewTokens: number;
  seed: number;
  extract: Extractor;
  /** Shown in results as typed. */
  extractSpec: string;
  screen: ScreenConfig;
  screenSpec: string;
  /** skills: questions per skill. */
  perSkill: number;
}

export type Metrics = Record<string, number | string | boolean | null | Record<string, unknown>>;

export interface TaskRun {
  metrics: Metrics;
  /** Items scored (questions, documents, prompts). */
  n: number;
  /** Throughput: what was counted per second (e.g. tokens for bpb, questions for mc). */
  rate: { unit: string; perSecond: number };
}

export interface TaskContext {
  model: DecodeModel;
  tok: Tokenizer;
  modelDir: string;
  settings: EvalSettings;
  /** Progress: items done of total. */
  progress: (done: number, total: number, unit: string) => void;
}

function useChat(ctx: TaskContext): boolean {
  return ctx.settings.chat === "on" || (ctx.settings.chat === "auto" && hasChatTemplate(ctx.tok));
}

const eotOf = (tok: Tokenizer): number[] => {
  const e = tok.special.get("<|endoftext|>");
  return e === undefined ? [] : [e];
};

// --- bpb -------------------------------------------------------------------------------------

/**
 * Bits per byte: each document is <|endoftext|> + its tokens (the way pretraining saw it), cut
 * into windows of the model's context; every token after the first is predicted once.
 *   bpb = Σ −log p(token) / (ln 2 · Σ UTF-8 bytes of the predicted tokens)
 * Special tokens have 0 bytes, so bpb does not depend on the tokenizer: models with different
 * vocabularies compare on it.
 */
export async function runBpb(spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  const docs = await loadDocs(spec.files, ctx.settings.limit);
  const maxT = ctx.model.config.seqLen;
  const items: ScoreItem[] = [];
  for (const d of docs) items.push(...windowItems([...eotOf(ctx.tok), ...ctx.tok.encode(docText(d))], maxT));
  const bytesOf = tokenByteLengths(ctx.tok);
  const t0 = performance.now();
  const scored = scoreItems(ctx.model, items, { batch: ctx.settings.batch, onBatch: (k) => ctx.progress(k, items.length, "windows") });
  const seconds = (performance.now() - t0) / 1000;
  let nats = 0, tokens = 0, bytes = 0;
  scored.forEach((s, i) => {
    nats -= s.logprob;
    tokens += s.tokens;
    for (let t = items[i].start; t < items[i].ids.length; t++) bytes += bytesOf[items[i].ids[t]];
  });
  return {
    metrics: { bpb: nats / (Math.LN2 * bytes), loss: nats / tokens, tokens, bytes, documents: docs.length },
    n: docs.length, rate: { unit: "tokens", perSecond: tokens / seconds },
  };
}

// --- chat-loss ---------------------------------------------------------------------------------

/** Mean loss over the assistant tokens (the chat template's loss mask) of held-out conversations. */
export async function runChatLoss(spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  if (!hasChatTemplate(ctx.tok)) throw new Error(`--task ${spec.spec}: the model's tokenizer has no chat template tokens (<|im_start|>, <|im_end|>)`);
  const docs = (await loadDocs(spec.files, ctx.settings.limit)).filter((d) => d.kind === "chat");
  if (docs.length === 0) throw new Error(`--task ${spec.spec}: no conversations in ${spec.files.join(", ")}`);
  const maxT = ctx.model.config.seqLen;
  const items: ScoreItem[] = docs.map((d) => {
    const r = renderChat(ctx.tok, d.kind === "chat" ? d.messages : [], { maxTokens: maxT });
    return { ids: r.ids, start: 1, mask: r.mask };
  });
  const t0 = performance.now();
  const scored = scoreItems(ctx.model, items, { batch: ctx.settings.batch, onBatch: (k) => ctx.progress(k, items.length, "conversations") });
  const seconds = (performance.now() - t0) / 1000;
  let nats = 0, tokens = 0;
  for (const s of scored) { nats -= s.logprob; tokens += s.tokens; }
  return {
    metrics: { loss: nats / tokens, perplexity: Math.exp(nats / tokens), tokens, conversations: docs.length },
    n: docs.length, rate: { unit: "tokens", perSecond: tokens / seconds },
  };
}

// --- multiple choice ---------------------------------------------------------------------------

/**
 * HellaSwag's contexts carry WikiHow markup ("[title]", "[header]"); they are cleaned the way
 * the reference harnesses do before scoring.
 */
export function cleanHellaswag(s: string): string {
  return s.replace(/ \[title\]/g, ". ").replace(/\[.*?\]/g, "").replace(/ {2,}/g, " ").trim();
}

/** The prompts of one question: context and continuation text of each choice, and of each letter. */
export interface McPrompts {
  /** Continuations of the choices, scored by log-likelihood. */
  choice: { context: number[]; text: string }[];
  /** Lettered choices: "A. …\nB. …" listed, then the letter (null for HellaSwag). */
  letter: { context: number[]; text: string }[] | null;
}

export function mcPrompts(q: McQuestion, tok: Tokenizer, chat: boolean): McPrompts {
  const user = (content: string): number[] => renderChat(tok, [{ role: "user", content }], { addGenerationPrompt: true }).ids;
  if (q.shape === "hellaswag") {
    // A continuation task, not a question: the context is continued as text even for chat models.
    const ctx = cleanHellaswag(q.question);
    return { choice: q.choices.map((c) => ({ context: [...eotOf(tok), ...tok.encode(ctx)], text: " " + cleanHellaswag(c) })), letter: null };
  }
  const listed = q.choices.map((c, i) => `${q.labels![i]}. ${c}`).join("\n");
  if (chat) {
    const ctx = user(q.question);
    const lctx = user(`${q.question}\n\n${listed}\n\nAnswer with the letter of the right choice.`);
    return { choice: q.choices.map((c) => ({ context: ctx, text: c })), letter: q.labels!.map((l) => ({ context: lctx, text: l })) };
  }
  const ctx = [...eotOf(tok), ...tok.encode(`Question: ${q.question}\nAnswer:`)];
  const lctx = [...eotOf(tok), ...tok.encode(`Question: ${q.question}\n${listed}\nAnswer:`)];
  return { choice: q.choices.map((c) => ({ context: ctx, text: " " + c })), letter: q.labels!.map((l) => ({ context: lctx, text: " " + l })) };
}

/** Index of the largest value; the lowest index on ties. */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

export interface McScores {
  /** Per question: Σ log p of each choice's continuation. */
  loglik: number[][];
  /** Per question: the same divided by the continuation's UTF-8 bytes. */
  perByte: number[][];
  /** Per question (lettered ones): log p of each letter; null otherwise. */
  letter: (number[] | null)[];
  /** Choices longer than the context: only their last tokens were scored. */
  truncated: number;
}

/** Scores every choice (and letter) of the questions on the model. */
export function scoreMc(model: DecodeModel, tok: Tokenizer, qs: readonly McQuestion[], chat: boolean, batch: number,
                        progress?: (done: number, total: number) => void): McScores {
  const maxT = model.config.seqLen;
  const items: ScoreItem[] = [];
  const bytes: number[] = [];
  const prompts = qs.map((q) => mcPrompts(q, tok, chat));
  let truncated = 0;
  for (const p of prompts) {
    for (const c of [...p.choice, ...(p.letter ?? [])]) {
      const it = continuationItem(c.context, tok.encode(c.text), maxT);
      if (it.truncated) truncated++;
      items.push(it);
      bytes.push(Buffer.byteLength(c.text, "utf8"));
    }
  }
  // Progress in questions: items are in question order.
  const starts: number[] = [];
  let k = 0;
  for (const p of prompts) { starts.push(k); k += p.choice.length + (p.letter?.length ?? 0); }
  const scored = scoreItems(model, items, {
    batch, onBatch: (done) => {
      let q = 0;
      while (q < starts.length && starts[q] + prompts[q].choice.length + (prompts[q].letter?.length ?? 0) <= done) q++;
      progress?.(q, qs.length);
    },
  });
  const out: McScores = { loglik: [], perByte: [], letter: [], truncated };
  prompts.forEach((p, qi) => {
    const s = starts[qi], n = p.choice.length;
    out.loglik.push(scored.slice(s, s + n).map((x) => x.logprob));
    out.perByte.push(scored.slice(s, s + n).map((x, j) => x.logprob / Math.max(1, bytes[s + j])));
    out.letter.push(p.letter ? scored.slice(s + n, s + n + p.letter.length).map((x) => x.logprob) : null);
  });
  return out;
}

function accuracy(right: number, n: number): { acc: number; lo: number; hi: number } {
  const { lo, hi } = wilson(right, n);
  return { acc: right / n, lo, hi };
}

export async function runMc(spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  const qs = await loadMc(spec.files[0], ctx.settings.limit);
  const chat = useChat(ctx);
  const t0 = performance.now();
  const s = scoreMc(ctx.model, ctx.tok, qs, chat, ctx.settings.batch, (d, t) => ctx.progress(d, t, "questions"));
  const seconds = (performance.now() - t0) / 1000;
  let raw = 0, norm = 0, letter = 0, lettered = 0, random = 0;
  qs.forEach((q, i) => {
    if (argmax(s.loglik[i]) === q.answer) raw++;
    if (argmax(s.perByte[i]) === q.answer) norm++;
    const l = s.letter[i];
    if (l) {
      lettered++;
      if (argmax(l) === q.answer) letter++;
    }
    random += 1 / q.choices.length;
  });
  const n = qs.length;
  const a = accuracy(raw, n), b = accuracy(norm, n);
  const m: Metrics = {
    questions: n, shape: qs[0].shape, mode: chat && qs[0].shape !== "hellaswag" ? "chat" : "text",
    accuracy: a.acc, accuracyLo: a.lo, accuracyHi: a.hi,
    accuracyNorm: b.acc, accuracyNormLo: b.lo, accuracyNormHi: b.hi,
    random: random / n, truncatedChoices: s.truncated,
  };
  if (lettered) {
    const c = accuracy(letter, lettered);
    Object.assign(m, { accuracyLetter: c.acc, accuracyLetterLo: c.lo, accuracyLetterHi: c.hi });
  }
  return { metrics: m, n, rate: { unit: "questions", perSecond: n / seconds } };
}

// --- generation: exact, screen --------------------------------------------------------------------

function genOptions(st: EvalSettings): GenerateOptions {
  return { ...DEFAULT_GENERATE, temperature: st.temperature, topK: st.topK, topP: st.topP, maxNewTokens: st.maxNewTokens, seed: st.seed };
}

/** Prompt ids for a user turn (chat) or a "Question: …\nAnswer:" text, cut to leave room for the reply. */
function questionPrompt(ctx: TaskContext, messages: ChatMessage[], chat: boolean): number[] {
  const maxT = ctx.model.config.seqLen;
  const room = Math.max(1, maxT - Math.min(ctx.settings.maxNewTokens, Math.floor(maxT / 2)));
  if (chat) return renderChat(ctx.tok, messages, { addGenerationPrompt: true, maxTokens: room }).ids;
  const last = messages[messages.length - 1].content;
  const ids = [...eotOf(ctx.tok), ...ctx.tok.encode(`Question: ${last}\nAnswer:`)];
  return ids.slice(Math.max(0, ids.length - room));
}

/** Generates `k` replies per prompt in batches; reply j of prompt i uses seed + i·k + j. */
function generateAll(ctx: TaskContext, prompts: number[][], k: number, stopStrings: string[], unit: string) {
  const flat = prompts.flatMap((p) => Array.from({ length: k }, () => p));
  const out: ReturnType<typeof generateBatch> = [];
  const opts = genOptions(ctx.settings);
  for (let b = 0; b < flat.length; b += ctx.settings.batch) {
    out.push(...generateBatch(ctx.model, ctx.tok, flat.slice(b, b + ctx.settings.batch), { ...opts, seed: opts.seed + b, stopStrings }));
    ctx.progress(Math.floor(Math.min(b + ctx.settings.batch, flat.length) / k), prompts.length, unit);
  }
  return out;
}

export async function runExact(spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  const qs = await loadExact(spec.files[0], ctx.settings.limit);
  const chat = useChat(ctx);
  const k = ctx.settings.samples;
  const t0 = performance.now();
  const gens = generateAll(ctx, qs.map((q) => questionPrompt(ctx, [{ role: "user", content: q.question }], chat)), k, chat ? [] : ["\nQuestion:"], "questions");
  const seconds = (performance.now() - t0) / 1000;
  let correctFirst = 0, pass1 = 0, passK = 0, extracted = 0;
  qs.forEach((q, i) => {
    let c = 0;
    for (let j = 0; j < k; j++) {
      const got = extractAnswer(gens[i * k + j].text, ctx.settings.extract);
      if (got !== null) extracted++;
      if (answersMatch(got, q.answer)) {
        c++;
        if (j === 0) correctFirst++;
      }
    }
    pass1 += c / k;
    passK += passAtK(k, c, k);
  });
  const n = qs.length;
  const a = accuracy(correctFirst, n);
  const m: Metrics = { questions: n, samples: k, mode: chat ? "chat" : "text", accuracy: a.acc, accuracyLo: a.lo, accuracyHi: a.hi, extracted: extracted / (n * k) };
  if (k > 1) Object.assign(m, { passAt1: pass1 / n, [`passAt${k}`]: passK / n });
  return { metrics: m, n, rate: { unit: "questions", perSecond: n / seconds } };
}

export async function runScreen(spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  const docs = await loadDocs(spec.files, ctx.settings.limit);
  const prompts = docs.map(promptOf).filter((p): p is ChatMessage[] => p !== null);
  if (prompts.length === 0) throw new Error(`--task ${spec.spec}: no prompts (no user turn) in ${spec.files.join(", ")}`);
  const chat = useChat(ctx);
  const t0 = performance.now();
  const gens = generateAll(ctx, prompts.map((p) => questionPrompt(ctx, p, chat)), 1, chat ? [] : ["\nQuestion:"], "prompts");
  const seconds = (performance.now() - t0) / 1000;
  const verdicts: Record<string, number> = { pass: 0, redacted: 0, flagged: 0, blocked: 0 };
  const rules: Record<string, number> = {};
  let low = 0, lpSum = 0, lpN = 0;
  for (const g of gens) {
    const r = screenReply(g.text, { tokenLogprobs: g.logprobs }, ctx.settings.screen);
    verdicts[r.verdict]++;
    for (const e of new Set(r.events.map((e) => e.rule))) rules[e] = (rules[e] ?? 0) + 1;
    if (r.lowConfidence) low++;
    if (r.meanLogprob !== null) { lpSum += r.meanLogprob; lpN++; }
  }
  const n = prompts.length;
  return {
    metrics: {
      prompts: n, mode: chat ? "chat" : "text",
      blocked: verdicts.blocked / n, flagged: verdicts.flagged / n, redacted: verdicts.redacted / n, passed: verdicts.pass / n,
      lowConfidence: low / n, meanLogprob: lpN ? lpSum / lpN : null, rules,
    },
    n, rate: { unit: "prompts", perSecond: n / seconds },
  };
}

// --- skills -------------------------------------------------------------------------------------

/**
 * The speedrun's skills on fresh questions (a seed of their own). When the model sits in a
 * speedrun folder, its plan gives the digits of the addition skill and the questions of its
 * training conversations are excluded.
 */
export async function runSkills(_spec: TaskSpec, ctx: TaskContext): Promise<TaskRun> {
  if (!hasChatTemplate(ctx.tok)) throw new Error("--task skills: the model's tokenizer has no chat template tokens (the skills are asked as chat turns)");
  let run = dirname(ctx.modelDir);
  if (!existsSync(join(run, "speedrun.json"))) run = dirname(run); // a checkpoint inside a run's sft/ folder
  let digits = 2;
  const seen = new Set<string>();
  if (existsSync(join(run, "speedrun.json"))) {
    const plan = (JSON.parse(readFileSync(join(run, "speedrun.json"), "utf8")) as { plan?: { digits?: number } }).plan;
    if (plan?.digits) digits = plan.digits;
    for (const f of ["train.jsonl", "sft.jsonl"]) {
      const p = join(run, "corpus", f);
      if (!existsSync(p)) continue;
      const convs = readFileSync(p, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as Conversation);
      for (const q of trainingQuestions(convs)) seen.add(q);
    }
  }
  const skills = speedrunSkills({ digits });
  const per = Math.min(ctx.settings.perSkill, ctx.settings.limit);
  const examples = heldOutExamples(skills, per, ctx.settings.seed + 7919, seen);
  const t0 = performance.now();
  const e = evaluateSkills(ctx.model, ctx.tok, skills, examples, {
    batch: ctx.settings.batch, maxNewTokens: Math.min(ctx.settings.maxNewTokens, 64),
    onProgress: (d, t) => ctx.progress(d, t, "questions"),
  });
  const seconds = (performance.now() - t0) / 1000;
  const asked = e.scores.reduce((a, s) => a + s.asked, 0), right = e.scores.reduce((a, s) => a + s.correct, 0);
  const a = accuracy(right, asked);
  const perSkill: Record<string, unknown> = {};
  for (const s of e.scores) perSkill[s.skill] = { asked: s.asked, correct: s.correct, accuracy: s.accuracy };
  return {
    metrics: { questions: asked, accuracy: a.acc, accuracyLo: a.lo, accuracyHi: a.hi, skills: perSkill, valLoss: e.valLoss, digits },
    n: asked, rate: { unit: "questions", perSecond: asked / seconds },
  };
}

export const RUNNERS: Record<TaskSpec["kind"], (spec: TaskSpec, ctx: TaskContext) => Promise<TaskRun>> = {
  bpb: runBpb, "chat-loss": runChatLoss, mc: runMc, exact: runExact, screen: runScreen, skills: runSkills,
};

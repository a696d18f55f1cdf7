/**
 * `mynah speedrun`: a small bilingual chat model from nothing, in stages, each writing its
 * output into the run folder so that any stage can be re-run alone:
 *
 *   corpus/     train.jsonl (pretraining conversations), sft.jsonl, heldout.jsonl, facts.txt
 *   tokenizer/  tokenizer.json, tokenizer_config.json   (byte-level BPE, digits split one by one)
 *   pretrain/   checkpoint: every token of the rendered conversations and the fact statements
 *   sft/        checkpoint: fine-tuned on other conversations, loss on the replies only;
 *               also holds the tokenizer, so `mynah chat --model RUN/sft` works
 *   eval/       answers.jsonl, eval.json   (held-out exact match per skill, validation loss)
 *   report.md   the report card
 *   speedrun.json  the plan and what each stage did
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CHAT_TEMPLATE, type ChatMessage } from "../data/chat-template.ts";
import { writeAtomic } from "../core/atomic-write.ts";
import { loadTokenizer, saveTokenizer, trainBpe, MYNAH_PATTERN, DEFAULT_SPECIAL_TOKENS } from "../tokenizer/index.ts";
import { generateConversations, heldOutExamples, pretrainStatements, trainingQuestions, type Conversation } from "./corpus.ts";
import { speedrunSkills, type Example } from "./skills.ts";
import { planFor, type SpeedrunPlan } from "./plan.ts";
import { evaluate, type Evaluation } from "./evaluate.ts";
import { reportCard, type StageTime } from "./report.ts";
import { trainStage } from "./train-stage.ts";
import { loadChatModel } from "../infer/load.ts";

export const STAGES = ["corpus", "tokenizer", "pretrain", "sft", "eval"] as const;
export type StageName = (typeof STAGES)[number];

/**
 * The tokenizer's pre-split pattern: mynah's default, but every digit its own piece, so
 * numbers are read digit by digit (as Llama and DeepSeek do) and arithmetic is learnable.
 */
export const SPEEDRUN_PATTERN = MYNAH_PATTERN.replace(String.raw`\p{N}{1,3}`, String.raw`\p{N}`);

export interface SpeedrunOptions {
  runDir: string;
  plan: SpeedrunPlan;
  /** Run only these stages (default: all); the others' outputs are read from runDir. */
  only?: readonly StageName[];
  /** Progress lines for people. */
  log: (line: string) => void;
  /**
   * Ctrl-C: a training stage stops after its current step and saves a checkpoint
   * (RUN/<stage>-checkpoint); the run ends there, unfinished, and `--stage <stage> ...` resumes it.
   */
  signal?: AbortSignal;
  /**
   * Writes the run's full report (curves, tables) into the run folder and returns its file
   * name, which the report card links. Passed in by the caller (the CLI gives `mynah report`'s
   * writer), since the report lives in a layer above the speedrun.
   */
  writeRunReport?: (runDir: string) => Promise<string>;
}

export interface SpeedrunResult {
  runDir: string;
  modelDir: string;
  evaluation?: Evaluation;
  report?: string;
  /** The stage Ctrl-C stopped (its checkpoint is kept; later stages did not run). */
  interrupted?: StageName;
}

function writeJsonl(path: string, rows: readonly unknown[]): void {
  writeAtomic(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
}

function readJsonl<T>(path: string): T[] {
  if (!existsSync(path)) throw new Error(`speedrun: ${path} is missing: run the stage that makes it first (mynah speedrun --stage ...)`);
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l) as T;
    } catch (err) {
      throw new Error(`${path}:${i + 1}: not valid JSON (${(err as Error).message})`);
    }
  });
}

export const dirs = (run: string) => ({
  corpus: join(run, "corpus"),
  tokenizer: join(run, "tokenizer"),
  pretrain: join(run, "pretrain"),
  sft: join(run, "sft"),
  eval: join(run, "eval"),
});

/** Runs the pipeline (or the stages asked for). */
export async function runSpeedrun(o: SpeedrunOptions): Promise<SpeedrunResult> {
  const p = o.plan, d = dirs(o.runDir), log = o.log;
  mkdirSync(o.runDir, { recursive: true });
  const statePath = join(o.runDir, "speedrun.json");
  const state: { plan: SpeedrunPlan; stages: Record<string, StageTime & { finished: string }> } =
    existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : { plan: p, stages: {} };
  state.plan = p;
  const want = new Set(o.only ?? STAGES);
  const skills = speedrunSkills({ digits: p.digits });
  const save = (): void => writeAtomic(statePath, JSON.stringify(state, null, 2) + "\n");
  let interrupted: StageName | undefined;
  const stage = async (name: StageName, fn: () => Promise<string> | string): Promise<void> => {
    if (!want.has(name) || interrupted) return;
    if (o.signal?.aborted) { interrupted = name; return; }
    log(`\n== ${name} ==`);
    const t0 = performance.now();
    const note = await fn();
    if (o.signal?.aborted) {
      // Not finished: not recorded, and no later stage runs on its partial output.
      interrupted = name;
      log(`${name}: interrupted; resume with \`mynah speedrun --run-dir ${o.runDir} --stage ${STAGES.slice(STAGES.indexOf(name)).join(" ")}\``);
      return;
    }
    const seconds = (performance.now() - t0) / 1000;
    state.stages[name] = { stage: name, seconds, note, finished: new Date().toISOString() };
    save();
    log(`${name}: ${note} (${seconds.toFixed(1)} s)`);
  };

  await stage("corpus", () => {
    mkdirSync(d.corpus, { recursive: true });
    const train = generateConversations(skills, { conversations: p.conversations, seed: p.seed, zhShare: p.zhShare });
    const sft = generateConversations(skills, { conversations: p.sftConversations, seed: p.seed + 1000, zhShare: p.zhShare });
    // Held-out questions: another seed, none equal to any question of pretraining or SFT.
    const seen = trainingQuestions([...train, ...sft]);
    const held = heldOutExamples(skills, p.evalPerSkill, p.seed + 2000, seen);
    writeJsonl(join(d.corpus, "train.jsonl"), train);
    writeJsonl(join(d.corpus, "sft.jsonl"), sft);
    writeJsonl(join(d.corpus, "heldout.jsonl"), held);
    writeAtomic(join(d.corpus, "facts.txt"), pretrainStatements().join("\n") + "\n");
    return `${train.length} pretraining + ${sft.length} SFT conversations, ${held.length} held-out questions over ${skills.filter((s) => s.scored).length} skills`;
  });

  await stage("tokenizer", () => {
    const train = readJsonl<Conversation>(join(d.corpus, "train.jsonl"));
    const texts = [...train.flatMap((c) => c.messages.map((m) => m.content)), ...pretrainStatements()];
    const tok = trainBpe(texts, { vocabSize: p.vocabSize, pattern: SPEEDRUN_PATTERN, specialTokens: DEFAULT_SPECIAL_TOKENS });
    saveTokenizer(d.tokenizer, tok, { chatTemplate: CHAT_TEMPLATE });
    return `byte-level BPE, ${tok.vocabSize} tokens (digits split), saved to ${d.tokenizer}`;
  });

  await stage("pretrain", async () => {
    const tok = loadTokenizer(d.tokenizer);
    const convs = readJsonl<Conversation>(join(d.corpus, "train.jsonl"));
    const facts = readFileSync(join(d.corpus, "facts.txt"), "utf8").split("\n").filter(Boolean);
    return trainStage({ kind: "pretrain", plan: p, tokenizer: tok, conversations: convs.map((c) => c.messages), texts: facts,
      outDir: d.pretrain, seconds: p.pretrainSeconds, log, signal: o.signal });
  });

  await stage("sft", async () => {
    const tok = loadTokenizer(d.tokenizer);
    const convs = readJsonl<{ messages: ChatMessage[] }>(join(d.corpus, "sft.jsonl"));
    const note = await trainStage({ kind: "sft", plan: p, tokenizer: tok, conversations: convs.map((c) => c.messages), texts: [],
      outDir: d.sft, initFrom: d.pretrain, seconds: p.sftSeconds, log, signal: o.signal });
    if (o.signal?.aborted) return note;
    saveTokenizer(d.sft, tok as Parameters<typeof saveTokenizer>[1], { chatTemplate: CHAT_TEMPLATE });
    return note;
  });

  const result: SpeedrunResult = { runDir: o.runDir, modelDir: d.sft };
  await stage("eval", () => {
    mkdirSync(d.eval, { recursive: true });
    const { model, tokenizer } = loadChatModel(d.sft);
    const held = readJsonl<Example>(join(d.corpus, "heldout.jsonl"));
    let shownQuarter = 0;
    const e = evaluate(model, tokenizer, skills, held, {
      batch: 16, maxNewTokens: 48,
      // A line a quarter (the evaluation takes seconds; one line per batch would flood the log).
      onProgress: (done, total) => {
        const quarter = Math.floor((4 * done) / total);
        if (quarter > shownQuarter) log(`  evaluated ${done}/${total} questions`);
        shownQuarter = Math.max(shownQuarter, quarter);
      },
    });
    writeJsonl(join(d.eval, "answers.jsonl"), e.answers);
    writeAtomic(join(d.eval, "eval.json"), JSON.stringify({ scores: e.scores, valLoss: e.valLoss, valTokens: e.valTokens, seconds: e.seconds }, null, 2) + "\n");
    result.evaluation = e;
    const good = e.scores.filter((s) => s.accuracy >= 0.9).length;
    return `${held.length} questions, ${good} skill(s) at ≥ 90 %, validation loss ${e.valLoss.toFixed(3)}`;
  });

  if (interrupted) return { ...result, interrupted };
  // The report card, from whatever evaluation is on disk.
  if (existsSync(join(d.eval, "eval.json")) && existsSync(join(d.eval, "answers.jsonl"))) {
    const ev = result.evaluation ?? { ...JSON.parse(readFileSync(join(d.eval, "eval.json"), "utf8")), answers: readJsonl(join(d.eval, "answers.jsonl")) };
    const m = p.model;
    let fullReport: string | undefined;
    if (o.writeRunReport) {
      try {
        fullReport = await o.writeRunReport(o.runDir);
      } catch (err) {
        log(`run report: not written (${(err as Error).message})`);
      }
    }
    result.report = reportCard({
      evaluation: ev,
      stages: STAGES.filter((s) => state.stages[s]).map((s) => state.stages[s]),
      model: `${m.nLayer} layers × ${m.nEmbd} wide, ${m.nHead} heads (${m.nKvHead} KV), context ${m.seqLen}, vocabulary ${p.vocabSize}`,
      runDir: o.runDir,
      passAt: 0.9,
      fullReport,
    });
    writeAtomic(join(o.runDir, "report.md"), result.report);
  }
  return result;
}

export { planFor };

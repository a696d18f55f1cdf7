/**
 * Evaluation tasks: `--task KIND:PATH` specs and the task files they name, read through the
 * reader layer (src/data: JSONL, JSON arrays, Parquet, .gz) in the shapes the public sets ship:
 *
 *   mc     ARC        {"question", "choices": {"text": [...], "label": [...]}, "answerKey": "B"}
 *          MMLU       {"question", "choices": [...], "answer": 2}            (or "answer": "C")
 *          HellaSwag  {"ctx", "endings": [...], "label": "3"}
 *   exact  GSM8K      {"question", "answer": "... #### 42"}; or {"question"|"prompt"|"input"|"problem", "answer"|"target"|"output": "42" | 42}
 *   bpb, chat-loss, screen: any file `mynah data prepare` reads (text, JSONL text, chat, ShareGPT, Alpaca, Parquet)
 *   skills: no file — the speedrun's skills on freshly generated questions
 *
 * The shape of an mc/exact file is detected from its first record; a record that does not
 * fit is refused with the file and line.
 */
import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { DataError } from "../data/errors.ts";
import { expandInputs } from "../data/inputs.ts";
import { readFile, readRecords, type Doc } from "../data/readers.ts";
import { docTexts } from "../data/records.ts";
import type { ChatMessage } from "../data/chat-template.ts";
import { gsm8kReference, normalizeAnswer } from "./extract.ts";

export const TASK_KINDS = ["bpb", "chat-loss", "mc", "exact", "skills", "screen"] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

export interface TaskSpec {
  kind: TaskKind;
  /** Files (expanded from paths, folders and globs); none for skills. */
  files: string[];
  /** As the user typed it. */
  spec: string;
}

/** Parses one --task value: KIND:PATH[,PATH...] (PATH may be a folder or a glob), or "skills". */
export function parseTaskSpec(spec: string): TaskSpec {
  const i = spec.indexOf(":");
  const kind = (i < 0 ? spec : spec.slice(0, i)) as TaskKind;
  if (!TASK_KINDS.includes(kind)) throw new Error(`--task ${spec}: unknown kind "${kind}"; expected one of ${TASK_KINDS.map((k) => k + ":").join(", ")} (e.g. mc:arc.jsonl)`);
  if (kind === "skills") {
    if (i >= 0 && spec.slice(i + 1) !== "") throw new Error(`--task ${spec}: skills takes no file (the questions are generated)`);
    return { kind, files: [], spec };
  }
  const paths = i < 0 ? [] : spec.slice(i + 1).split(",").filter((p) => p !== "");
  if (paths.length === 0) throw new Error(`--task ${spec}: no file given; write ${kind}:PATH`);
  let files: string[];
  try {
    files = expandInputs(paths);
  } catch (err) {
    throw new Error(`--task ${spec}: ${(err as Error).message}`);
  }
  if ((kind === "mc" || kind === "exact") && files.length !== 1) throw new Error(`--task ${spec}: ${kind} takes one file, got ${files.length}`);
  return { kind, files, spec };
}

export interface FileDigest {
  path: string;
  bytes: number;
  sha256: string;
}

export function fileDigest(path: string): FileDigest {
  return { path, bytes: statSync(path).size, sha256: createHash("sha256").update(readFileSync(path)).digest("hex") };
}

// --- multiple choice ---------------------------------------------------------------------

export type McShape = "arc" | "mmlu" | "hellaswag";

export interface McQuestion {
  /** file:line */
  where: string;
  shape: McShape;
  /** The question (ARC, MMLU) or the context to continue (HellaSwag). */
  question: string;
  choices: string[];
  /** The letter of each choice (ARC's labels; A, B, C… for MMLU); null for HellaSwag (scored as continuations). */
  labels: string[] | null;
  /** Index of the right choice. */
  answer: number;
}

/** The mc shape of a record, from its fields; null when none fits. */
export function detectMcShape(r: Record<string, unknown>): McShape | null {
  if (Array.isArray(r.endings) && ("ctx" in r || "ctx_a" in r)) return "hellaswag";
  if ("answerKey" in r) return "arc";
  if (Array.isArray(r.choices) && "answer" in r) return "mmlu";
  return null;
}

const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const fieldsOf = (r: object): string => Object.keys(r).join(", ") || "none";

function str(r: Record<string, unknown>, k: string, where: () => DataError): string {
  const v = r[k];
  if (typeof v !== "string" || v.trim() === "") throw where();
  return v;
}

/** One record of a known mc shape → a question; throws a DataError naming the field. */
export function mcQuestion(r: Record<string, unknown>, shape: McShape, file: string, line: number, unit: "line" | "row"): McQuestion {
  const bad = (why: string): DataError => new DataError(file, line, why, unit);
  const where = `${file}:${unit === "row" ? "row " : ""}${line}`;
  const strings = (v: unknown, name: string): string[] => {
    if (!Array.isArray(v) || v.length < 2) throw bad(`"${name}" must be a list of at least 2 strings`);
    return v.map((x, i) => {
      if (typeof x !== "string") throw bad(`"${name}"[${i}] is ${x === null ? "null" : typeof x}, expected a string`);
      return x;
    });
  };
  if (shape === "hellaswag") {
    const ctx = typeof r.ctx === "string" ? r.ctx : [r.ctx_a, r.ctx_b].filter((x) => typeof x === "string").join(" ");
    if (ctx.trim() === "") throw bad(`no "ctx" text (fields: ${fieldsOf(r)})`);
    const choices = strings(r.endings, "endings");
    const label = typeof r.label === "number" ? r.label : typeof r.label === "string" && /^\d+$/.test(r.label) ? Number(r.label) : NaN;
    if (!(Number.isInteger(label) && label >= 0 && label < choices.length)) throw bad(`"label" is ${JSON.stringify(r.label)}; expected the index of the right ending, 0..${choices.length - 1}`);
    return { where, shape, question: ctx.trim(), choices, labels: null, answer: label };
  }
  if (shape === "arc") {
    // Hugging Face ai2_arc: question is a string, choices {text, label}; the original release
    // nests them: question {stem, choices: [{text, label}]}.
    let q: string, texts: string[], labels: string[];
    if (typeof r.question === "object" && r.question !== null && !Array.isArray(r.question)) {
      const qq = r.question as Record<string, unknown>;
      q = str(qq, "stem", () => bad(`"question.stem" must be a non-empty string`));
      if (!Array.isArray(qq.choices)) throw bad(`"question.choices" must be a list`);
      texts = qq.choices.map((c, i) => str(c as Record<string, unknown>, "text", () => bad(`"question.choices"[${i}].text must be a string`)));
      labels = qq.choices.map((c, i) => str(c as Record<string, unknown>, "label", () => bad(`"question.choices"[${i}].label must be a string`)));
    } else {
      q = str(r, "question", () => bad(`"question" must be a non-empty string (fields: ${fieldsOf(r)})`));
      const c = r.choices as Record<string, unknown> | undefined;
      if (typeof c !== "object" || c === null || Array.isArray(c)) throw bad(`"choices" must be an object {"text": [...], "label": [...]}`);
      texts = strings(c.text, "choices.text");
      labels = strings(c.label, "choices.label");
      if (labels.length !== texts.length) throw bad(`"choices.label" has ${labels.length} entries but "choices.text" ${texts.length}`);
    }
    const key = typeof r.answerKey === "number" ? String(r.answerKey) : r.answerKey;
    const answer = labels.indexOf(String(key));
    if (answer < 0) throw bad(`"answerKey" ${JSON.stringify(r.answerKey)} is not one of the labels ${labels.join(", ")}`);
    return { where, shape, question: q, choices: texts, labels, answer };
  }
  const q = str(r, "question", () => bad(`"question" must be a non-empty string (fields: ${fieldsOf(r)})`));
  const choices = strings(r.choices, "choices");
  if (choices.length > LETTERS.length) throw bad(`${choices.length} choices; at most ${LETTERS.length}`);
  const a = r.answer;
  const answer = typeof a === "number" ? a : typeof a === "bigint" ? Number(a)
    : typeof a === "string" && /^\d+$/.test(a) ? Number(a) : typeof a === "string" && a.length === 1 ? LETTERS.indexOf(a.toUpperCase()) : NaN;
  if (!(Number.isInteger(answer) && answer >= 0 && answer < choices.length)) throw bad(`"answer" is ${JSON.stringify(typeof a === "bigint" ? Number(a) : a)}; expected the index (0..${choices.length - 1}) or letter of the right choice`);
  return { where, shape, question: q, choices, labels: choices.map((_, i) => LETTERS[i]), answer };
}

/** Reads an mc file (first `limit` questions). */
export async function loadMc(path: string, limit = Infinity): Promise<McQuestion[]> {
  const out: McQuestion[] = [];
  let shape: McShape | null = null;
  for await (const { rec, file, line, unit } of readRecords(path)) {
    if (out.length >= limit) break;
    shape ??= detectMcShape(rec);
    if (!shape) throw new DataError(file, line, `cannot tell the multiple-choice format from its fields (${fieldsOf(rec)}); expected ARC ("question", "choices", "answerKey"), MMLU ("question", "choices", "answer") or HellaSwag ("ctx", "endings", "label")`, unit);
    out.push(mcQuestion(rec, shape, file, line, unit));
  }
  if (out.length === 0) throw new Error(`${path}: no questions`);
  return out;
}

// --- exact match --------------------------------------------------------------------------

export interface ExactQuestion {
  where: string;
  question: string;
  /** The reference answer (canonical, see normalizeAnswer). */
  answer: string;
}

const Q_FIELDS = ["question", "prompt", "input", "problem"];
const A_FIELDS = ["answer", "target", "output", "solution"];

/** Reads an exact-match file: GSM8K ("#### 42" in the answer) or a question with its short answer. */
export async function loadExact(path: string, limit = Infinity): Promise<ExactQuestion[]> {
  const out: ExactQuestion[] = [];
  let qf: string | undefined, af: string | undefined;
  for await (const { rec, file, line, unit } of readRecords(path)) {
    if (out.length >= limit) break;
    const bad = (why: string): DataError => new DataError(file, line, why, unit);
    qf ??= Q_FIELDS.find((f) => f in rec);
    af ??= A_FIELDS.find((f) => f in rec);
    if (!qf || !af) throw bad(`cannot find the question and answer fields (fields: ${fieldsOf(rec)}); expected one of ${Q_FIELDS.join("/")} and one of ${A_FIELDS.join("/")}`);
    const q = rec[qf];
    if (typeof q !== "string" || q.trim() === "") throw bad(`"${qf}" must be a non-empty string`);
    const a = rec[af];
    let answer: string | null;
    if (typeof a === "number" || typeof a === "bigint") answer = normalizeAnswer(String(a));
    else if (typeof a === "string") answer = a.includes("####") ? gsm8kReference(a) : normalizeAnswer(a);
    else answer = null;
    if (answer === null || answer === "") throw bad(`"${af}" must be a non-empty string or number (GSM8K: "... #### 42")`);
    out.push({ where: `${file}:${unit === "row" ? "row " : ""}${line}`, question: q, answer });
  }
  if (out.length === 0) throw new Error(`${path}: no questions`);
  return out;
}

// --- documents: bpb, chat-loss, screen ----------------------------------------------------

/** Documents of the files (text and conversations), first `limit` in all. */
export async function loadDocs(files: readonly string[], limit = Infinity): Promise<Doc[]> {
  const out: Doc[] = [];
  for (const f of files) {
    for await (const d of readFile(f)) {
      if (out.length >= limit) return out;
      out.push(d);
    }
  }
  if (out.length === 0) throw new Error(`${files.join(", ")}: no documents`);
  return out;
}

/** A document as plain text: its text, or a conversation's messages joined by blank lines. */
export function docText(d: Doc): string {
  return docTexts(d).join("\n\n");
}

/**
 * The prompt of a screening case: a conversation up to and including its last user turn (the
 * reply after it is what the model writes), or a text as one user message.
 */
export function promptOf(d: Doc): ChatMessage[] | null {
  if (d.kind === "text") return [{ role: "user", content: d.text }];
  if (d.kind === "preference") return d.prompt; // a red-team pair: its prompt is the case
  let last = -1;
  d.messages.forEach((m, i) => { if (m.role === "user") last = i; });
  return last < 0 ? null : d.messages.slice(0, last + 1);
}

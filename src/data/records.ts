/**
 * JSON records (a JSONL line or a Parquet row) → documents. Four shapes, as datasets ship them:
 *
 *   text      {"text": "..."}                                   (field name: --text-field)
 *   chat      {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}   (OpenAI)
 *   sharegpt  {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}]}
 *   alpaca    {"instruction": "...", "input": "...", "output": "..."}  (optional "system")
 *   preference  {"prompt"|"messages": ..., "chosen": ..., "rejected": ...}  (DPO pairs; the
 *               variants TRL, Anthropic HH transcripts and feedback export: recordToPreference)
 *
 * A file's shape is detected from its first record (or forced with --format); every later
 * record must have that shape. Other top-level fields (ids, sources, scores) are ignored;
 * unknown fields inside a message are refused, since they carry content (tool calls, names)
 * the chat template cannot render.
 */
import { isChatRole, type ChatMessage, type PreferencePair } from "./chat.ts";

export type RecordShape = "text" | "chat" | "sharegpt" | "alpaca" | "preference";
export const RECORD_SHAPES: readonly RecordShape[] = ["text", "chat", "sharegpt", "alpaca", "preference"];

export type DocBody = { kind: "text"; text: string } | { kind: "chat"; messages: ChatMessage[] } | ({ kind: "preference" } & PreferencePair);

/** Thrown for a record that does not fit its shape; the reader adds file and line. */
export class RecordError extends Error {}

const fieldsOf = (r: object): string => Object.keys(r).join(", ") || "none";

/** The shape of a record, from its fields; null when none fits. */
export function detectShape(rec: unknown, textField: string): RecordShape | null {
  if (typeof rec !== "object" || rec === null || Array.isArray(rec)) return null;
  const r = rec as Record<string, unknown>;
  // A preference pair may carry its prompt as "messages": test it first.
  if ("chosen" in r && "rejected" in r) return "preference";
  if (Array.isArray(r.messages)) return "chat";
  if (Array.isArray(r.conversations)) return "sharegpt";
  if (typeof r.instruction === "string" && "output" in r) return "alpaca";
  if (textField in r) return "text";
  return null;
}

/**
 * A preference pair: a prompt with two competing replies, `chosen` and `rejected` (hh-rlhf,
 * UltraFeedback, `mynah feedback export`'s preferences.jsonl). It says which reply is better,
 * not that either is one to imitate, so supervised fine-tuning refuses it; preference tuning
 * reads it.
 */
export function isPreferencePair(rec: unknown): boolean {
  return typeof rec === "object" && rec !== null && !Array.isArray(rec) && "chosen" in rec && "rejected" in rec;
}

/** Message content: a string, or OpenAI's list of parts ({type: "text", text}). */
export function contentText(c: unknown, where: string): string {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) {
    return c
      .map((p, i) => {
        const part = p as { type?: unknown; text?: unknown } | null;
        if (part && part.type === "text" && typeof part.text === "string") return part.text;
        throw new RecordError(`${where}.content[${i}]: only text parts are supported, got type ${JSON.stringify(part?.type)}`);
      })
      .join("");
  }
  throw new RecordError(`${where}.content is ${c === null ? "null" : typeof c}, expected a string`);
}

const SHAREGPT_ROLES: Record<string, ChatMessage["role"]> = {
  system: "system",
  human: "user",
  user: "user",
  gpt: "assistant",
  assistant: "assistant",
  chatgpt: "assistant",
  bard: "assistant",
  model: "assistant",
};

function checkKeys(m: object, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(m)) {
    if (!allowed.includes(k)) throw new RecordError(`${where}: unknown field "${k}" (expected ${allowed.join(", ")})`);
  }
}

/** OpenAI messages ({role, content[, name]}) → ChatMessages; `field` names the list in errors. */
export function parseMessages(list: readonly unknown[], field: string): ChatMessage[] {
  return list.map((m, i): ChatMessage => {
    const where = `${field}[${i}]`;
    if (typeof m !== "object" || m === null) throw new RecordError(`${where} is not an object`);
    checkKeys(m, ["role", "content", "name"], where);
    const role = (m as { role?: unknown }).role;
    if (!isChatRole(role)) throw new RecordError(`${where}.role is ${JSON.stringify(role)}; expected system, user or assistant`);
    return { role, content: contentText((m as { content?: unknown }).content, where) };
  });
}

/** One record of a known shape → a document; throws RecordError naming the field. */
export function recordToDoc(rec: unknown, shape: RecordShape, textField: string): DocBody {
  if (typeof rec !== "object" || rec === null || Array.isArray(rec)) throw new RecordError(`expected a JSON object, got ${Array.isArray(rec) ? "an array" : rec === null ? "null" : typeof rec}`);
  const r = rec as Record<string, unknown>;
  switch (shape) {
    case "text": {
      const t = r[textField];
      if (t === undefined) throw new RecordError(`no field "${textField}" (fields: ${fieldsOf(r)}); choose the text field with --text-field`);
      if (typeof t !== "string") throw new RecordError(`field "${textField}" is ${t === null ? "null" : typeof t}, expected a string`);
      return { kind: "text", text: t };
    }
    case "chat": {
      if (!Array.isArray(r.messages)) throw new RecordError(`no "messages" list (fields: ${fieldsOf(r)})`);
      return { kind: "chat", messages: parseMessages(r.messages, "messages") };
    }
    case "preference":
      return { kind: "preference", ...recordToPreference(r) };
    case "sharegpt": {
      if (!Array.isArray(r.conversations)) throw new RecordError(`no "conversations" list (fields: ${fieldsOf(r)})`);
      const messages = r.conversations.map((m, i): ChatMessage => {
        const where = `conversations[${i}]`;
        if (typeof m !== "object" || m === null) throw new RecordError(`${where} is not an object`);
        checkKeys(m, ["from", "value", "weight"], where);
        const from = (m as { from?: unknown }).from;
        const role = typeof from === "string" ? SHAREGPT_ROLES[from] : undefined;
        if (!role) throw new RecordError(`${where}.from is ${JSON.stringify(from)}; expected one of ${Object.keys(SHAREGPT_ROLES).join(", ")}`);
        const value = (m as { value?: unknown }).value;
        if (typeof value !== "string") throw new RecordError(`${where}.value is ${value === null ? "null" : typeof value}, expected a string`);
        return { role, content: value };
      });
      return { kind: "chat", messages };
    }
    case "alpaca": {
      const str = (k: string, required: boolean): string => {
        const v = r[k];
        if (v === undefined || v === null) {
          if (required) throw new RecordError(`no "${k}" field (fields: ${fieldsOf(r)})`);
          return "";
        }
        if (typeof v !== "string") throw new RecordError(`field "${k}" is ${typeof v}, expected a string`);
        return v;
      };
      const instruction = str("instruction", true);
      const input = str("input", false);
      const output = str("output", true);
      const system = str("system", false);
      // The input, when present, follows the instruction as its own paragraph.
      const user = input.trim() ? `${instruction}\n\n${input}` : instruction;
      const messages: ChatMessage[] = [{ role: "user", content: user }, { role: "assistant", content: output }];
      if (system.trim()) messages.unshift({ role: "system", content: system });
      return { kind: "chat", messages };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Preference pairs

/**
 * Anthropic HH's raw transcript, "\n\nHuman: …\n\nAssistant: …" → messages. Returns null
 * when the text holds no "Human:" turn marker (then it is not such a transcript).
 */
export function parseHhTranscript(text: string, where: string): ChatMessage[] | null {
  const marker = /(?:^|\n\n)(Human|Assistant): ?/g;
  const marks = [...text.matchAll(marker)];
  if (marks.length === 0 || !marks.some((m) => m[1] === "Human")) return null;
  if (text.slice(0, marks[0].index).trim() !== "") throw new RecordError(`${where}: text before the first "Human:" turn`);
  return marks.map((m, i) => ({
    role: m[1] === "Human" ? "user" : "assistant",
    content: text.slice(m.index! + m[0].length, i + 1 < marks.length ? marks[i + 1].index : text.length).trim(),
  }));
}

/** A reply: a string, one message object, or a list of messages. */
function completionOf(v: unknown, field: string): ChatMessage[] {
  if (typeof v === "string") return [{ role: "assistant", content: v }];
  if (Array.isArray(v)) return parseMessages(v, field);
  if (typeof v === "object" && v !== null) return parseMessages([v], field).slice(0, 1);
  throw new RecordError(`field "${field}" is ${v === null ? "null" : typeof v}, expected a string, a message or a list of messages`);
}

/**
 * A preference record → prompt, chosen and rejected messages. Accepted:
 *   {"prompt": "…" | [messages], "chosen": …, "rejected": …}        TRL, explicit prompt
 *   {"messages": [messages], "chosen": …, "rejected": …}             mynah feedback export, shared HH file
 *   {"chosen": [messages], "rejected": [messages]}                   TRL, implicit prompt
 *   {"chosen": "\n\nHuman: …\n\nAssistant: …", "rejected": "…"}      Anthropic HH raw transcripts
 * where chosen/rejected are a string (one assistant reply), one message, or a list of messages.
 * Without a prompt, the prompt is the longest shared beginning of the two that ends with a user
 * turn. Whether the result is a well-formed pair is checked by preferenceProblem (chat.ts).
 */
export function recordToPreference(r: Record<string, unknown>): PreferencePair {
  const hasPrompt = r.prompt !== undefined || r.messages !== undefined;
  if (r.prompt !== undefined && r.messages !== undefined) throw new RecordError(`both "prompt" and "messages": give the prompt once`);
  if (hasPrompt) {
    const p = r.prompt ?? r.messages;
    const field = r.prompt !== undefined ? "prompt" : "messages";
    const prompt = typeof p === "string" ? [{ role: "user" as const, content: p }]
      : Array.isArray(p) ? parseMessages(p, field)
      : (() => { throw new RecordError(`field "${field}" is ${p === null ? "null" : typeof p}, expected a string or a list of messages`); })();
    return { prompt, chosen: completionOf(r.chosen, "chosen"), rejected: completionOf(r.rejected, "rejected") };
  }
  // Implicit prompt: two whole conversations (message lists or HH transcripts).
  const whole = (field: "chosen" | "rejected"): ChatMessage[] => {
    const v = r[field];
    if (Array.isArray(v)) return parseMessages(v, field);
    if (typeof v === "string") {
      const m = parseHhTranscript(v, field);
      if (m) return m;
      throw new RecordError(`"${field}" is a plain string and there is no "prompt": expected a "prompt" field, message lists, or Anthropic HH "Human: … Assistant: …" transcripts`);
    }
    throw new RecordError(`field "${field}" is ${v === null ? "null" : typeof v}, expected a list of messages or a transcript`);
  };
  const c = whole("chosen"), j = whole("rejected");
  let k = 0;
  while (k < c.length && k < j.length && c[k].role === j[k].role && c[k].content === j[k].content) k++;
  while (k > 0 && c[k - 1].role !== "user") k--;
  if (k === 0) throw new RecordError(`"chosen" and "rejected" share no beginning that ends with a user turn, so there is no prompt`);
  return { prompt: c.slice(0, k), chosen: c.slice(k), rejected: j.slice(k) };
}

/** Every text of a document: plain text, or the content of each message (of a pair: prompt, chosen, rejected). */
export function docTexts(d: DocBody): string[] {
  if (d.kind === "text") return [d.text];
  if (d.kind === "chat") return d.messages.map((m) => m.content);
  return [...d.prompt, ...d.chosen, ...d.rejected].map((m) => m.content);
}

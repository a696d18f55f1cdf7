/**
 * JSON records (a JSONL line or a Parquet row) → documents. Four shapes, as datasets ship them:
 *
 *   text      {"text": "..."}                                   (field name: --text-field)
 *   chat      {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}   (OpenAI)
 *   sharegpt  {"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}]}
 *   alpaca    {"instruction": "...", "input": "...", "output": "..."}  (optional "system")
 *
 * A file's shape is detected from its first record (or forced with --format); every later
 * record must have that shape. Other top-level fields (ids, sources, scores) are ignored;
 * unknown fields inside a message are refused, since they carry content (tool calls, names)
 * the chat template cannot render.
 */
import { isChatRole, type ChatMessage } from "./chat.ts";

export type RecordShape = "text" | "chat" | "sharegpt" | "alpaca";
export const RECORD_SHAPES: readonly RecordShape[] = ["text", "chat", "sharegpt", "alpaca"];

export type DocBody = { kind: "text"; text: string } | { kind: "chat"; messages: ChatMessage[] };

/** Thrown for a record that does not fit its shape; the reader adds file and line. */
export class RecordError extends Error {}

const fieldsOf = (r: object): string => Object.keys(r).join(", ") || "none";

/** The shape of a record, from its fields; null when none fits. */
export function detectShape(rec: unknown, textField: string): RecordShape | null {
  if (typeof rec !== "object" || rec === null || Array.isArray(rec)) return null;
  const r = rec as Record<string, unknown>;
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
function contentText(c: unknown, where: string): string {
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
      const messages = r.messages.map((m, i): ChatMessage => {
        const where = `messages[${i}]`;
        if (typeof m !== "object" || m === null) throw new RecordError(`${where} is not an object`);
        checkKeys(m, ["role", "content", "name"], where);
        const role = (m as { role?: unknown }).role;
        if (!isChatRole(role)) throw new RecordError(`${where}.role is ${JSON.stringify(role)}; expected system, user or assistant`);
        return { role, content: contentText((m as { content?: unknown }).content, where) };
      });
      return { kind: "chat", messages };
    }
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

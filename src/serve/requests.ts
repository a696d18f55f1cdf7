/**
 * Validation of OpenAI request bodies (Chat Completions and Completions): every field is
 * checked for type and range and a bad one is a 400 naming it as the client wrote it
 * (`messages[2].role`, `top_p`). Unknown fields are ignored, as OpenAI does; features mynah
 * does not have (tools, n > 1, echo) are refused rather than silently dropped.
 */
import type { ChatMessage } from "../data/chat-template.ts";
import { invalid } from "./errors.ts";

export interface SamplingRequest {
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  /** Undefined: as long as the context allows. */
  maxTokens?: number;
  stop: string[];
  seed?: number;
  stream: boolean;
  includeUsage: boolean;
  /** Alternatives per token to report (0 = none); undefined = no logprobs at all. */
  topLogprobs?: number;
}

export interface ChatRequest extends SamplingRequest {
  model?: string;
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingRequest {
  model?: string;
  prompt: string;
}

type Json = Record<string, unknown>;

const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);
const kind = (x: unknown): string => (x === null ? "null" : Array.isArray(x) ? "an array" : typeof x === "object" ? "an object" : `a ${typeof x}`);

function num(b: Json, key: string, lo: number, hi: number, opts: { int?: boolean; loOpen?: boolean } = {}): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw invalid(`'${key}' must be a number, got ${kind(v)}`, key, "invalid_type");
  if (opts.int && !Number.isInteger(v)) throw invalid(`'${key}' must be an integer, got ${v}`, key, "invalid_type");
  if (v < lo || v > hi || (opts.loOpen && v === lo)) throw invalid(`'${key}' must be ${opts.loOpen ? `> ${lo}` : `≥ ${lo}`} and ≤ ${hi}, got ${v}`, key, "invalid_value");
  return v;
}

function bool(b: Json, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw invalid(`'${key}' must be true or false, got ${kind(v)}`, key, "invalid_type");
  return v;
}

/** Fields shared by both endpoints. `maxLogprobs`: the top_logprobs limit (20 chat, 5 completions). */
function sampling(b: Json, chat: boolean): SamplingRequest {
  if (b.model !== undefined && typeof b.model !== "string") throw invalid(`'model' must be a string, got ${kind(b.model)}`, "model", "invalid_type");
  const n = num(b, "n", 1, 128, { int: true });
  if (n !== undefined && n !== 1) throw invalid(`'n' must be 1 (mynah generates one choice per request), got ${n}`, "n", "invalid_value");
  const mt = num(b, "max_tokens", 1, 1e6, { int: true });
  const mct = num(b, "max_completion_tokens", 1, 1e6, { int: true });
  let stop: string[] = [];
  if (b.stop !== undefined && b.stop !== null) {
    if (typeof b.stop === "string") stop = [b.stop];
    else if (Array.isArray(b.stop) && b.stop.every((s) => typeof s === "string")) stop = b.stop as string[];
    else throw invalid(`'stop' must be a string or a list of strings, got ${kind(b.stop)}`, "stop", "invalid_type");
    if (stop.length > 4) throw invalid(`'stop' takes at most 4 sequences, got ${stop.length}`, "stop", "invalid_value");
    if (stop.some((s) => s.length === 0)) throw invalid(`'stop' sequences must not be empty`, "stop", "invalid_value");
  }
  const stream = bool(b, "stream") ?? false;
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (!isObj(b.stream_options)) throw invalid(`'stream_options' must be an object, got ${kind(b.stream_options)}`, "stream_options", "invalid_type");
    if (!stream) throw invalid(`'stream_options' is only allowed when 'stream' is true`, "stream_options", "invalid_value");
    const iu = b.stream_options.include_usage;
    if (iu !== undefined && typeof iu !== "boolean") throw invalid(`'stream_options.include_usage' must be true or false, got ${kind(iu)}`, "stream_options.include_usage", "invalid_type");
    includeUsage = iu === true;
  }
  let topLogprobs: number | undefined;
  if (chat) {
    const lp = bool(b, "logprobs");
    const tl = num(b, "top_logprobs", 0, 20, { int: true });
    if (tl !== undefined && !lp) throw invalid(`'top_logprobs' needs 'logprobs' set to true`, "top_logprobs", "invalid_value");
    if (lp) topLogprobs = tl ?? 0;
  } else {
    const lp = num(b, "logprobs", 0, 5, { int: true });
    if (lp !== undefined) topLogprobs = lp;
  }
  if (Array.isArray(b.tools) && b.tools.length > 0) throw invalid("tools are not supported by mynah's server", "tools", "unsupported_parameter");
  if (b.functions !== undefined) throw invalid("functions are not supported by mynah's server", "functions", "unsupported_parameter");
  if (isObj(b.response_format) && b.response_format.type !== "text") throw invalid("only response_format {\"type\": \"text\"} is supported", "response_format", "unsupported_parameter");
  return {
    temperature: num(b, "temperature", 0, 2) ?? 1,
    topP: num(b, "top_p", 0, 1, { loOpen: true }) ?? 1,
    topK: num(b, "top_k", 0, 1e6, { int: true }) ?? 0,
    repetitionPenalty: num(b, "repetition_penalty", 0, 10, { loOpen: true }) ?? 1,
    frequencyPenalty: num(b, "frequency_penalty", -2, 2) ?? 0,
    presencePenalty: num(b, "presence_penalty", -2, 2) ?? 0,
    maxTokens: mct ?? mt ?? (chat ? undefined : 16),
    stop,
    seed: num(b, "seed", -(2 ** 53), 2 ** 53, { int: true }),
    stream, includeUsage, topLogprobs,
  };
}

/** Parses the text of a JSON body; malformed JSON or a non-object is a 400. */
export function parseBody(text: string): Json {
  let b: unknown;
  try {
    b = JSON.parse(text);
  } catch (err) {
    throw invalid(`the request body is not valid JSON (${(err as Error).message})`, null, "invalid_json");
  }
  if (!isObj(b)) throw invalid(`the request body must be a JSON object, got ${kind(b)}`, null, "invalid_json");
  return b;
}

/** One message's content: a string, or an array of {"type": "text", "text"} parts (joined). */
function content(v: unknown, where: string): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    return v.map((p, j) => {
      if (!isObj(p)) throw invalid(`'${where}[${j}]' must be an object, got ${kind(p)}`, `${where}[${j}]`, "invalid_type");
      if (p.type !== "text") throw invalid(`'${where}[${j}].type' ${JSON.stringify(p.type)} is not supported (mynah's models read text only)`, `${where}[${j}].type`, "invalid_value");
      if (typeof p.text !== "string") throw invalid(`'${where}[${j}].text' must be a string, got ${kind(p.text)}`, `${where}[${j}].text`, "invalid_type");
      return p.text;
    }).join("");
  }
  throw invalid(`'${where}' must be a string or an array of text parts, got ${kind(v)}`, where, "invalid_type");
}

export function parseChatRequest(b: Json): ChatRequest {
  const s = sampling(b, true);
  if (!Array.isArray(b.messages)) throw invalid(b.messages === undefined ? "'messages' is required" : `'messages' must be an array, got ${kind(b.messages)}`, "messages", b.messages === undefined ? "missing_required_parameter" : "invalid_type");
  if (b.messages.length === 0) throw invalid("'messages' must contain at least one message", "messages", "empty_array");
  const messages: ChatMessage[] = b.messages.map((m: unknown, i: number) => {
    const at = `messages[${i}]`;
    if (!isObj(m)) throw invalid(`'${at}' must be an object, got ${kind(m)}`, at, "invalid_type");
    // OpenAI's newer "developer" role is the system prompt under another name.
    const role = m.role === "developer" ? "system" : m.role;
    if (role !== "system" && role !== "user" && role !== "assistant") {
      throw invalid(`'${at}.role' must be one of system, developer, user, assistant; got ${JSON.stringify(m.role)}`, `${at}.role`, "invalid_value");
    }
    if (m.content === undefined || m.content === null) throw invalid(`'${at}.content' is required`, `${at}.content`, "missing_required_parameter");
    return { role, content: content(m.content, `${at}.content`) };
  });
  if (messages[messages.length - 1].role === "assistant") {
    throw invalid("the last message must be from the user or the system (mynah does not continue a partial assistant message)", `messages[${messages.length - 1}].role`, "invalid_value");
  }
  return { ...s, model: b.model as string | undefined, messages };
}

export function parseCompletionRequest(b: Json): CompletionRequest {
  const s = sampling(b, false);
  let prompt: string;
  if (typeof b.prompt === "string") prompt = b.prompt;
  else if (Array.isArray(b.prompt) && b.prompt.length === 1 && typeof b.prompt[0] === "string") prompt = b.prompt[0];
  else if (b.prompt === undefined) throw invalid("'prompt' is required", "prompt", "missing_required_parameter");
  else throw invalid(`'prompt' must be a string (or a list of one string), got ${kind(b.prompt)}${Array.isArray(b.prompt) ? ` of ${b.prompt.length}` : ""}`, "prompt", "invalid_type");
  if (prompt.length === 0) throw invalid("'prompt' must not be empty", "prompt", "invalid_value");
  if (b.echo === true) throw invalid("'echo' is not supported", "echo", "unsupported_parameter");
  if (b.suffix !== undefined && b.suffix !== null) throw invalid("'suffix' is not supported", "suffix", "unsupported_parameter");
  const bestOf = num(b, "best_of", 1, 20, { int: true });
  if (bestOf !== undefined && bestOf !== 1) throw invalid("'best_of' must be 1", "best_of", "invalid_value");
  return { ...s, model: b.model as string | undefined, prompt };
}

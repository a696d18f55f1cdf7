/**
 * A multi-turn chat: the messages so far, rendered by the one chat template, generated with
 * a KV cache kept between turns (only each new turn is prefilled), and every reply screened
 * before it is shown. When the conversation outgrows the context window, the oldest turns
 * are dropped whole (a user message with its reply) and the system prompt is kept.
 */
import type { DecodeModel } from "../model/decode.ts";
import { createCache } from "../model/decode.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat, type ChatMessage } from "../data/chat-template.ts";
import { DEFAULT_GENERATE, generate, type GenerateOptions, type Generation, type ReusableCache } from "./generate.ts";

export interface ChatTurnResult {
  generation: Generation;
  /** Turns dropped from the front to fit the context window before this reply. */
  dropped: number;
  /** Prompt length in tokens. */
  promptTokens: number;
}

export interface ChatSessionOptions {
  system?: string;
  gen?: Partial<GenerateOptions>;
  /** Context window in tokens (default: the model's seqLen). */
  contextTokens?: number;
}

/** The longest context a chat session holds by default (its KV cache is allocated up front). */
export const DEFAULT_CHAT_CONTEXT = 8192;

/**
 * Renders the conversation for the next reply within `limit` tokens, `reserve` of them kept
 * for the reply: the chat template drops the oldest turns whole (the system prompt stays).
 * If the system prompt and the newest turn alone do not fit, an error says so.
 */
export function fitContext(tok: Tokenizer, messages: ChatMessage[], limit: number, reserve: number): { messages: ChatMessage[]; ids: number[]; dropped: number } {
  const r = renderChat(tok, messages, { addGenerationPrompt: true, maxTokens: Math.max(1, limit - reserve) });
  if (r.truncated) {
    throw new Error(`chat: the system prompt and the last message take more than ${limit - reserve} tokens; with ${reserve} ` +
      `kept for the reply they do not fit the ${limit}-token context window (shorten the message, or lower max new tokens)`);
  }
  // Mirror the template's dropping in the kept history: the first `dropped` turns go.
  const nSystem = messages[0]?.role === "system" ? 1 : 0;
  let rest = messages.slice(nSystem);
  for (let d = 0; d < r.dropped; d++) {
    const next = rest.findIndex((m, i) => i > 0 && m.role === "user");
    rest = next < 0 ? [] : rest.slice(next);
  }
  return { messages: [...messages.slice(0, nSystem), ...rest], ids: r.ids, dropped: r.dropped };
}

export class ChatSession {
  messages: ChatMessage[] = [];
  gen: GenerateOptions;
  private reuse: ReusableCache;
  private readonly limit: number;

  constructor(readonly model: DecodeModel, readonly tok: Tokenizer, opts: ChatSessionOptions = {}) {
    this.gen = { ...DEFAULT_GENERATE, temperature: 0.7, topK: 40, topP: 0.95, maxNewTokens: 200, seed: Date.now() % 2 ** 31, ...opts.gen };
    // Imported models declare long contexts (Qwen3: 40,960; Llama 3.1: 131,072), whose full KV
    // cache would take gigabytes; a chat keeps at most DEFAULT_CHAT_CONTEXT unless asked for more.
    this.limit = opts.contextTokens ?? Math.min(model.config.seqLen, DEFAULT_CHAT_CONTEXT);
    this.reuse = { cache: createCache(model, 1, this.limit), ids: [] };
    if (opts.system) this.messages.push({ role: "system", content: opts.system });
  }

  get system(): string | undefined {
    return this.messages[0]?.role === "system" ? this.messages[0].content : undefined;
  }

  /** Sets (or with "" removes) the system prompt, keeping the conversation. */
  setSystem(text: string): void {
    if (this.system !== undefined) this.messages.shift();
    if (text) this.messages.unshift({ role: "system", content: text });
  }

  /** Forgets the conversation (the system prompt stays). */
  reset(): void {
    this.messages = this.messages.filter((m) => m.role === "system");
  }

  /**
   * Adds the user's message, generates the reply (streamed through gen.onText) and adds it.
   * `shown` replaces the generated text in the history (the screened reply, so a blocked
   * reply is not fed back to the model).
   */
  send(user: string, onText?: (text: string) => void): ChatTurnResult {
    this.messages.push({ role: "user", content: user });
    const reserve = Math.min(this.gen.maxNewTokens, Math.floor(this.limit / 2));
    let fit;
    try {
      fit = fitContext(this.tok, this.messages, this.limit, reserve);
    } catch (err) {
      this.messages.pop();
      throw err;
    }
    this.messages = fit.messages;
    // The seed advances per turn so that replies differ while the session stays reproducible.
    const opts: GenerateOptions = { ...this.gen, maxNewTokens: Math.min(this.gen.maxNewTokens, this.limit - fit.ids.length), onText: onText ? (t) => onText(t) : undefined };
    const generation = generate(this.model, this.tok, fit.ids, opts, this.reuse);
    this.gen.seed = (this.gen.seed + 1) % 2 ** 31;
    this.messages.push({ role: "assistant", content: generation.text });
    return { generation, dropped: fit.dropped, promptTokens: fit.ids.length };
  }

  /** Replaces the last assistant message (with its screened version). */
  replaceLastReply(text: string): void {
    const last = this.messages[this.messages.length - 1];
    if (last?.role === "assistant") last.content = text;
  }
}

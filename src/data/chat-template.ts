/**
 * THE chat template function, used by SFT, evaluation, the CLI and the server alike: one
 * function renders a conversation into token ids plus the loss mask. mynah's own format is
 * ChatML (below); a model imported from Hugging Face brings its own Jinja template
 * (tokenizer_config.json's chat_template, on `tok.chat`), rendered with @huggingface/jinja —
 * see renderWithTemplate for how the loss mask is found there.
 *
 *   <|im_start|>system\nYou are terse.<|im_end|>\n
 *   <|im_start|>user\nHi<|im_end|>\n
 *   <|im_start|>assistant\nHello.<|im_end|>\n          ← loss on "Hello." and <|im_end|>
 *   <|im_start|>assistant\n                            ← generation prompt (addGenerationPrompt)
 *
 * Loss (mask = 1) is on exactly the assistant content tokens and the assistant's <|im_end|>:
 * the model learns what to say and when to stop. The "<|im_start|>assistant\n" header, the
 * "\n" after <|im_end|>, and everything in system and user messages carry no loss: the header
 * is always given by the prompt, and generation stops at <|im_end|>, so the "\n" after it is
 * never generated.
 *
 * Tokenization: <|im_start|> and <|im_end|> are single special ids; the header "role\n", the
 * content and the trailing "\n" are encoded as ordinary text (special-token text inside
 * content stays text, so a message cannot forge a turn). Header and content are encoded
 * separately so the generation prompt is an exact prefix of the rendered conversation: the
 * ids equal a Hugging Face tokenization of the rendered text (CHAT_TEMPLATE) except when the
 * content starts with a newline that the pre-tokenizer would join to the header's "\n".
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../tokenizer/types.ts";
import { isChatRole, type ChatMessage } from "./chat.ts";

export type { ChatMessage, ChatRole, Message } from "./chat.ts";

export const IM_START = "<|im_start|>";
export const IM_END = "<|im_end|>";

/**
 * The same template in Jinja, for tokenizer_config.json (`chat_template`): Hugging Face
 * `apply_chat_template` and @huggingface/jinja render exactly the text mynah renders.
 */
export const CHAT_TEMPLATE =
  "{%- for message in messages -%}" +
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}" +
  "{%- endfor -%}" +
  "{%- if add_generation_prompt -%}" +
  "{{- '<|im_start|>assistant\\n' -}}" +
  "{%- endif -%}";

export interface RenderOptions {
  /** Append "<|im_start|>assistant\n" so the model writes the next reply. */
  addGenerationPrompt?: boolean;
  /**
   * Fit the rendering in this many tokens: drop the oldest turns whole (a user message and
   * the replies after it), always keeping the system prompt and the last turn. If those alone
   * do not fit, the ids are cut at maxTokens and `truncated` is set.
   */
  maxTokens?: number;
}

export interface RenderedChat {
  /** [N] token ids. */
  ids: number[];
  /** [N] 1 where the token carries loss (assistant content and its <|im_end|>), else 0. */
  mask: Uint8Array;
  /** Turns dropped from the front to fit maxTokens. */
  dropped: number;
  /** True when even the kept turns did not fit and the tail was cut. */
  truncated: boolean;
}

/** The rendered text (what CHAT_TEMPLATE renders), for display and for the Jinja test. */
export function renderChatText(messages: readonly ChatMessage[], addGenerationPrompt = false): string {
  let s = "";
  for (const m of messages) s += `${IM_START}${m.role}\n${m.content}${IM_END}\n`;
  return addGenerationPrompt ? s + `${IM_START}assistant\n` : s;
}

function specialId(tok: Tokenizer, text: string): number {
  const id = tok.special.get(text);
  if (id === undefined) throw new Error(`renderChat: the tokenizer has no special token ${text} (train it with the default special tokens)`);
  return id;
}

/** Ids and mask of one message, appended to `ids`/`mask`. */
function renderMessage(tok: Tokenizer, m: ChatMessage, start: number, end: number, ids: number[], mask: number[]): void {
  const learn = m.role === "assistant" ? 1 : 0;
  const push = (xs: number[], bit: number): void => {
    for (const x of xs) {
      ids.push(x);
      mask.push(bit);
    }
  };
  push([start], 0);
  push(tok.encode(`${m.role}\n`), 0);
  push(tok.encode(m.content), learn);
  push([end], learn);
  push(tok.encode("\n"), 0);
}

/**
 * Renders a conversation (optionally a system message first, then turns) into ids and the
 * loss mask. Throws on a role other than system/user/assistant or non-string content; the
 * order of roles is checked by the readers (conversationProblem), not here, so that the CLI
 * can render partial conversations.
 */
export function renderChat(tok: Tokenizer, messages: readonly ChatMessage[], opts: RenderOptions = {}): RenderedChat {
  messages.forEach((m, i) => {
    if (!isChatRole(m.role)) throw new Error(`renderChat: messages[${i}].role is ${JSON.stringify(m.role)}; expected system, user or assistant`);
    if (typeof m.content !== "string") throw new Error(`renderChat: messages[${i}].content is not a string`);
  });
  if (usesOwnTemplate(tok)) return renderWithTemplate(tok, messages, opts);
  const start = specialId(tok, IM_START);
  const end = specialId(tok, IM_END);
  // Render each message once; dropping turns then only re-joins pieces.
  const pieces = messages.map((m) => {
    const ids: number[] = [];
    const mask: number[] = [];
    renderMessage(tok, m, start, end, ids, mask);
    return { role: m.role, ids, mask };
  });
  const prompt = opts.addGenerationPrompt ? [start, ...tok.encode("assistant\n")] : [];
  const nSystem = pieces.length > 0 && pieces[0].role === "system" ? 1 : 0;
  // Turn starts: each user message after the system prompt (or the first message when a
  // conversation does not open with a user message).
  const turnStarts: number[] = [];
  for (let i = nSystem; i < pieces.length; i++) if (i === nSystem || pieces[i].role === "user") turnStarts.push(i);
  const lenFrom = (from: number): number => {
    let n = prompt.length;
    for (let i = 0; i < nSystem; i++) n += pieces[i].ids.length;
    for (let i = from; i < pieces.length; i++) n += pieces[i].ids.length;
    return n;
  };
  let first = nSystem;
  let dropped = 0;
  const max = opts.maxTokens;
  if (max !== undefined) {
    if (!Number.isInteger(max) || max <= 0) throw new Error(`renderChat: maxTokens must be a positive integer, got ${max}`);
    while (lenFrom(first) > max && dropped + 1 < turnStarts.length) first = turnStarts[++dropped];
  }
  const ids: number[] = [];
  const mask: number[] = [];
  const take = (p: { ids: number[]; mask: number[] }): void => {
    for (let k = 0; k < p.ids.length; k++) {
      ids.push(p.ids[k]);
      mask.push(p.mask[k]);
    }
  };
  for (let i = 0; i < nSystem; i++) take(pieces[i]);
  for (let i = first; i < pieces.length; i++) take(pieces[i]);
  take({ ids: prompt, mask: prompt.map(() => 0) });
  let truncated = false;
  if (max !== undefined && ids.length > max) {
    ids.length = max;
    mask.length = max;
    truncated = true;
  }
  return { ids, mask: Uint8Array.from(mask), dropped, truncated };
}

// ---------------------------------------------------------------------------------------------
// A model's own Jinja template (Hugging Face models)

/** True when the tokenizer carries a chat template other than mynah's ChatML. */
export function usesOwnTemplate(tok: Tokenizer): boolean {
  return tok.chat !== undefined && tok.chat.template !== CHAT_TEMPLATE;
}

/** End-of-turn tokens of the common families; the loss mask of a reply ends after the first one. */
export const END_OF_TURN = ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "<|eom_id|>", "</s>"];

/** The special ids that end a reply with this tokenizer: the known end-of-turn tokens and its eos. */
export function endOfTurnIds(tok: Tokenizer): number[] {
  const names = [...END_OF_TURN, ...(tok.chat?.eosToken ? [tok.chat.eosToken] : [])];
  return [...new Set(names.map((s) => tok.special.get(s)).filter((x): x is number => x !== undefined))];
}

/** The id that pads chat rows (never trained on): pad, else eos, else <|endoftext|>. */
export function chatPadId(tok: Tokenizer): number | undefined {
  for (const s of [tok.chat?.padToken, tok.chat?.eosToken, "<|endoftext|>", IM_END]) {
    if (s !== undefined && tok.special.has(s)) return tok.special.get(s)!;
  }
  return undefined;
}

const compiled = new Map<string, Template>();

/** The text a model's own template renders (as transformers' apply_chat_template(tokenize=False)). */
export function renderTemplateText(tok: Tokenizer, messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  const chat = tok.chat;
  if (!chat) throw new Error("renderTemplateText: the tokenizer has no chat template");
  let t = compiled.get(chat.template);
  if (!t) {
    try {
      t = new Template(chat.template);
    } catch (err) {
      throw new Error(`tokenizer_config.json: chat_template does not parse (${(err as Error).message})`);
    }
    compiled.set(chat.template, t);
  }
  try {
    return t.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: chat.bosToken ?? "", eos_token: chat.eosToken ?? "", pad_token: chat.padToken ?? "",
    });
  } catch (err) {
    throw new Error(`tokenizer_config.json: chat_template failed to render (${(err as Error).message})`);
  }
}

/**
 * Renders with the model's own template. The text is the template's; the loss mask is found
 * without knowing the template, by rendering prefixes:
 *   full  = render(all messages)
 *   start = render(messages before reply i, add_generation_prompt) — the prompt the model sees
 *           when it writes reply i; where it is a prefix of full (the usual case), reply i
 *           starts right after it (otherwise after the longest common prefix: Qwen3 re-renders
 *           earlier turns without their thinking block).
 *   end   = the end of reply i's content inside full, plus the end-of-turn token right after it.
 * Loss is on [start, end) of each reply: its content, anything the template adds before it
 * that the prompt does not give (Qwen3's empty <think></think>), and the end-of-turn token.
 * The text is cut at those points and each piece encoded separately with special tokens
 * allowed, so the ids of a prompt are exactly what inference feeds for the same prompt.
 */
function renderWithTemplate(tok: Tokenizer, messages: readonly ChatMessage[], opts: RenderOptions): RenderedChat {
  const nSystem = messages.length > 0 && messages[0].role === "system" ? 1 : 0;
  const turnStarts: number[] = [];
  for (let i = nSystem; i < messages.length; i++) if (i === nSystem || messages[i].role === "user") turnStarts.push(i);
  const build = (msgs: readonly ChatMessage[]): { ids: number[]; mask: number[] } => {
    const gen = opts.addGenerationPrompt === true;
    const full = renderTemplateText(tok, msgs, gen);
    const cuts: [number, number][] = []; // [start, end) of each reply
    let from = 0;
    for (let i = 0; i < msgs.length; i++) {
      if (msgs[i].role !== "assistant") continue;
      const prompt = renderTemplateText(tok, msgs.slice(0, i), true);
      let start = 0;
      while (start < prompt.length && start < full.length && prompt.charCodeAt(start) === full.charCodeAt(start)) start++;
      start = Math.max(start, from);
      // The reply as written, else as the template trims it (Llama 3 does).
      let content = msgs[i].content;
      let at = full.indexOf(content, start);
      if (at < 0) {
        content = content.trim();
        at = content ? full.indexOf(content, start) : start;
      }
      if (at < 0) throw new Error(`renderChat: the chat template does not render messages[${i}] (the assistant reply) verbatim, so its loss mask cannot be found`);
      let end = at + content.length;
      // Then the end-of-turn token (after any whitespace the template puts before it).
      let k = end;
      while (k < full.length && /\s/.test(full[k])) k++;
      for (const eot of [...END_OF_TURN, tok.chat?.eosToken ?? ""]) {
        if (eot && full.startsWith(eot, k) && tok.special.has(eot)) {
          end = k + eot.length;
          break;
        }
      }
      cuts.push([start, end]);
      from = end;
    }
    const ids: number[] = [], mask: number[] = [];
    const piece = (a: number, b: number, bit: number): void => {
      if (b <= a) return;
      for (const id of tok.encode(full.slice(a, b), { allowedSpecial: "all" })) {
        ids.push(id);
        mask.push(bit);
      }
    };
    let pos = 0;
    for (const [a, b] of cuts) {
      piece(pos, a, 0);
      piece(a, b, 1);
      pos = b;
    }
    piece(pos, full.length, 0);
    return { ids, mask };
  };
  const max = opts.maxTokens;
  if (max !== undefined && (!Number.isInteger(max) || max <= 0)) throw new Error(`renderChat: maxTokens must be a positive integer, got ${max}`);
  const sys = messages.slice(0, nSystem);
  let dropped = 0;
  let r = build(messages);
  // Drop the oldest turns whole (keeping the system prompt and the last turn) until it fits.
  while (max !== undefined && r.ids.length > max && dropped + 1 < turnStarts.length) {
    dropped++;
    r = build([...sys, ...messages.slice(turnStarts[dropped])]);
  }
  let truncated = false;
  if (max !== undefined && r.ids.length > max) {
    r.ids.length = max;
    r.mask.length = max;
    truncated = true;
  }
  return { ids: r.ids, mask: Uint8Array.from(r.mask), dropped, truncated };
}

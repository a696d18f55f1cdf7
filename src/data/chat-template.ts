/**
 * THE chat template (ChatML), used by SFT, evaluation, the CLI and the server alike: one
 * function renders a conversation into token ids plus the loss mask.
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

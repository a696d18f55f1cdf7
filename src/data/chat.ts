/**
 * Conversations: the message type every chat reader produces and the chat template renders,
 * and the one place that decides what a well-formed conversation is.
 */

export type ChatRole = "system" | "user" | "assistant";

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** The same type under the name the issue uses. */
export type Message = ChatMessage;

export const CHAT_ROLES: readonly ChatRole[] = ["system", "user", "assistant"];

/** True when `r` is one of the three chat roles. */
export function isChatRole(r: unknown): r is ChatRole {
  return r === "system" || r === "user" || r === "assistant";
}

/**
 * Checks a conversation for training: an optional system message first, then user and
 * assistant strictly alternating, starting with user and ending with assistant; no empty
 * content. Returns null when fine, else a message naming the offending index
 * (callers prefix it with file:line).
 */
export function conversationProblem(messages: readonly ChatMessage[]): string | null {
  if (messages.length === 0) return "the conversation has no messages";
  let i = 0;
  if (messages[0].role === "system") i = 1;
  if (i >= messages.length) return "the conversation has only a system message";
  let want: ChatRole = "user";
  for (; i < messages.length; i++) {
    const m = messages[i];
    if (m.role === "system") return `messages[${i}]: a system message is only allowed first`;
    if (m.role !== want) return `messages[${i}]: expected a ${want} message, got ${m.role} (roles must alternate user, assistant, ...)`;
    want = want === "user" ? "assistant" : "user";
  }
  if (messages[messages.length - 1].role !== "assistant") return `messages[${messages.length - 1}]: the conversation ends on a user message (nothing to learn)`;
  for (let j = 0; j < messages.length; j++) if (messages[j].content.trim() === "") return `messages[${j}] (${messages[j].role}): empty content`;
  return null;
}

/**
 * A preference pair: the conversation so far (ending with a user turn) and two continuations,
 * the preferred one and the other (each one or more messages, starting and ending with the
 * assistant).
 */
export interface PreferencePair {
  prompt: ChatMessage[];
  chosen: ChatMessage[];
  rejected: ChatMessage[];
}

/**
 * Checks a preference pair: the prompt is a conversation ending with a user turn, each reply
 * continues it into a well-formed conversation, and the replies differ. Null when fine.
 */
export function preferencePairProblem(p: PreferencePair): string | null {
  if (p.prompt.length === 0) return "the prompt has no messages";
  const last = p.prompt[p.prompt.length - 1];
  if (last.role !== "user") return `the prompt ends with a ${last.role} message; it must end with the user's turn`;
  for (const side of ["chosen", "rejected"] as const) {
    const r = p[side];
    if (r.length === 0) return `${side}: no reply`;
    const problem = conversationProblem([...p.prompt, ...r]);
    if (problem) {
      // Name the index inside the reply when the problem is there.
      const m = /^messages\[(\d+)\]/.exec(problem);
      if (m && Number(m[1]) >= p.prompt.length) return `${side}[${Number(m[1]) - p.prompt.length}]` + problem.slice(m[0].length);
      return m ? `prompt[${m[1]}]` + problem.slice(m[0].length) : problem;
    }
  }
  const same = p.chosen.length === p.rejected.length && p.chosen.every((m, i) => m.role === p.rejected[i].role && m.content === p.rejected[i].content);
  if (same) return "chosen and rejected are the same reply";
  return null;
}

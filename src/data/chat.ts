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

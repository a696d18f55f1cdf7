/**
 * `mynah feedback export`: turns what people said and rated in the server's database into the
 * next round's training data (formats in docs/formats.md):
 *
 *   DIR/conversations.jsonl  {"messages": [...]} per conversation (its shown branch), OpenAI
 *                            roles; a corrected reply replaces the model's. The branch is cut
 *                            before a reply rated thumbs-down without a correction (no bad
 *                            replies taught); a branch with no reply left is skipped.
 *                            `mynah sft --data DIR/conversations.jsonl` reads it as is.
 *   DIR/preferences.jsonl    {"messages": [...prompt, ending with the user turn],
 *                             "chosen": {"role": "assistant", "content"}, "rejected": {...}}:
 *                            one pair per correction (the correction over the model's reply),
 *                            and one per (thumbs-up, thumbs-down) pair of replies to the same
 *                            prompt (regenerated siblings).
 *
 * Both files are written atomically (temp file, fsync, rename).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { Store, type StoredMessage } from "./store.ts";

export interface FeedbackExport {
  conversations: number;
  preferences: number;
  /** Of the preferences: from corrections, from thumbs pairs. */
  fromCorrections: number;
  fromRatings: number;
  /** Messages in the exported conversations. */
  messages: number;
}

type OpenAiMessage = { role: "system" | "user" | "assistant"; content: string };

/** A message as training text: a correction replaces the model's reply. */
const shownText = (m: StoredMessage): string => (m.role === "assistant" && m.correction ? m.correction : m.content);

export function exportFeedback(opts: { db: string; out: string }): FeedbackExport {
  if (opts.db !== ":memory:" && !existsSync(opts.db)) throw new Error(`feedback export: the database ${opts.db} does not exist`);
  const store = new Store(opts.db);
  try {
    const convLines: string[] = [], prefLines: string[] = [];
    let fromCorrections = 0, fromRatings = 0, nMessages = 0;
    for (const conv of store.listConversations("", "all").reverse()) {
      const all = store.messages(conv.id);
      const byId = new Map(all.map((m) => [m.id, m]));
      const system: OpenAiMessage[] = conv.system ? [{ role: "system", content: conv.system }] : [];
      /** The prompt that led to a reply: system + the branch up to (and with) its parent user turn. */
      const promptOf = (reply: StoredMessage): OpenAiMessage[] => {
        const chain: StoredMessage[] = [];
        for (let id = reply.parent_id; id; id = byId.get(id)?.parent_id ?? null) {
          const m = byId.get(id);
          if (!m) break;
          chain.push(m);
        }
        return [...system, ...chain.reverse().map((m) => ({ role: m.role, content: shownText(m) }))];
      };

      // conversations.jsonl: the shown branch, cut before an uncorrected thumbs-down reply.
      const branch = store.branch(conv.leaf_id);
      const kept: OpenAiMessage[] = [...system];
      for (let i = 0; i < branch.length; i++) {
        const m = branch[i];
        if (m.role === "assistant" && m.rating === -1 && !m.correction) {
          if (kept[kept.length - 1]?.role === "user") kept.pop();
          break;
        }
        kept.push({ role: m.role, content: shownText(m) });
      }
      while (kept.length > 0 && kept[kept.length - 1].role !== "assistant") kept.pop();
      if (kept.some((m) => m.role === "assistant")) {
        convLines.push(JSON.stringify({ messages: kept }));
        nMessages += kept.length;
      }

      // preferences.jsonl: corrections, then thumbs-up over thumbs-down siblings.
      const replies = all.filter((m) => m.role === "assistant" && m.parent_id);
      for (const r of replies) {
        if (r.correction && r.correction !== r.content) {
          prefLines.push(JSON.stringify({ messages: promptOf(r), chosen: { role: "assistant", content: r.correction }, rejected: { role: "assistant", content: r.content } }));
          fromCorrections++;
        }
      }
      const byParent = new Map<string, StoredMessage[]>();
      for (const r of replies) byParent.set(r.parent_id!, [...(byParent.get(r.parent_id!) ?? []), r]);
      for (const sibs of byParent.values()) {
        const ups = sibs.filter((m) => m.rating === 1), downs = sibs.filter((m) => m.rating === -1);
        for (const up of ups) for (const down of downs) {
          if (up.content === down.content) continue;
          prefLines.push(JSON.stringify({ messages: promptOf(up), chosen: { role: "assistant", content: up.content }, rejected: { role: "assistant", content: down.content } }));
          fromRatings++;
        }
      }
    }
    mkdirSync(opts.out, { recursive: true });
    writeAtomic(join(opts.out, "conversations.jsonl"), convLines.map((l) => l + "\n").join(""));
    writeAtomic(join(opts.out, "preferences.jsonl"), prefLines.map((l) => l + "\n").join(""));
    return { conversations: convLines.length, preferences: prefLines.length, fromCorrections, fromRatings, messages: nMessages };
  } finally {
    store.close();
  }
}

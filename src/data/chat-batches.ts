/**
 * Supervised fine-tuning batches: conversations rendered by the chat template into ids and
 * the loss mask, laid out in rows of T + 1 tokens, and shifted into inputs and targets with
 * target −1 wherever the next token carries no loss (system and user text, headers, padding).
 *
 *  - packed: whole conversations placed one after another in a row while they fit (a
 *    conversation that does not fit starts the next row), the rest padded;
 *  - padded: one conversation per row.
 *
 * A conversation longer than T + 1 was already cut to fit by renderChat (oldest turns dropped).
 * Order: a seeded permutation per epoch; state() is (epoch, next conversation).
 */
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat } from "./chat-template.ts";
import type { ChatMessage } from "./chat.ts";
import { epochOrder } from "./loader.ts";
import type { Batch, BatchSource } from "./types.ts";
import { cleanDocs, countingOnBad, type SourceStats } from "./clean.ts";
import { DataError, type OnBad } from "./errors.ts";
import { expandInputs } from "./inputs.ts";
import { readFiles, type Doc, type InputFormat } from "./readers.ts";

export interface ChatExample {
  /** [N] token ids of the rendered conversation. */
  ids: Int32Array;
  /** [N] 1 where the token carries loss. */
  mask: Uint8Array;
}

export type ChatPacking = "packed" | "padded";

export interface ChatSourceState {
  kind: "chat";
  examples: number;
  seed: number;
  packing: ChatPacking;
  epoch: number;
  next: number;
}

export interface ChatSource extends BatchSource {
  readonly examples: readonly ChatExample[];
  state(): ChatSourceState;
}

/**
 * Renders conversations for rows of T + 1 tokens (seqLen = T). Conversations left with no
 * loss token after fitting are dropped (counted in `dropped`).
 */
export function renderExamples(tok: Tokenizer, convs: Iterable<ChatMessage[]>, seqLen: number): { examples: ChatExample[]; dropped: number; truncated: number } {
  const examples: ChatExample[] = [];
  let dropped = 0;
  let truncated = 0;
  for (const c of convs) {
    const r = renderChat(tok, c, { maxTokens: seqLen + 1 });
    if (r.dropped > 0 || r.truncated) truncated++;
    // A loss token at position 0 could never be a target; require one at t ≥ 1.
    if (!r.mask.some((b, i) => b === 1 && i > 0)) {
      dropped++;
      continue;
    }
    examples.push({ ids: Int32Array.from(r.ids), mask: r.mask });
  }
  return { examples, dropped, truncated };
}

/** Inputs and targets of one row from a sequence of ≤ T + 1 tokens; the rest padded. */
function fillRow(seq: ArrayLike<number>, mask: ArrayLike<number>, len: number, T: number, pad: number, inputs: Int32Array, targets: Int32Array, row: number): void {
  const o = row * T;
  for (let t = 0; t < T; t++) {
    inputs[o + t] = t < len ? seq[t] : pad;
    targets[o + t] = t + 1 < len && mask[t + 1] ? seq[t + 1] : -1;
  }
}

/**
 * A BatchSource over rendered conversations. `pad` is the id put in unused input slots
 * (their targets are −1, so any id works; <|endoftext|> by convention).
 */
export function openChatSource(examples: ChatExample[], opts: { seed: number; packing?: ChatPacking; pad: number }): ChatSource {
  if (examples.length === 0) throw new Error("chat source: no conversations to train on");
  const packing = opts.packing ?? "packed";
  const seed = opts.seed;
  let epoch = 0;
  let order = epochOrder(examples.length, seed, 0);
  let next = 0;
  const peek = (): ChatExample => examples[order[next]];
  const advance = (): void => {
    if (++next >= examples.length) {
      next = 0;
      order = epochOrder(examples.length, seed, ++epoch);
    }
  };
  return {
    examples,
    nextBatch(B: number, T: number): Batch {
      const inputs = new Int32Array(B * T);
      const targets = new Int32Array(B * T);
      const seq = new Int32Array(T + 1);
      const mask = new Uint8Array(T + 1);
      for (let b = 0; b < B; b++) {
        let len = 0;
        // Always take one conversation; while packing, add more while they fit whole.
        do {
          const ex = peek();
          const n = Math.min(ex.ids.length, T + 1);
          if (len > 0 && len + n > T + 1) break;
          seq.set(ex.ids.subarray(0, n), len);
          mask.set(ex.mask.subarray(0, n), len);
          len += n;
          advance();
        } while (packing === "packed" && len < T + 1);
        fillRow(seq, mask, len, T, opts.pad, inputs, targets, b);
      }
      return { inputs, targets };
    },
    state(): ChatSourceState {
      return { kind: "chat", examples: examples.length, seed, packing, epoch, next };
    },
    restore(s: unknown): void {
      const st = s as Partial<ChatSourceState>;
      if (!st || st.kind !== "chat" || st.examples !== examples.length || st.seed !== seed || st.packing !== packing)
        throw new Error(`restore: position ${JSON.stringify(s)} is not for this chat source (${examples.length} conversations, seed ${seed}, ${packing})`);
      if (st.epoch !== epoch) order = epochOrder(examples.length, seed, st.epoch!);
      epoch = st.epoch!;
      next = st.next!;
    },
  };
}

export interface LoadedConversations {
  train: ChatMessage[][];
  val: ChatMessage[][];
  stats: SourceStats[];
  skipped: number;
}

/** Preference pairs stop SFT at their first record (a whole file of them is the usual mistake). */
async function* refusePreferencePairs(docs: AsyncIterable<Doc>): AsyncGenerator<Doc> {
  for await (const d of docs) {
    if (d.preference)
      throw new DataError(d.file, d.line,
        `a preference pair (the record has "chosen" and "rejected" replies): it ranks two replies, it is not a conversation to imitate, so it is not supervised fine-tuning data; use it for preference tuning, and give mynah sft conversations`, d.unit);
    yield d;
  }
}

/**
 * Reads conversations (any chat format the readers know), cleans them and splits them by
 * content hash into train and val. Plain-text documents and preference pairs are refused:
 * SFT needs conversations whose assistant turns are the replies to learn.
 */
export async function loadConversations(
  inputs: string[],
  opts: { valFraction: number; seed: number; format?: InputFormat; skipBad?: boolean; onSkip?: (e: DataError) => void },
): Promise<LoadedConversations> {
  const files = expandInputs(inputs);
  const stats = new Map<string, SourceStats>();
  let skipped = 0;
  const onBad: OnBad = opts.skipBad ? (e) => (skipped++, opts.onSkip?.(e)) : undefined;
  const out: LoadedConversations = { train: [], val: [], stats: [], skipped: 0 };
  const docs = cleanDocs(refusePreferencePairs(readFiles(files, { format: opts.format, onBad: countingOnBad(stats, onBad) })), { valFraction: opts.valFraction, seed: opts.seed, onBad }, stats);
  for await (const d of docs) {
    if (d.kind === "preference") throw new Error(`${d.file}:${d.line}: a preference pair (chosen/rejected): that is data for \`mynah dpo\`, not for SFT`);
    if (d.kind !== "chat") throw new Error(`${d.file}:${d.line}: a plain-text document; fine-tuning needs conversations (chat JSONL, ShareGPT, Alpaca or Parquet with messages)`);
    out[d.split].push(d.messages);
  }
  out.stats = [...stats.values()];
  out.skipped = skipped;
  return out;
}

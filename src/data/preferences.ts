/**
 * Preference pairs for DPO: read (any container the readers know, the "preference" record
 * shape of records.ts), cleaned, deduplicated and split by prompt; rendered by the one chat
 * template into two token sequences per pair whose loss mask covers the reply only; and laid
 * out in batches of 2B rows (the B chosen replies, then the B rejected ones).
 *
 *   prompt   <|im_start|>user\nHi<|im_end|>\n                       mask 0
 *   chosen   <|im_start|>assistant\nHello!<|im_end|>\n              mask 1 on "Hello!<|im_end|>"
 *
 * A message renders to the same ids wherever it sits, so the prompt and each reply are rendered
 * separately and joined; the reply's mask is the template's (assistant content + <|im_end|>),
 * and the prompt carries no loss even where it holds earlier assistant turns.
 */
import { basename } from "node:path";
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat } from "./chat-template.ts";
import type { ChatMessage, PreferencePair } from "./chat.ts";
import { cleanDocs, countingOnBad, type SourceStats } from "./clean.ts";
import { DataError, type OnBad } from "./errors.ts";
import { expandInputs } from "./inputs.ts";
import { epochOrder } from "./loader.ts";
import { readFiles } from "./readers.ts";
import type { Batch, BatchSource } from "./types.ts";

export type { PreferencePair } from "./chat.ts";

/** A pair with its content hash (the key of the cached reference log-probs). */
export interface KeyedPair extends PreferencePair {
  hash: string;
  file: string;
  line: number;
}

export interface LoadedPreferences {
  train: KeyedPair[];
  val: KeyedPair[];
  stats: SourceStats[];
  skipped: number;
}

/**
 * Reads preference pairs from files, folders or globs (TRL shape, Anthropic HH transcripts,
 * `mynah feedback export`'s preferences.jsonl; JSONL, JSON arrays or Parquet), cleans them and
 * splits them by prompt hash. A record that is not a pair is a DataError naming file:line.
 */
export async function loadPreferences(
  inputs: string[],
  opts: { valFraction: number; seed: number; skipBad?: boolean; onSkip?: (e: DataError) => void },
): Promise<LoadedPreferences> {
  const files = expandInputs(inputs);
  const stats = new Map<string, SourceStats>();
  let skipped = 0;
  const onBad: OnBad = opts.skipBad ? (e) => (skipped++, opts.onSkip?.(e)) : undefined;
  const out: LoadedPreferences = { train: [], val: [], stats: [], skipped: 0 };
  const docs = cleanDocs(readFiles(files, { format: "auto", onBad: countingOnBad(stats, onBad) }), { valFraction: opts.valFraction, seed: opts.seed, onBad }, stats);
  for await (const d of docs) {
    if (d.kind !== "preference") {
      const what = d.kind === "chat" ? "a conversation without \"chosen\"/\"rejected\"" : "plain text";
      throw new DataError(d.file, d.line, `${what} in ${basename(d.file)}: DPO needs preference pairs ({"prompt"|"messages", "chosen", "rejected"})`, d.unit);
    }
    out[d.split].push({ prompt: d.prompt, chosen: d.chosen, rejected: d.rejected, hash: d.hash, file: d.file, line: d.line });
  }
  out.stats = [...stats.values()];
  out.skipped = skipped;
  return out;
}

/** One side of a rendered pair: ids [N ≤ T + 1] and the loss mask (reply tokens only). */
export interface ReplySeq {
  ids: Int32Array;
  mask: Uint8Array;
  /** Tokens carrying loss. */
  tokens: number;
}

export interface RenderedPair {
  chosen: ReplySeq;
  rejected: ReplySeq;
  /** The prompt lost turns or tokens, or a reply was cut, to fit T + 1 tokens. */
  truncated: boolean;
}

/**
 * Renders a prompt and one reply into at most maxTokens ids, loss only on the reply. When
 * they do not fit: the prompt's oldest turns go first (system prompt kept), then the prompt
 * keeps only its last tokens (at least half the budget stays for it), then the reply's tail
 * is cut.
 */
export function renderReply(tok: Tokenizer, prompt: readonly ChatMessage[], reply: readonly ChatMessage[], maxTokens: number): ReplySeq & { truncated: boolean } {
  const r = renderChat(tok, reply);
  let truncated = false;
  const promptBudget = Math.max(maxTokens - r.ids.length, Math.floor(maxTokens / 2));
  let p = renderChat(tok, prompt, { maxTokens: promptBudget });
  let pids = p.ids;
  if (p.dropped > 0) truncated = true;
  if (p.truncated) {
    // Keep the end of the prompt (the question being answered), not its beginning.
    p = renderChat(tok, prompt);
    pids = p.ids.slice(p.ids.length - promptBudget);
    truncated = true;
  }
  const keep = Math.min(r.ids.length, maxTokens - pids.length);
  if (keep < r.ids.length) truncated = true;
  const n = pids.length + keep;
  const ids = new Int32Array(n);
  const mask = new Uint8Array(n);
  ids.set(pids, 0);
  ids.set(r.ids.slice(0, keep), pids.length);
  mask.set(r.mask.subarray(0, keep), pids.length);
  let tokens = 0;
  for (let i = 1; i < n; i++) tokens += mask[i];
  return { ids, mask, tokens, truncated };
}

/** Both sides of a pair in at most seqLen + 1 tokens each. */
export function renderPair(tok: Tokenizer, pair: PreferencePair, seqLen: number): RenderedPair {
  const c = renderReply(tok, pair.prompt, pair.chosen, seqLen + 1);
  const r = renderReply(tok, pair.prompt, pair.rejected, seqLen + 1);
  return { chosen: c, rejected: r, truncated: c.truncated || r.truncated };
}

/** A batch of P pairs: rows 0..P−1 chosen, P..2P−1 rejected, each Tb ≤ T tokens. */
export interface PairBatch extends Batch {
  /** Pairs in the batch. */
  pairs: number;
  /** Row length of this batch: the longest sequence in it, minus one (≤ the requested T). */
  T: number;
  /** Index of each pair in the source's examples. */
  index: Int32Array;
}

/**
 * Inputs and targets of 2·P rows from rendered pairs; targets −1 off the reply. Row length is
 * that of the longest sequence in the batch, so short pairs cost little.
 */
export function pairBatch(examples: readonly RenderedPair[], index: ArrayLike<number>, pad: number): PairBatch {
  const P = index.length;
  let T = 1;
  for (let i = 0; i < P; i++) {
    const e = examples[index[i]];
    T = Math.max(T, e.chosen.ids.length - 1, e.rejected.ids.length - 1);
  }
  const inputs = new Int32Array(2 * P * T).fill(pad);
  const targets = new Int32Array(2 * P * T).fill(-1);
  const put = (s: ReplySeq, row: number): void => {
    const o = row * T;
    for (let t = 0; t < s.ids.length - 1; t++) {
      inputs[o + t] = s.ids[t];
      if (s.mask[t + 1]) targets[o + t] = s.ids[t + 1];
    }
  };
  for (let i = 0; i < P; i++) {
    put(examples[index[i]].chosen, i);
    put(examples[index[i]].rejected, P + i);
  }
  return { inputs, targets, pairs: P, T, index: Int32Array.from(index) };
}

export interface PairSourceState {
  kind: "pairs";
  examples: number;
  seed: number;
  epoch: number;
  next: number;
}

export interface PairSource extends BatchSource {
  readonly examples: readonly RenderedPair[];
  /** B pairs (2B rows); T is the most tokens per row. */
  nextBatch(B: number, T: number): PairBatch;
  state(): PairSourceState;
}

/** Pairs in a seeded order per epoch; the state is (epoch, next pair). */
export function openPairSource(examples: RenderedPair[], opts: { seed: number; pad: number }): PairSource {
  if (examples.length === 0) throw new Error("pair source: no preference pairs to train on");
  const seed = opts.seed;
  let epoch = 0;
  let order = epochOrder(examples.length, seed, 0);
  let next = 0;
  return {
    examples,
    nextBatch(B: number, T: number): PairBatch {
      const index = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        index[b] = order[next];
        if (++next >= examples.length) {
          next = 0;
          order = epochOrder(examples.length, seed, ++epoch);
        }
      }
      const batch = pairBatch(examples, index, opts.pad);
      if (batch.T > T) throw new Error(`pair source: a pair has ${batch.T + 1} tokens, more than T + 1 = ${T + 1}`);
      return batch;
    },
    state: (): PairSourceState => ({ kind: "pairs", examples: examples.length, seed, epoch, next }),
    restore(s: unknown): void {
      const st = s as Partial<PairSourceState>;
      if (!st || st.kind !== "pairs" || st.examples !== examples.length || st.seed !== seed)
        throw new Error(`restore: position ${JSON.stringify(s)} is not for this pair source (${examples.length} pairs, seed ${seed})`);
      if (st.epoch !== epoch) order = epochOrder(examples.length, seed, st.epoch!);
      epoch = st.epoch!;
      next = st.next!;
    },
  };
}

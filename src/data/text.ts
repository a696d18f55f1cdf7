/**
 * Plain-text training data: one or more text files, tokenized whole (by default with a
 * character-level tokenizer over the text, as nanoGPT's shakespeare_char), split into the
 * first (1 − valFraction) of the tokens for training and the rest for validation.
 *
 * A text source cuts batches from a token array:
 *  - "random" order (training): each row starts at an offset drawn from a seeded generator,
 *    as nanoGPT's get_batch; the position is the generator's state, so it restores exactly.
 *  - "sequential" order (evaluation): windows `stride` tokens apart (default T: consecutive,
 *    non-overlapping), wrapping around. A larger stride spreads a fixed number of evaluation
 *    windows over the whole split, so the estimate is not of its first pages only.
 * Row r of a batch: inputs = ids[o_r .. o_r+T−1], targets = ids[o_r+1 .. o_r+T].
 */
import { readFileSync } from "node:fs";
import { seededRng, type RngState } from "../core/rng.ts";
import { charTokenizerFor, type CharTokenizer } from "../tokenizer/char.ts";
import type { Batch, BatchSource } from "./types.ts";

export type TextOrder = "random" | "sequential";

export interface TextSourceState {
  kind: "text";
  order: TextOrder;
  seed: number;
  /** Tokens in the source (checked on restore). */
  tokens: number;
  rng: RngState;
  /** Next window's start (sequential order). */
  offset: number;
}

export interface TextSource extends BatchSource {
  readonly tokens: number;
  state(): TextSourceState;
}

/** A batch source over `ids` (at least T + 1 of them per row asked). */
export function openTextSource(ids: Int32Array, opts: { seed: number; order?: TextOrder; stride?: number }): TextSource {
  const order = opts.order ?? "random";
  const rng = seededRng(opts.seed);
  let offset = 0;
  const n = ids.length;
  return {
    tokens: n,
    nextBatch(B: number, T: number): Batch {
      if (n < T + 1) throw new Error(`text source: ${n} tokens are too few for sequences of ${T} (need ${T + 1})`);
      const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        let o: number;
        if (order === "random") o = rng.int(n - T);
        else {
          if (offset + T + 1 > n) offset = 0;
          o = offset;
          offset += Math.max(1, opts.stride ?? T);
        }
        inputs.set(ids.subarray(o, o + T), b * T);
        targets.set(ids.subarray(o + 1, o + T + 1), b * T);
      }
      return { inputs, targets };
    },
    state: () => ({ kind: "text", order, seed: opts.seed, tokens: n, rng: rng.state(), offset }),
    restore(st: unknown): void {
      const s = st as TextSourceState;
      if (!s || s.kind !== "text") throw new Error(`text source: cannot restore from ${JSON.stringify(st)?.slice(0, 80)}`);
      if (s.tokens !== n) throw new Error(`text source: the saved position is for ${s.tokens} tokens but the data has ${n} (did the text files change?)`);
      if (s.order !== order) throw new Error(`text source: the saved position is for ${s.order} order, not ${order}`);
      rng.restore(s.rng);
      offset = s.offset;
    },
  };
}

export interface TextCorpus {
  tokenizer: CharTokenizer;
  train: Int32Array;
  val: Int32Array;
  /** UTF-8 bytes of the validation text (for bits per byte). */
  valBytes: number;
  files: string[];
}

/** Reads text files (concatenated in order) into a character-level corpus split train/val. */
export function loadTextCorpus(files: readonly string[], valFraction: number): TextCorpus {
  if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`text corpus: the validation fraction must be in [0, 1), got ${valFraction}`);
  const parts: string[] = [];
  for (const f of files) {
    try {
      parts.push(readFileSync(f, "utf8"));
    } catch (err) {
      throw new Error(`${f}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const text = parts.join("");
  if (text.length === 0) throw new Error(`text corpus: ${files.join(", ")} ${files.length === 1 ? "is" : "are"} empty`);
  const tokenizer = charTokenizerFor(text);
  const all = Int32Array.from(tokenizer.encode(text));
  const cut = Math.floor(all.length * (1 - valFraction));
  const val = all.slice(cut);
  return { tokenizer, train: all.slice(0, cut), val, valBytes: tokenizer.decodeBytes(val).length, files: [...files] };
}

/**
 * Scoring token sequences under a model, batched on the KV-cached inference forward:
 * many sequences of different lengths are fed in one `forwardCached` call (each in its own
 * cache slot, every position's logits returned), so the matrix products run over all their
 * tokens at once.
 *
 * For a sequence ids[0..n) the model's row t (after reading ids[0..t]) predicts ids[t+1]:
 *
 *   log p(ids[t] | ids[<t]) = logits[t−1][ids[t]] − logsumexp(logits[t−1])      (float64)
 *
 * A ScoreItem says which tokens count: those at positions t ≥ max(1, start) whose mask is 1.
 * Multiple choice sums them over a choice's tokens, bits per byte over a text's, chat loss
 * over the assistant tokens the chat template marks.
 */
import { createCache, forwardCached, type DecodeModel, type KvCache } from "../model/decode.ts";

export interface ScoreItem {
  /** Token ids [n], n ≤ the model's context. */
  ids: readonly number[];
  /** First position scored (≥ 1: the first token has nothing before it). */
  start: number;
  /** [n] 1 where a token is scored (positions < start never are); null: every token from start. */
  mask?: Uint8Array | null;
}

export interface Scored {
  /** Σ log p of the scored tokens (nats). */
  logprob: number;
  /** Number of scored tokens. */
  tokens: number;
  /** True when every scored token is the model's most likely next token (greedy decoding would produce them). */
  greedy: boolean;
}

export interface ScoreOptions {
  /** Sequences per forward pass. */
  batch: number;
  /** Called after each batch with the number of items done. */
  onBatch?: (done: number) => void;
}

/** log p(id) from a row of logits [V] and whether id is the row's argmax (lowest id on ties). */
function rowLogprob(logits: Float32Array, off: number, V: number, id: number): { lp: number; top: boolean } {
  let max = -Infinity, arg = 0;
  for (let i = 0; i < V; i++) {
    const x = logits[off + i];
    if (x > max) { max = x; arg = i; }
  }
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[off + i] - max);
  return { lp: logits[off + id] - max - Math.log(sum), top: arg === id };
}

/**
 * Scores items in batches of `batch` sequences. Returns one Scored per item, in order.
 * The result of an item does not depend on which other items share its batch, up to the
 * matrix-product kernel's choice of blocking for the batch's row count.
 */
export function scoreItems(model: DecodeModel, items: readonly ScoreItem[], opts: ScoreOptions): Scored[] {
  const maxT = model.config.seqLen, V = model.config.vocabSize;
  const B = Math.max(1, Math.min(opts.batch, items.length));
  for (const [i, it] of items.entries()) {
    if (it.ids.length > maxT) throw new Error(`score: item ${i} has ${it.ids.length} tokens, the model's context is ${maxT}`);
    if (it.mask && it.mask.length !== it.ids.length) throw new Error(`score: item ${i}: mask length ${it.mask.length} ≠ ${it.ids.length} ids`);
  }
  const out: Scored[] = [];
  let cache: KvCache | null = null;
  for (let b0 = 0; b0 < items.length; b0 += B) {
    const chunk = items.slice(b0, b0 + B).filter((it) => it.ids.length > 0);
    const all = items.slice(b0, b0 + B);
    cache ??= createCache(model, B, maxT);
    cache.length.fill(0);
    const slots = chunk.map((_, i) => i);
    const logits = chunk.length ? forwardCached(model, cache, slots, chunk.map((it) => it.ids.length), chunk.flatMap((it) => it.ids as number[]), true) : new Float32Array(0);
    let row = 0, k = 0;
    for (const it of all) {
      if (it.ids.length === 0) { out.push({ logprob: 0, tokens: 0, greedy: true }); continue; }
      let lp = 0, n = 0, greedy = true;
      for (let t = Math.max(1, it.start); t < it.ids.length; t++) {
        if (it.mask && !it.mask[t]) continue;
        const r = rowLogprob(logits, (row + t - 1) * V, V, it.ids[t]);
        lp += r.lp;
        n++;
        greedy &&= r.top;
      }
      out.push({ logprob: lp, tokens: n, greedy });
      row += it.ids.length;
      k++;
    }
    opts.onBatch?.(Math.min(b0 + B, items.length));
  }
  return out;
}

/**
 * A context and a continuation as one item: the continuation's tokens are scored. When the
 * two do not fit in `maxT`, the context loses tokens from its front (the continuation is
 * kept whole; it must leave room for at least one context token).
 */
export function continuationItem(context: readonly number[], continuation: readonly number[], maxT: number): ScoreItem {
  if (continuation.length === 0) throw new Error("score: empty continuation");
  if (continuation.length >= maxT) throw new Error(`score: a continuation of ${continuation.length} tokens does not fit the context of ${maxT}`);
  if (context.length === 0) throw new Error("score: empty context (a continuation needs at least one token before it)");
  const keep = Math.min(context.length, maxT - continuation.length);
  const ctx = context.slice(context.length - keep);
  return { ids: [...ctx, ...continuation], start: ctx.length };
}

/**
 * A long token sequence cut into windows of at most maxT tokens that overlap by one, so that
 * every token after the first is scored exactly once (with up to maxT − 1 tokens of context).
 */
export function windowItems(ids: readonly number[], maxT: number): ScoreItem[] {
  const out: ScoreItem[] = [];
  for (let s = 0; s + 1 < ids.length; s += maxT - 1) out.push({ ids: ids.slice(s, s + maxT), start: 1 });
  return out;
}

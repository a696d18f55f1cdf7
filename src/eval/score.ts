/**
 * Scoring token sequences under a model, batched on the KV-cached inference forward:
 * many sequences of different lengths are fed in one `forwardCached` call (each in its own
 * cache slot, every position's logits returned), so the matrix products run over all their
 * tokens at once.
 *
 * For a sequence ids[0..n) the model's row t (after reading ids[0..t]) predicts ids[t+1]:
 *
 *   log p(ids[t] | ids[<t]) = logits[t−1][ids[t]] − logsumexp(logits[t−1])
 *
 * computed by the backend's fused cross-entropy kernel (per-row losses) and summed in float64.
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
}

export interface ScoreOptions {
  /** Sequences per forward pass (at most; see LOGITS_BUDGET). */
  batch: number;
  /** Called after each batch with the number of items done. */
  onBatch?: (done: number) => void;
}

/**
 * Most logits one forward pass may return (floats): every position's row is kept, N·V floats,
 * so a batch is also cut when its tokens times the vocabulary would pass this (256 MiB).
 */
export const LOGITS_BUDGET = 64 << 20;

/**
 * Scores items in batches of up to `batch` sequences. Returns one Scored per item, in order.
 * −log p of every scored token comes from the backend's fused cross-entropy (the training
 * loss kernel, per-row losses), so scoring is the same arithmetic as the validation loss.
 * An item's result does not depend on which other items share its batch, up to the
 * matrix-product kernel's blocking for the batch's row count.
 */
export function scoreItems(model: DecodeModel, items: readonly ScoreItem[], opts: ScoreOptions): Scored[] {
  const maxT = model.config.seqLen, V = model.config.vocabSize;
  const B = Math.max(1, Math.min(opts.batch, items.length));
  for (const [i, it] of items.entries()) {
    if (it.ids.length > maxT) throw new Error(`score: item ${i} has ${it.ids.length} tokens, the model's context is ${maxT}`);
    if (it.mask && it.mask.length !== it.ids.length) throw new Error(`score: item ${i}: mask length ${it.mask.length} ≠ ${it.ids.length} ids`);
  }
  const maxTokens = Math.max(maxT, Math.floor(LOGITS_BUDGET / V));
  const out: Scored[] = [];
  let cache: KvCache | null = null;
  for (let b0 = 0; b0 < items.length; ) {
    // The batch: up to B sequences and maxTokens tokens (at least one sequence).
    let b1 = b0, N = 0;
    while (b1 < items.length && b1 - b0 < B && (b1 === b0 || N + items[b1].ids.length <= maxTokens)) N += items[b1++].ids.length;
    const chunk = items.slice(b0, b1);
    const live = chunk.filter((it) => it.ids.length > 0);
    cache ??= createCache(model, B, maxT);
    cache.length.fill(0);
    // Row r of the logits predicts the token after it: its target is that token when scored, else −1.
    const targets = new Int32Array(N).fill(-1);
    let row = 0;
    for (const it of live) {
      for (let t = Math.max(1, it.start); t < it.ids.length; t++) if (!it.mask || it.mask[t]) targets[row + t - 1] = it.ids[t];
      row += it.ids.length;
    }
    const losses = new Float32Array(N);
    if (live.length) {
      const logits = forwardCached(model, cache, live.map((_, i) => i), live.map((it) => it.ids.length), live.flatMap((it) => it.ids as number[]), true);
      model.backend.crossEntropy(null, losses, logits, targets, N, V, 1);
    }
    row = 0;
    for (const it of chunk) {
      let lp = 0, n = 0;
      for (let r = row; r < row + it.ids.length; r++) {
        if (targets[r] < 0) continue;
        lp -= losses[r];
        n++;
      }
      out.push({ logprob: lp, tokens: n });
      row += it.ids.length;
    }
    b0 = b1;
    opts.onBatch?.(b0);
  }
  return out;
}

/**
 * A context and a continuation as one item: the continuation's tokens are scored. When the
 * two do not fit in `maxT`, tokens are dropped from the front, the context's first: a
 * continuation longer than maxT − 1 tokens then has only its last maxT − 1 tokens scored
 * (as lm-evaluation-harness does) and `truncated` is set.
 */
export function continuationItem(context: readonly number[], continuation: readonly number[], maxT: number): ScoreItem & { truncated: boolean } {
  if (continuation.length === 0) throw new Error("score: empty continuation");
  if (context.length === 0) throw new Error("score: empty context (a continuation needs at least one token before it)");
  const ids = [...context, ...continuation];
  const drop = Math.max(0, ids.length - maxT);
  return { ids: ids.slice(drop), start: Math.max(1, context.length - drop), truncated: drop > context.length - 1 };
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

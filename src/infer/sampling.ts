/**
 * Choosing the next token from one row of logits: repetition penalty, then temperature,
 * top-k and top-p (nucleus) filtering, then a draw from the seeded RNG. Temperature 0 is
 * greedy (argmax, lowest id on ties).
 */
import type { Rng } from "./rng.ts";
import type { Backend } from "../core/backend.ts";

export interface SamplingOptions {
  /** 0 = greedy. Logits are divided by it before softmax. */
  temperature: number;
  /** Keep only the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 = all). */
  topP: number;
  /**
   * CTRL's repetition penalty (Keskar et al. 2019, as in Hugging Face): for every token already
   * in the context, a positive logit is divided by it and a negative one multiplied (1 = off).
   */
  repetitionPenalty: number;
  /**
   * OpenAI's penalties (on the tokens generated so far, not the prompt), subtracted from the
   * logits before temperature: z[j] −= frequencyPenalty · count[j] + presencePenalty · [count[j] > 0].
   * 0 = off; OpenAI allows −2 … 2.
   */
  frequencyPenalty?: number;
  presencePenalty?: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1 };

export function checkSampling(o: SamplingOptions): void {
  const bad = (f: string, why: string): never => { throw new Error(`sampling option ${f}: ${why}`); };
  if (!(o.temperature >= 0) || !Number.isFinite(o.temperature)) bad("temperature", `must be ≥ 0, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0) bad("topK", `must be an integer ≥ 0, got ${o.topK}`);
  if (!(o.topP > 0 && o.topP <= 1)) bad("topP", `must be in (0, 1], got ${o.topP}`);
  if (!(o.repetitionPenalty > 0) || !Number.isFinite(o.repetitionPenalty)) bad("repetitionPenalty", `must be > 0, got ${o.repetitionPenalty}`);
  for (const f of ["frequencyPenalty", "presencePenalty"] as const) {
    const v = o[f] ?? 0;
    if (!Number.isFinite(v) || v < -2 || v > 2) bad(f, `must be in [-2, 2], got ${v}`);
  }
}

/** log Σ exp(logits), computed stably in float64. logits [V]. */
export function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * log softmax(logits)[id]. logits [V]; `lse` is the row's log-sum-exp when the caller has it
 * (a decoding batch gets every row's in one native call, `Backend.logSumExp`: the V
 * exponentials are most of the sampler's time in JavaScript), else it is computed here.
 */
export function logSoftmaxAt(logits: ArrayLike<number>, id: number, lse = logSumExp(logits)): number {
  return logits[id] - lse;
}

/**
 * Readies a decoding step's logits rows [R, V] for sampling and returns each row's
 * log-sum-exp (for sampleToken and topLogprobs). When the model's embedding has more rows
 * than its tokenizer has tokens (Qwen pads its vocabulary to a multiple of 128), the padding
 * ids are no text: their logits become −∞ first. The log-sum-exps come from one native call
 * for the whole step (the V exponentials per row in JavaScript cost as much as a small
 * model's forward share).
 */
export function prepareRows(be: Pick<Backend, "logSumExp">, logits: Float32Array, R: number, V: number, tokens: number): Float32Array {
  if (tokens < V) for (let r = 0; r < R; r++) logits.fill(-Infinity, r * V + tokens, (r + 1) * V);
  const lse = new Float32Array(R);
  be.logSumExp(lse, logits, R, V);
  return lse;
}

/** Index of the largest value (the first one on ties). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export interface Sampled {
  id: number;
  /** Log-probability of the chosen token under the model (before penalty, temperature, filters). */
  logprob: number;
}

/**
 * The k most likely tokens under the model (log softmax of the raw logits [V]), best first,
 * ties by lower id: what OpenAI's `top_logprobs` reports.
 */
export function topLogprobs(logits: ArrayLike<number>, k: number, lse?: number): Sampled[] {
  if (k <= 0) return [];
  lse ??= logSumExp(logits);
  // k is small (≤ 20): keep a sorted list of the best k while scanning once.
  const best: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    if (best.length === k && logits[i] <= logits[best[k - 1]]) continue;
    let j = best.length < k ? best.length : k - 1;
    while (j > 0 && logits[best[j - 1]] < logits[i]) { if (j < k) best[j] = best[j - 1]; j--; }
    best[j] = i;
  }
  return best.map((id) => ({ id, logprob: logits[id] - lse }));
}

/**
 * Picks the next token. logits [V] (not modified); `context` holds the ids the repetition
 * penalty applies to (prompt and generated so far); `generated` the ids the frequency and
 * presence penalties count (the reply so far); `lse` the row's log-sum-exp when the caller has
 * it (see logSoftmaxAt).
 */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: Rng, context: ArrayLike<number> = [],
                            generated: ArrayLike<number> = [], lse?: number): Sampled {
  const V = logits.length;
  let z: Float32Array | Float64Array = logits;
  if (o.repetitionPenalty !== 1 && context.length > 0) {
    z = Float64Array.from(logits);
    const seen = new Set<number>();
    for (let i = 0; i < context.length; i++) seen.add(context[i]);
    for (const id of seen) if (id >= 0 && id < V) z[id] = z[id] > 0 ? z[id] / o.repetitionPenalty : z[id] * o.repetitionPenalty;
  }
  if ((o.frequencyPenalty || o.presencePenalty) && generated.length > 0) {
    if (z === logits) z = Float64Array.from(logits);
    const count = new Map<number, number>();
    for (let i = 0; i < generated.length; i++) count.set(generated[i], (count.get(generated[i]) ?? 0) + 1);
    for (const [id, n] of count) if (id >= 0 && id < V) z[id] -= (o.frequencyPenalty ?? 0) * n + (o.presencePenalty ?? 0);
  }
  if (o.temperature === 0 || o.topK === 1) {
    const id = argmax(z);
    return { id, logprob: logSoftmaxAt(logits, id, lse) };
  }
  // Candidates in rank order (logit descending, lower id first on ties), found by partial
  // selection instead of sorting the vocabulary: top-k keeps a k-element heap over one pass
  // and sorts only those k; without top-k, a heap over the vocabulary is popped in rank order
  // only as far as the nucleus (top-p) or the draw needs. The arithmetic (sums and the walk
  // in rank order) is the full sort's, so a seed gives the same tokens as sorting would; the
  // one difference is the no-top-k normaliser, summed in id order (a different rounding of
  // the same total, which can move a draw only within ~1e-16 of a boundary).
  const id = o.topK > 0 && o.topK < V ? pickFrom(topKInOrder(z, o.topK), z, o, rng) : pickFromHeap(z, o, rng);
  return { id, logprob: logSoftmaxAt(logits, id, lse) };
}

/** a ranks before b: larger logit, then lower id. */
const before = (z: ArrayLike<number>, a: number, b: number): boolean => z[a] > z[b] || (z[a] === z[b] && a < b);

/** The k best ids in rank order: a min-heap (worst on top) of size k over one pass, then k log k. */
function topKInOrder(z: ArrayLike<number>, k: number): number[] {
  const h = new Int32Array(k);
  let n = 0;
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let w = i;
      if (l < n && before(z, h[w], h[l])) w = l;
      if (r < n && before(z, h[w], h[r])) w = r;
      if (w === i) return;
      const t = h[i]; h[i] = h[w]; h[w] = t;
      i = w;
    }
  };
  for (let id = 0; id < z.length; id++) {
    if (n < k) {
      // sift up: the worst stays on top
      let i = n++;
      h[i] = id;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!before(z, h[p], h[i])) break;
        const t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
      }
    } else if (before(z, id, h[0])) {
      h[0] = id;
      down(0);
    }
  }
  return Array.from(h).sort((a, b) => (before(z, a, b) ? -1 : 1));
}

/** Top-p over candidates in rank order, then the draw (the full sort's arithmetic). */
function pickFrom(order: number[], z: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  const max = z[order[0]];
  const p = order.map((i) => Math.exp((z[i] - max) / o.temperature));
  let total = p.reduce((s, x) => s + x, 0);
  if (o.topP < 1) {
    let cum = 0, keep = 0;
    while (keep < p.length) {
      cum += p[keep++] / total;
      if (cum >= o.topP) break;
    }
    order = order.slice(0, keep);
    p.length = keep;
    total = p.reduce((s, x) => s + x, 0);
  }
  return draw(order, p, total, rng);
}

function draw(order: number[], p: number[], total: number, rng: Rng): number {
  let u = rng.next() * total;
  let pick = order[order.length - 1];
  for (let j = 0; j < order.length; j++) {
    u -= p[j];
    if (u < 0) { pick = order[j]; break; }
  }
  return pick;
}

/** No top-k: a max-heap over the whole vocabulary (O(V) to build), popped in rank order as far as needed. */
function pickFromHeap(z: ArrayLike<number>, o: SamplingOptions, rng: Rng): number {
  const V = z.length;
  const h = new Int32Array(V);
  for (let i = 0; i < V; i++) h[i] = i;
  let n = V;
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let b = i;
      if (l < n && before(z, h[l], h[b])) b = l;
      if (r < n && before(z, h[r], h[b])) b = r;
      if (b === i) return;
      const t = h[i]; h[i] = h[b]; h[b] = t;
      i = b;
    }
  };
  for (let i = (V >> 1) - 1; i >= 0; i--) down(i);
  const pop = (): number => {
    const top = h[0];
    h[0] = h[--n];
    down(0);
    return top;
  };
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (z[i] > max) max = z[i];
  let total = 0;
  for (let i = 0; i < V; i++) total += Math.exp((z[i] - max) / o.temperature);
  const order: number[] = [], p: number[] = [];
  if (o.topP < 1) {
    // The nucleus: pop until the kept probability reaches topP.
    let cum = 0;
    while (n > 0) {
      const id = pop();
      order.push(id);
      p.push(Math.exp((z[id] - max) / o.temperature));
      cum += p[p.length - 1] / total;
      if (cum >= o.topP) break;
    }
    return draw(order, p, p.reduce((s, x) => s + x, 0), rng);
  }
  // Whole vocabulary: walk in rank order until the draw is used up.
  let u = rng.next() * total;
  let last = -1;
  while (n > 0) {
    last = pop();
    u -= Math.exp((z[last] - max) / o.temperature);
    if (u < 0) break;
  }
  return last;
}

/**
 * Evaluation helpers shared by pretraining and SFT: validation loss and bits per byte, and a
 * plain sampler (full recomputation each token; the KV-cached engine lives in src/infer).
 */
import type { SeededRng } from "../core/rng.ts";
import type { BatchSource } from "../data/types.ts";
import type { GPT } from "../model/gpt.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

export interface EvalResult {
  /** Mean cross-entropy per target token (nats). */
  loss: number;
  /** Bits per UTF-8 byte of the target text: Σ loss / (ln 2 · Σ bytes); null without byte counts. */
  bpb: number | null;
  tokens: number;
}

/** UTF-8 byte length of each token id (for bits per byte). */
export function tokenByteLengths(tok: Tokenizer): Int32Array {
  const out = new Int32Array(tok.vocabSize);
  for (let i = 0; i < tok.vocabSize; i++) out[i] = tok.special.size && [...tok.special.values()].includes(i) ? 0 : tok.decodeBytes([i]).length;
  return out;
}

/**
 * Mean loss over `batches` batches of [B, T] from `source` (which should be in a fixed,
 * sequential order so every evaluation sees the same tokens; it is rewound to its starting
 * position afterwards). bpb uses `bytes[id]` of each target token.
 */
export function evaluate(model: GPT, source: BatchSource, batches: number, B: number, T: number,
                         bytes: Int32Array | null): EvalResult {
  const start = source.state();
  let sum = 0, count = 0, nbytes = 0;
  for (let i = 0; i < batches; i++) {
    const { inputs, targets } = source.nextBatch(B, T);
    let n = 0;
    for (let j = 0; j < targets.length; j++) {
      if (targets[j] < 0) continue;
      n++;
      if (bytes) nbytes += bytes[targets[j]];
    }
    const loss = model.forward(inputs, targets, B, T, { grad: false, keepLogits: false });
    if (n > 0) {
      sum += loss * n;
      count += n;
    }
  }
  source.restore(start);
  return { loss: count ? sum / count : NaN, bpb: bytes && nbytes ? sum / (Math.LN2 * nbytes) : null, tokens: count };
}

/**
 * Samples `n` tokens after `prompt` (temperature, top-k), recomputing the whole window
 * (the last contextLength tokens) for each token.
 */
export function sampleTokens(model: GPT, prompt: readonly number[], n: number, rng: SeededRng,
                             temperature = 0.8, topK = 40): number[] {
  const V = model.config.vocabSize, ctx = model.config.contextLength;
  const ids = [...prompt];
  if (ids.length === 0) ids.push(0);
  const start = ids.length;
  const probs = new Float64Array(V);
  for (let s = 0; s < n; s++) {
    const window = ids.slice(-ctx);
    const T = window.length;
    model.forward(Int32Array.from(window), null, 1, T);
    const row = model.logits().subarray((T - 1) * V, T * V);
    // top-k threshold, then softmax at the temperature
    const kth = topK > 0 && topK < V ? [...row].sort((a, b) => b - a)[topK - 1] : -Infinity;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
    let z = 0;
    for (let i = 0; i < V; i++) {
      probs[i] = row[i] >= kth ? Math.exp((row[i] - max) / Math.max(temperature, 1e-6)) : 0;
      z += probs[i];
    }
    let u = rng.uniform() * z, pick = V - 1;
    for (let i = 0; i < V; i++) {
      u -= probs[i];
      if (u <= 0) {
        pick = i;
        break;
      }
    }
    ids.push(pick);
  }
  return ids.slice(start);
}

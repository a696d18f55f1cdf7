/**
 * Evaluation helpers shared by pretraining and SFT: validation loss and bits per byte.
 * (Samples during training come from the chat's engine, src/infer/train-sample.ts.)
 */
import type { BatchSource } from "../data/types.ts";
import type { GPT } from "../model/gpt.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

export interface EvalResult {
  /** Mean cross-entropy per target token (nats). */
  loss: number;
  /** Bits per UTF-8 byte of the target text: Σ loss / (ln 2 · Σ bytes); null without byte counts. */
  bpb: number | null;
  tokens: number;
  /** Objective-specific held-out metrics (DPO: rewards/accuracies, kl, …). */
  extra?: Record<string, number | null>;
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

/**
 * Held-out assistant-token loss: the mean cross-entropy over exactly the tokens the chat
 * template marks for loss (assistant replies and their <|im_end|>), on conversations the
 * fine-tuning never saw. Each conversation sits in its own row (padded), so the number is
 * the same whatever the batch size.
 */
import type { GPT } from "../model/gpt.ts";
import { openChatSource, type ChatExample } from "../data/chat-batches.ts";

export interface ChatLoss {
  /** Mean loss per assistant token (nats). */
  loss: number;
  /** Assistant tokens scored. */
  tokens: number;
  conversations: number;
}

/** Scores every example once, B rows of T tokens at a time, without gradients. */
export function chatLoss(model: GPT, examples: ChatExample[], opts: { B: number; T: number; pad: number }): ChatLoss {
  const { B, T } = opts;
  const src = openChatSource(examples, { seed: 0, packing: "padded", pad: opts.pad });
  let sum = 0;
  let tokens = 0;
  for (let done = 0; done < examples.length; done += B) {
    const rows = Math.min(B, examples.length - done);
    const { inputs, targets } = src.nextBatch(rows, T);
    let count = 0;
    for (let i = 0; i < targets.length; i++) if (targets[i] >= 0) count++;
    if (count === 0) continue;
    const mean = model.forward(inputs, targets, rows, T, { grad: false, keepLogits: false });
    sum += mean * count;
    tokens += count;
  }
  return { loss: tokens > 0 ? sum / tokens : NaN, tokens, conversations: examples.length };
}

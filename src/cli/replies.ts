/**
 * Replies from the KV-cached engine (src/infer) for the training commands that need them
 * (`dpo`'s KL estimate, `improve`'s before/after side-by-side); the train layer takes them as
 * functions because it does not import infer.
 */
import { renderChat } from "../data/chat-template.ts";
import { generateBatch } from "../infer/generate.ts";
import { loadChatModel } from "../infer/load.ts";
import { GREEDY } from "../infer/sampling.ts";
import { asDecodeModel } from "../model/gpt.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import type { ReplySampler } from "../train/dpo.ts";
import type { GreedyReplies } from "../train/improve.ts";

/** Temperature-1 samples from the KV-cached engine (src/infer), stop token kept. */
export const engineSampler: ReplySampler = (model, tok, prompts, o) =>
  generateBatch(asDecodeModel(model), tok, prompts, { ...GREEDY, temperature: 1, maxNewTokens: o.maxNewTokens, seed: o.seed }).map((g) => {
    const stop = g.finish === "stop" && g.stoppedBy !== undefined ? tok.special.get(g.stoppedBy) : undefined;
    return stop === undefined ? g.ids : [...g.ids, stop];
  });

/** Greedy replies from the KV-cached engine, for the before/after side-by-side. */
export const engineGreedy: GreedyReplies = (dir, prompts) => {
  const folder = latestCheckpoint(dir) ?? dir;
  const { model, tokenizer } = loadChatModel(folder);
  const ids = prompts.map((p) => renderChat(tokenizer, p, { addGenerationPrompt: true }).ids);
  return generateBatch(model, tokenizer, ids, { ...GREEDY, maxNewTokens: 64, seed: 0 }).map((g) => g.text);
};


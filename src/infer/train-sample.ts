/**
 * Samples printed during pretraining (`mynah train --sample-every`), drawn by the same engine
 * and sampler as the chat (KV cache, src/infer/sampling.ts) from the weights being trained.
 * The training layer cannot import this one, so the CLI hands it to pretrain() as a callback.
 */
import type { GPT } from "../model/gpt.ts";
import { asDecodeModel } from "../model/gpt.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { generate } from "./generate.ts";

/** Sampling settings of training samples: temperature 0.8 among the 40 most likely tokens. */
export const TRAINING_SAMPLE = { temperature: 0.8, topK: 40, topP: 1, repetitionPenalty: 1 } as const;

/**
 * Up to `n` tokens after `prompt` (ids), sampled with `seed`; fewer when the model's context
 * fills up or an end-of-text token is drawn.
 */
export function sampleWhileTraining(model: Pick<GPT, "config" | "params" | "backend">, tok: Tokenizer,
                                    prompt: readonly number[], n: number, seed: number): number[] {
  return generate(asDecodeModel(model), tok, prompt, { ...TRAINING_SAMPLE, maxNewTokens: n, seed }).ids;
}

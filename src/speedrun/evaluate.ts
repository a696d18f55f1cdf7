/**
 * Evaluation of a chat model on held-out questions: each question is rendered by the chat
 * template, answered by greedy batched generation, and the answer extracted from the reply is
 * compared exactly with the known one. Also the validation loss: mean cross-entropy of the
 * reference replies (the template's loss mask) under the model.
 */
import type { DecodeModel } from "../model/decode.ts";
import { createCache, forwardCached } from "../model/decode.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat } from "../data/chat-template.ts";
import { generateBatch, DEFAULT_GENERATE } from "../infer/generate.ts";
import type { Example, Skill } from "./skills.ts";

export interface Answered extends Example {
  /** The model's reply (Example.reply is the reference). */
  generated: string;
  got: string | null;
  correct: boolean;
}

export interface SkillScore {
  skill: string;
  description: string;
  asked: number;
  correct: number;
  accuracy: number;
}

export interface Evaluation {
  scores: SkillScore[];
  answers: Answered[];
  /** Mean cross-entropy per reply token of the held-out reference replies (nats). */
  valLoss: number;
  valTokens: number;
  seconds: number;
}

export interface EvalOptions {
  batch: number;
  maxNewTokens: number;
  onProgress?: (done: number, total: number) => void;
}

/** Validation loss of held-out conversations (only the assistant tokens count). */
export function validationLoss(model: DecodeModel, tok: Tokenizer, examples: readonly Example[]): { loss: number; tokens: number } {
  const V = model.config.vocabSize;
  let sum = 0, count = 0;
  const cache = createCache(model, 1);
  for (const ex of examples) {
    const { ids, mask } = renderChat(tok, [{ role: "user", content: ex.question }, { role: "assistant", content: ex.reply }]);
    const n = Math.min(ids.length, cache.maxT);
    cache.length[0] = 0;
    const logits = forwardCached(model, cache, [0], [n], ids.slice(0, n), true);
    // Position t predicts token t+1, which counts when the mask says so.
    const targets = new Int32Array(n);
    for (let t = 0; t < n; t++) targets[t] = t + 1 < n && mask[t + 1] ? ids[t + 1] : -1;
    const losses = new Float32Array(n);
    sum += model.backend.crossEntropy(null, losses, logits, targets, n, V, 1);
    for (let t = 0; t < n; t++) if (targets[t] >= 0) count++;
  }
  return { loss: count ? sum / count : NaN, tokens: count };
}

export function evaluate(model: DecodeModel, tok: Tokenizer, skills: readonly Skill[], examples: readonly Example[], o: EvalOptions): Evaluation {
  const t0 = performance.now();
  const bySkill = new Map(skills.map((s) => [s.name, s]));
  const answers: Answered[] = [];
  for (let i = 0; i < examples.length; i += o.batch) {
    const chunk = examples.slice(i, i + o.batch);
    const prompts = chunk.map((ex) => renderChat(tok, [{ role: "user", content: ex.question }], { addGenerationPrompt: true }).ids);
    const gens = generateBatch(model, tok, prompts, { ...DEFAULT_GENERATE, maxNewTokens: o.maxNewTokens });
    chunk.forEach((ex, j) => {
      const generated = gens[j].text;
      const got = bySkill.get(ex.skill)!.extract(generated, ex.lang);
      answers.push({ ...ex, generated, got, correct: got === ex.answer });
    });
    o.onProgress?.(Math.min(i + o.batch, examples.length), examples.length);
  }
  const scores: SkillScore[] = skills.filter((s) => s.scored).map((s) => {
    const mine = answers.filter((a) => a.skill === s.name);
    const correct = mine.filter((a) => a.correct).length;
    return { skill: s.name, description: s.description, asked: mine.length, correct, accuracy: mine.length ? correct / mine.length : 0 };
  });
  const { loss, tokens } = validationLoss(model, tok, examples);
  return { scores, answers, valLoss: loss, valTokens: tokens, seconds: (performance.now() - t0) / 1000 };
}

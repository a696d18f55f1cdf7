/**
 * How big a speedrun is: one number (minutes of wall time on this machine) sets the corpus,
 * the model and the training budgets. Defaults are tuned for 15 minutes on 2 cores.
 */

export interface SpeedrunPlan {
  minutes: number;
  seed: number;
  /** Training conversations (pretraining uses them as plain rendered text plus the fact table). */
  conversations: number;
  /** Conversations for supervised fine-tuning (another seed: not a second epoch of pretraining). */
  sftConversations: number;
  /** Digits of each addend in the addition skill. */
  digits: number;
  zhShare: number;
  vocabSize: number;
  model: { nLayer: number; nEmbd: number; nHead: number; nKvHead: number; seqLen: number };
  /** Wall-clock budgets of the training stages, in seconds. */
  pretrainSeconds: number;
  sftSeconds: number;
  batchSize: number;
  /** Held-out questions per scored skill. */
  evalPerSkill: number;
}

/**
 * The plan for a time budget. Fixed costs (corpus, tokenizer, evaluation, start-up) take
 * about 10 % plus half a minute; the rest goes 60/40 to pretraining and fine-tuning.
 * Below 3 minutes the model shrinks so that it still learns something in the time.
 */
export function planFor(minutes: number, seed = 1): SpeedrunPlan {
  if (!(minutes > 0)) throw new Error(`speedrun: --minutes must be > 0, got ${minutes}`);
  const total = minutes * 60;
  const train = Math.max(10, total * 0.92 - 35);
  const tiny = minutes < 3;
  return {
    minutes,
    seed,
    conversations: tiny ? 4000 : 60000,
    sftConversations: tiny ? 2000 : 30000,
    digits: 2,
    zhShare: 0.5,
    vocabSize: tiny ? 512 : 1024,
    model: tiny ? { nLayer: 2, nEmbd: 64, nHead: 4, nKvHead: 2, seqLen: 128 } : { nLayer: 4, nEmbd: 128, nHead: 4, nKvHead: 2, seqLen: 256 },
    pretrainSeconds: Math.round(train * 0.65),
    sftSeconds: Math.round(train * 0.35),
    // Rows of 256 tokens hold several packed conversations, and give the chat room for a few
    // turns; 8 of them keep the tokens per step of 16 × 128.
    batchSize: 8,
    evalPerSkill: tiny ? 10 : 100,
  };
}

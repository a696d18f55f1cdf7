/**
 * A tiny model folder for evaluation tests: a byte-level BPE tokenizer with the chat special
 * tokens trained in-process on a few sentences, and a randomly initialised Llama (2 layers,
 * width 32), saved the way checkpoints are (config.json, model.safetensors, tokenizer files).
 */
import { mkdirSync } from "node:fs";
import { configFromPreset } from "../../src/model/config.ts";
import { createGPT } from "../../src/model/gpt.ts";
import { saveModelFolder } from "../../src/model/weights.ts";
import { referenceBackend } from "../../src/core/reference.ts";
import { saveTokenizer, trainBpe } from "../../src/tokenizer/index.ts";
import { CHAT_TEMPLATE } from "../../src/data/chat-template.ts";

export const TEXTS = [
  "The cat sat on the mat. The dog ran in the park. What is 12 + 30? It is 42.",
  "Paris is the capital of France. Lima is the capital of Peru. 北京是中国的首都。",
  "Question: how many legs does a spider have? Answer: eight. 你好，今天天气很好。",
];

export function makeModelFolder(dir: string, seed: number, context = 96): void {
  const tok = trainBpe(TEXTS, { vocabSize: 256 + 12 + 60 });
  const config = configFromPreset("tiny", { nLayer: 2, nEmbd: 32, nHead: 2, nKvHead: 1, vocabSize: tok.vocabSize, contextLength: context, tiedEmbeddings: false });
  const model = createGPT(config, referenceBackend, { seed });
  mkdirSync(dir, { recursive: true });
  saveModelFolder(dir, model.params);
  saveTokenizer(dir, tok, { chatTemplate: CHAT_TEMPLATE });
}

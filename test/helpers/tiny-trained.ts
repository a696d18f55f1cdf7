/**
 * A small model trained for a few seconds on mixed English/Chinese text, saved as a model
 * folder (config.json, model.safetensors, tokenizer files with mynah's chat template): what
 * the GGUF and weight-dtype tests export and compare. Trained, not random, so that its
 * next-token distributions are peaked like a real model's and greedy continuations are
 * meaningful.
 *
 * Text: ../shared/data (Shakespeare, fortunes, Chinese poetry and chats) when present, else a
 * built-in mixed paragraph.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeBackend } from "../../src/core/native.ts";
import { validateConfig, type ModelConfig } from "../../src/model/config.ts";
import { createGPT } from "../../src/model/gpt.ts";
import { saveModelFolder } from "../../src/model/weights.ts";
import { createOptimizer, DEFAULT_OPTIMIZER } from "../../src/train/optim.ts";
import { trainBpe, saveTokenizer, type BpeTokenizer } from "../../src/tokenizer/index.ts";
import { CHAT_TEMPLATE } from "../../src/data/chat-template.ts";

export const SHARED_DATA = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared", "data");

const BUILT_IN = "The quick brown fox jumps over the lazy dog. 我们今天学习GPT模型的原理，然后训练一个小模型。" +
  "To be, or not to be, that is the question. 床前明月光，疑是地上霜。举头望明月，低头思故乡。\n";

/** Mixed EN/ZH training text: about `bytes` of each language. */
export function mixedText(bytes = 150_000): string {
  const files = ["text/tinyshakespeare.txt", "text/fortunes_en.txt", "text/chinese_poetry_classics_zh.txt", "text/fortunes_zh.txt"];
  if (!files.every((f) => existsSync(join(SHARED_DATA, f)))) return BUILT_IN.repeat(Math.ceil((2 * bytes) / BUILT_IN.length));
  return files.map((f) => readFileSync(join(SHARED_DATA, f), "utf8").slice(0, bytes / 2)).join("\n");
}

export interface TinyTrained {
  dir: string;
  config: ModelConfig;
  tokenizer: BpeTokenizer;
}

/**
 * Trains a tokenizer with `pattern` (and whole-piece rule) and a 2-layer GQA model for
 * `steps` AdamW steps; returns its model folder.
 */
export function trainTiny(opts: { pattern: string; wholePieces?: boolean; steps?: number; vocabSize?: number; qkNorm?: boolean } ): TinyTrained {
  const text = mixedText();
  const tokenizer = trainBpe([text], { vocabSize: opts.vocabSize ?? 800, pattern: opts.pattern, wholePieces: opts.wholePieces });
  const ids = Int32Array.from(tokenizer.encodeOrdinary(text));
  const config = validateConfig({
    nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 64, ffnHidden: 192, vocabSize: tokenizer.vocabSize, contextLength: 128,
    ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: opts.qkNorm ?? false,
  });
  const be = nativeBackend();
  const model = createGPT(config, be, { seed: 7 });
  const opt = createOptimizer(be, model.params, { ...DEFAULT_OPTIMIZER, lr: 3e-3, weightDecay: 0 });
  const B = 8, T = 64;
  const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
  let seed = 12345;
  const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  for (let step = 0; step < (opts.steps ?? 150); step++) {
    for (let b = 0; b < B; b++) {
      const o = rand(ids.length - T - 1);
      inp.set(ids.subarray(o, o + T), b * T);
      tgt.set(ids.subarray(o + 1, o + T + 1), b * T);
    }
    model.zeroGrad();
    model.forward(inp, tgt, B, T);
    model.backward();
    opt.step(model.params, model.grads, 1);
  }
  const dir = mkdtempSync(join(tmpdir(), "mynah-tiny-trained-"));
  saveModelFolder(dir, model.params);
  saveTokenizer(dir, tokenizer, { chatTemplate: CHAT_TEMPLATE });
  return { dir, config, tokenizer };
}

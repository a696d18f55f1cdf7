/**
 * Loading a model folder for inference: config.json (Hugging Face Llama/Qwen3 fields) and
 * model.safetensors (read by src/model/weights.ts), plus the tokenizer (tokenizer.json).
 * This is the layout of Hugging Face checkpoints and of the PyTorch reference's fixtures.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.ts";
import { loadNative, setThreads } from "../core/native.ts";
import { referenceBackend } from "../core/reference.ts";
import type { DecodeModel } from "../model/decode.ts";
import { asDecodeModel } from "../model/gpt.ts";
import { loadModelFolder } from "../model/weights.ts";
import { loadTokenizer } from "../tokenizer/index.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

let chosen: Backend | undefined;

/**
 * The backend for generation: each op from the native addon where it has it (SIMD, threads),
 * else from the TypeScript reference, so generation works while native ops are still landing.
 * The name lists the ops that fell back.
 */
export function inferenceBackend(): Backend {
  if (chosen) return chosen;
  let addon: Record<string, unknown> = {};
  // MYNAH_BACKEND=reference forces the TypeScript reference (to compare, or debug kernels).
  if (process.env.MYNAH_BACKEND !== "reference") {
    try {
      addon = loadNative() as unknown as Record<string, unknown>;
    } catch {
      // No native build: everything from the reference.
    }
  }
  const b: Record<string, unknown> = {};
  const fallback: string[] = [];
  for (const [k, v] of Object.entries(referenceBackend)) {
    if (typeof v !== "function") continue;
    if (typeof addon[k] === "function") b[k] = addon[k];
    else {
      b[k] = v;
      fallback.push(k);
    }
  }
  b.name = fallback.length === 0 ? "native" : `native+reference(${fallback.join(",")})`;
  chosen = b as unknown as Backend;
  return chosen;
}

/** Loads a model folder (config.json + model.safetensors) for generation. */
export function loadDecodeModel(dir: string, backend: Backend = inferenceBackend()): DecodeModel {
  if (!existsSync(join(dir, "config.json"))) throw new Error(`model folder ${dir}: config.json is missing (is it a mynah or Hugging Face model folder?)`);
  const { config, params } = loadModelFolder(dir);
  return asDecodeModel({ config, params, backend });
}

/** A model folder with its tokenizer, ready to chat. */
export function loadChatModel(dir: string, opts: { threads?: number; backend?: Backend } = {}): { model: DecodeModel; tokenizer: Tokenizer } {
  if (opts.threads !== undefined) {
    try {
      setThreads(opts.threads);
    } catch {
      // No native build: the reference backend runs on this thread.
    }
  }
  const model = loadDecodeModel(dir, opts.backend);
  const tokenizer = loadTokenizer(dir);
  if (tokenizer.vocabSize > model.config.vocabSize)
    throw new Error(`model folder ${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  return { model, tokenizer };
}

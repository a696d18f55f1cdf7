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
import { parseWeightDtype, withWeightDtype, type WeightDtype } from "./weight-dtype.ts";
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

/**
 * Loads a model folder (config.json + model.safetensors) for generation. The weight storage
 * is `dtype` when given, else the folder's config.json `mynah.dtype` ("f32", "f16", "q8_0"),
 * else f32 (src/infer/weight-dtype.ts).
 */
export function loadDecodeModel(dir: string, backend: Backend = inferenceBackend(), dtype?: WeightDtype): DecodeModel {
  for (const f of ["config.json", "model.safetensors"]) {
    if (!existsSync(join(dir, f))) throw new Error(`model folder ${dir}: ${f} is missing (is it a mynah model folder?)`);
  }
  const { config, params, json } = loadModelFolder(dir);
  const own = (json.mynah ?? {}) as { dtype?: unknown };
  const chosen = dtype ?? (own.dtype === undefined ? "f32" : parseWeightDtype(String(own.dtype), `${join(dir, "config.json")}: field "mynah.dtype"`));
  return withWeightDtype(asDecodeModel({ config, params, backend }), chosen);
}

/** A model folder with its tokenizer, ready to chat. */
export function loadChatModel(dir: string, opts: { threads?: number; backend?: Backend; dtype?: WeightDtype } = {}): { model: DecodeModel; tokenizer: Tokenizer } {
  if (opts.threads !== undefined) {
    try {
      setThreads(opts.threads);
    } catch {
      // No native build: the reference backend runs on this thread.
    }
  }
  const model = loadDecodeModel(dir, opts.backend, opts.dtype);
  const tokenizer = loadTokenizer(dir);
  if (tokenizer.vocabSize > model.config.vocabSize)
    throw new Error(`model folder ${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  return { model, tokenizer };
}

/**
 * Loading a model folder for inference: config.json (Hugging Face Llama/Qwen3 fields) and
 * model.safetensors (read by src/model/weights.ts), plus the tokenizer (tokenizer.json).
 * This is the layout of Hugging Face checkpoints and of the PyTorch reference's fixtures.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.ts";
import { loadNative, setThreads } from "../core/native.ts";
import { referenceBackend } from "../core/reference.ts";
import type { DecodeModel } from "../model/decode.ts";
import { asDecodeModel } from "../model/gpt.ts";
import { loadModelFolder, readModelConfig } from "../model/weights.ts";
import { loadModelTokenizer } from "../tokenizer/index.ts";
import { charTokenizer } from "../tokenizer/char.ts";
import { parseWeightDtype, withWeightDtype, type WeightDtype } from "./weight-dtype.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

let chosen: Backend | undefined;

/**
 * The backend for generation: each op from the native addon where it has it (SIMD, threads),
 * else from the TypeScript reference, so a build whose addon lacks an op (or has no addon at
 * all: an unsupported platform) can still generate, slowly. The name lists the ops that fell
 * back. Training does not use this: it needs the native backend (core/native.ts) or fails.
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
 * Loads a model folder (mynah's, or a Hugging Face one: config.json + safetensors) for
 * generation. The weight storage is `dtype` when given, else the folder's config.json
 * `mynah.dtype` ("f32", "f16", "q8_0"), else f32 (src/infer/weight-dtype.ts). At f16/q8_0 the
 * matrices are converted once and the float32 copy is let go (only the embedding and norms stay
 * float32).
 */
export function loadDecodeModel(dir: string, backend: Backend = inferenceBackend(), dtype?: WeightDtype): DecodeModel {
  if (!existsSync(join(dir, "config.json"))) throw new Error(`model folder ${dir}: config.json is missing (is it a mynah or Hugging Face model folder?)`);
  const own = (readModelConfig(dir).json.mynah ?? {}) as { dtype?: unknown };
  const chosen = dtype ?? (own.dtype === undefined ? "f32" : parseWeightDtype(String(own.dtype), `${join(dir, "config.json")}: field "mynah.dtype"`));
  const { config, params } = loadModelFolder(dir);
  const model = asDecodeModel({ config, params, backend });
  return chosen === "f32" ? model : withWeightDtype(model, chosen, { release: true });
}

/**
 * The tokenizer of a model folder: its tokenizer.json (byte-level BPE, or character level),
 * else, for a character-level checkpoint written before checkpoints carried a tokenizer.json,
 * the characters its state.json records.
 */
export function modelTokenizer(dir: string): Tokenizer {
  if (!existsSync(join(dir, "tokenizer.json")) && existsSync(join(dir, "state.json"))) {
    let ref: unknown;
    try {
      ref = (JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as { tokenizer?: unknown }).tokenizer;
    } catch (err) {
      throw new Error(`model folder ${dir}: state.json is not valid JSON (${(err as Error).message})`);
    }
    const r = ref as { kind?: string; chars?: unknown } | null;
    if (r?.kind === "char" && Array.isArray(r.chars) && r.chars.every((c) => typeof c === "string")) return charTokenizer(r.chars as string[]);
  }
  return loadModelTokenizer(dir);
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
  const tokenizer = modelTokenizer(dir);
  if (tokenizer.vocabSize > model.config.vocabSize)
    throw new Error(`model folder ${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  return { model, tokenizer };
}

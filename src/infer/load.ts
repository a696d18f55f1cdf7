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
import { loadModelFolder, readModelConfig } from "../model/weights.ts";
import { paramSpecs } from "../model/params.ts";
import { readSafetensors, SafetensorsError } from "../core/safetensors.ts";
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
  const { config, json } = readModelConfig(dir);
  const own = (json.mynah ?? {}) as { dtype?: unknown };
  const chosen = dtype ?? (own.dtype === undefined ? "f32" : parseWeightDtype(String(own.dtype), `${join(dir, "config.json")}: field "mynah.dtype"`));
  if (chosen === "f32") {
    const { params } = loadModelFolder(dir);
    return asDecodeModel({ config, params, backend });
  }
  // F16 / Q8_0: quantize straight from the file's float32 views, keep only the embedding and
  // norms in float32, and let the file's buffer go (no float32 copy of the matrices stays).
  const file = join(dir, "model.safetensors");
  const tensors = readSafetensors(file).tensors;
  const specs = paramSpecs(config);
  for (const s of specs) {
    const t = tensors.get(s.name);
    if (!t) throw new SafetensorsError(file, `tensor "${s.name}" is missing (the config needs it)`);
    if (t.dtype !== "F32") throw new SafetensorsError(file, `tensor "${s.name}" is ${t.dtype}, expected F32`);
    if (t.shape.join(",") !== s.shape.join(",")) throw new SafetensorsError(file, `tensor "${s.name}" has shape [${t.shape}], the config needs [${s.shape}]`);
  }
  for (const name of tensors.keys()) if (!specs.some((s) => s.name === name)) throw new SafetensorsError(file, `unexpected tensor "${name}" (not part of this config)`);
  const view = asDecodeModel({ config, params: { get: (n: string) => tensors.get(n)!.data as Float32Array } as never, backend });
  return withWeightDtype(view, chosen, { release: true });
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

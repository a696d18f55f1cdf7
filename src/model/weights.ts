/**
 * Model folders on disk, Hugging Face layout: config.json (LlamaForCausalLM, Qwen2ForCausalLM
 * or Qwen3ForCausalLM fields, plus mynah's own under "mynah") and the weights, Hugging Face
 * names. mynah writes one float32 model.safetensors; it reads that, or a folder straight from
 * the Hugging Face hub: model.safetensors or shards listed in model.safetensors.index.json,
 * in F32, F16 or BF16 (widened to float32 as read, tensor by tensor, by file offset).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { openSafetensors, readTensorF32, writeSafetensors, SafetensorsError, type SafetensorsIndex, type StoredTensor } from "../core/safetensors.ts";
import { writeAtomic } from "../core/atomic-write.ts";
import { fromHfConfig, toHfConfig, type ModelConfig } from "./config.ts";
import { createParams, type ParamSet } from "./params.ts";

/** The tensors of a parameter set, by name, in layout order (views, not copies). */
export function paramTensors(p: ParamSet): [string, { shape: number[]; data: Float32Array }][] {
  return p.specs.map((s) => [s.name, { shape: s.shape, data: p.get(s.name) }]);
}

/**
 * Copies named tensors into a new parameter set for `config`, checking that every tensor the
 * config needs is present with the right dtype and shape and that there are no extra ones.
 * Errors name `file` and the tensor.
 */
export function paramsFromTensors(config: ModelConfig, tensors: Map<string, StoredTensor>, file: string): ParamSet {
  const p = createParams(config);
  for (const s of p.specs) {
    const t = tensors.get(s.name);
    if (!t) throw new SafetensorsError(file, `tensor "${s.name}" is missing (the config needs it)`);
    if (t.dtype !== "F32") throw new SafetensorsError(file, `tensor "${s.name}" is ${t.dtype}, expected F32`);
    if (t.shape.join(",") !== s.shape.join(",")) {
      throw new SafetensorsError(file, `tensor "${s.name}" has shape [${t.shape}], the config needs [${s.shape}]`);
    }
    p.get(s.name).set(t.data as Float32Array);
  }
  for (const name of tensors.keys()) {
    if (!p.has(name)) throw new SafetensorsError(file, `unexpected tensor "${name}" (not part of this config${name === "lm_head.weight" ? "; the config ties embeddings" : ""})`);
  }
  return p;
}

/** Reads config.json of a model folder. */
export function readModelConfig(dir: string): { config: ModelConfig; json: Record<string, unknown> } {
  const file = join(dir, "config.json");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file}: cannot read a JSON config (${(err as Error).message})`);
  }
  return { config: fromHfConfig(json, file), json };
}

/** Tensors in Hugging Face checkpoints that carry no weights mynah needs (recomputed buffers). */
const IGNORED = /\.rotary_emb\.inv_freq$/;

/**
 * The weight files of a model folder, opened (headers only): model.safetensors, or the shards
 * that model.safetensors.index.json maps names to. Returns name → the file that holds it.
 */
export function openWeights(dir: string): { files: SafetensorsIndex[]; where: Map<string, SafetensorsIndex>; dtypes: Set<string> } {
  const single = join(dir, "model.safetensors"), indexFile = join(dir, "model.safetensors.index.json");
  let names: string[];
  if (existsSync(single)) names = ["model.safetensors"];
  else if (existsSync(indexFile)) {
    let j: { weight_map?: Record<string, unknown> };
    try {
      j = JSON.parse(readFileSync(indexFile, "utf8"));
    } catch (err) {
      throw new Error(`${indexFile}: cannot read a JSON index (${(err as Error).message})`);
    }
    if (typeof j.weight_map !== "object" || j.weight_map === null) throw new Error(`${indexFile}: field "weight_map" is missing`);
    names = [...new Set(Object.values(j.weight_map).map((v) => {
      if (typeof v !== "string" || v.includes("/") || v.includes("\\")) throw new Error(`${indexFile}: weight_map names a bad file ${JSON.stringify(v)}`);
      return v;
    }))].sort();
  } else {
    const bin = ["pytorch_model.bin", "pytorch_model.bin.index.json"].find((f) => existsSync(join(dir, f)));
    throw new Error(bin ? `model folder ${dir}: has ${bin} (PyTorch pickle) but no model.safetensors; mynah reads safetensors only (convert it with transformers' save_pretrained(safe_serialization=True))`
      : `model folder ${dir}: model.safetensors (or model.safetensors.index.json) is missing`);
  }
  const files = names.map((n) => openSafetensors(join(dir, n)));
  const where = new Map<string, SafetensorsIndex>();
  const dtypes = new Set<string>();
  for (const f of files) {
    for (const [name, e] of f.entries) {
      if (where.has(name)) throw new SafetensorsError(f.path, `tensor "${name}" is also in ${where.get(name)!.path}`);
      where.set(name, f);
      dtypes.add(e.dtype);
    }
  }
  return { files, where, dtypes };
}

/**
 * Reads the weights of a model folder into a new parameter set for `config`, by offset, one
 * tensor at a time (F16/BF16 widened to float32). Checks every tensor's presence and shape and
 * refuses extra ones; a tied model's lm_head.weight, if the file has one, is ignored (Hugging
 * Face ties it to the embedding on load too).
 */
export function loadWeights(dir: string, config: ModelConfig): { params: ParamSet; dtypes: string[]; files: number } {
  const { files, where, dtypes } = openWeights(dir);
  const p = createParams(config);
  for (const s of p.specs) {
    const f = where.get(s.name);
    if (!f) throw new SafetensorsError(files.length === 1 ? files[0].path : join(dir, "model.safetensors.index.json"), `tensor "${s.name}" is missing (the config needs it)`);
    const e = f.entries.get(s.name)!;
    if (e.dtype === "I32") throw new SafetensorsError(f.path, `tensor "${s.name}" is I32, expected F32, F16 or BF16`);
    if (e.shape.join(",") !== s.shape.join(",")) throw new SafetensorsError(f.path, `tensor "${s.name}" has shape [${e.shape}], the config needs [${s.shape}]`);
    readTensorF32(f, s.name, p.get(s.name));
  }
  for (const [name, f] of where) {
    if (p.has(name) || IGNORED.test(name) || (name === "lm_head.weight" && config.tiedEmbeddings)) continue;
    throw new SafetensorsError(f.path, `unexpected tensor "${name}" (not part of this config)`);
  }
  return { params: p, dtypes: [...dtypes].sort(), files: files.length };
}

/** Loads a model folder: its config and weights (mynah's own, or a Hugging Face one). */
export function loadModelFolder(dir: string): { config: ModelConfig; params: ParamSet; json: Record<string, unknown>; dtypes: string[]; files: number } {
  const { config, json } = readModelConfig(dir);
  const { params, dtypes, files } = loadWeights(dir, config);
  return { config, params, json, dtypes, files };
}

/** Writes config.json (HF fields + `extra`) and model.safetensors into `dir`, each atomically. */
export function saveModelFolder(dir: string, params: ParamSet, extra: Record<string, unknown> = {}): void {
  writeSafetensors(join(dir, "model.safetensors"), paramTensors(params), { format: "pt" });
  writeAtomic(join(dir, "config.json"), JSON.stringify({ ...toHfConfig(params.config), ...extra }, null, 2) + "\n");
}

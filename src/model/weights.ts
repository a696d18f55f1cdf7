/**
 * Model folders on disk, Hugging Face layout: config.json (LlamaForCausalLM / Qwen3ForCausalLM
 * fields, plus mynah's own under "mynah") and model.safetensors (float32, Hugging Face names).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { readSafetensors, writeSafetensors, SafetensorsError, type StoredTensor } from "../core/safetensors.ts";
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

/** Loads a model folder: its config and weights. */
export function loadModelFolder(dir: string): { config: ModelConfig; params: ParamSet; json: Record<string, unknown> } {
  const { config, json } = readModelConfig(dir);
  const file = join(dir, "model.safetensors");
  const params = paramsFromTensors(config, readSafetensors(file).tensors, file);
  return { config, params, json };
}

/** Writes config.json (HF fields + `extra`) and model.safetensors into `dir`, each atomically. */
export function saveModelFolder(dir: string, params: ParamSet, extra: Record<string, unknown> = {}): void {
  writeSafetensors(join(dir, "model.safetensors"), paramTensors(params), { format: "pt" });
  writeAtomic(join(dir, "config.json"), JSON.stringify({ ...toHfConfig(params.config), ...extra }, null, 2) + "\n");
}

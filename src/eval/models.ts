/** Models under evaluation: a folder (or a run folder: its latest checkpoint), its identity, and the machine it runs on. */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { loadChatModel } from "../infer/load.ts";
import { parameterCount } from "../model/config.ts";
import { readModelConfig } from "../model/weights.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { IM_END, IM_START } from "../data/chat-template.ts";
import { loadNative } from "../core/native.ts";
import type { DecodeModel } from "../model/decode.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

export interface ModelInfo {
  /** As given on the command line. */
  arg: string;
  /** The model folder used (absolute). */
  path: string;
  /** A short name for tables: the folder's last two path parts. */
  name: string;
  /** SHA-256 of model.safetensors: the model's identity. */
  sha256: string;
  params: number;
  layers: number;
  width: number;
  context: number;
  vocab: number;
  /** The tokenizer has the chat template's special tokens. */
  chatTemplate: boolean;
}

/** A model folder, or a run folder's latest checkpoint. */
export function resolveModelDir(dir: string): string {
  if (!existsSync(dir)) throw new Error(`--model ${dir}: no such folder`);
  if (existsSync(join(dir, "config.json"))) return dir;
  const latest = latestCheckpoint(dir);
  if (!latest) throw new Error(`--model ${dir}: neither a model folder (no config.json) nor a run folder with checkpoints`);
  return latest;
}

/** True when the tokenizer has <|im_start|> and <|im_end|>, which the chat template needs. */
export function hasChatTemplate(tok: Tokenizer): boolean {
  return tok.special.has(IM_START) && tok.special.has(IM_END);
}

/** Reads a model's identity without loading it (start-up checks). */
export function describeModel(arg: string): ModelInfo {
  const path = resolve(resolveModelDir(arg));
  for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
    if (!existsSync(join(path, f))) throw new Error(`--model ${arg}: ${join(path, f)} is missing${f === "tokenizer.json" ? " (evaluation needs the model's tokenizer: use a checkpoint of a run on prepared shards, or an SFT run)" : ""}`);
  }
  const { config } = readModelConfig(path);
  let chat = false;
  try {
    const cfg = JSON.parse(readFileSync(join(path, "tokenizer.json"), "utf8")) as { added_tokens?: { content: string }[] };
    const added = new Set((cfg.added_tokens ?? []).map((t) => t.content));
    chat = added.has(IM_START) && added.has(IM_END);
  } catch {
    // loadModel reports an unreadable tokenizer
  }
  return {
    arg, path, name: `${basename(dirname(path))}/${basename(path)}`,
    sha256: createHash("sha256").update(readFileSync(join(path, "model.safetensors"))).digest("hex"),
    params: parameterCount(config), layers: config.nLayer, width: config.nEmbd, context: config.contextLength, vocab: config.vocabSize,
    chatTemplate: chat,
  };
}

export function loadModel(info: ModelInfo): { model: DecodeModel; tokenizer: Tokenizer } {
  return loadChatModel(info.path);
}

export interface MachineInfo {
  cpus: number;
  threads: number;
  simd: string;
  node: string;
  platform: string;
}

export function machineInfo(): MachineInfo {
  let cpus = 0, threads = 1, simd = "reference";
  try {
    const a = loadNative();
    cpus = a.cpus();
    threads = a.threads();
    simd = a.simd();
  } catch {
    // no native build
  }
  return { cpus, threads, simd, node: process.version, platform: `${process.platform}-${process.arch}` };
}

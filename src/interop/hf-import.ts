/**
 * `mynah import HF_DIR --out DIR`: a Hugging Face model folder (Llama, Qwen2, Qwen3; F32, F16
 * or BF16; one file or shards) copied into mynah's layout: one float32 model.safetensors,
 * config.json as mynah writes it (with where it came from under "mynah"), and the tokenizer
 * files as they are. Not needed to chat or fine-tune (--model/--from read such folders
 * directly); it makes a folder mynah's own tools (checkpoints, export) treat like any other.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsyncDir } from "../core/atomic-write.ts";
import { parameterCount, type ModelConfig } from "../model/config.ts";
import { loadModelFolder, saveModelFolder } from "../model/weights.ts";
import { loadTokenizer } from "../tokenizer/io.ts";

/** Files copied as they are, when present. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "generation_config.json"];

export interface ImportResult {
  out: string;
  config: ModelConfig;
  parameters: number;
  /** Weight dtypes found (F32, F16, BF16) and the number of weight files. */
  dtypes: string[];
  files: number;
  /** Tokenizer vocabulary (special tokens included), or null when the folder has no tokenizer.json. */
  tokenizerVocab: number | null;
  chatTemplate: boolean;
  copied: string[];
}

export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImportError";
  }
}

/**
 * Reads `from` (checking config, every tensor and the tokenizer) and writes it to `out`, which
 * must not exist yet or be empty. Written into a temporary folder beside `out`, then renamed,
 * so a failure leaves nothing half-written.
 */
export function importHf(o: { from: string; out: string }): ImportResult {
  if (!existsSync(join(o.from, "config.json"))) throw new ImportError(`${o.from}: no config.json (not a Hugging Face model folder)`);
  if (existsSync(o.out) && readdirSync(o.out).length > 0) throw new ImportError(`--out ${o.out}: exists and is not empty`);
  const m = loadModelFolder(o.from);
  let tokenizerVocab: number | null = null, chatTemplate = false;
  if (existsSync(join(o.from, "tokenizer.json"))) {
    const tok = loadTokenizer(o.from);
    tokenizerVocab = tok.vocabSize;
    chatTemplate = tok.chat !== undefined;
    if (tok.vocabSize > m.config.vocabSize) throw new ImportError(`${o.from}: the tokenizer has ${tok.vocabSize} tokens but the model only ${m.config.vocabSize}`);
  }
  const out = resolve(o.out);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = join(dirname(out), `.tmp-${basename(out)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    saveModelFolder(tmp, m.params, { mynah: { imported: { from: resolve(o.from), dtypes: m.dtypes, files: m.files } } });
    const copied: string[] = [];
    for (const f of TOKENIZER_FILES) {
      if (!existsSync(join(o.from, f))) continue;
      copyFileSync(join(o.from, f), join(tmp, f));
      copied.push(f);
    }
    fsyncDir(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true }); // empty, checked above
    renameSync(tmp, out);
    fsyncDir(dirname(out));
    return { out, config: m.config, parameters: parameterCount(m.config), dtypes: m.dtypes, files: m.files, tokenizerVocab, chatTemplate, copied };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

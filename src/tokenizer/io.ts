/**
 * Saving and loading tokenizers on disk. A tokenizer directory holds tokenizer.json (Hugging
 * Face format) and tokenizer_config.json (bos/eos tokens, chat template). Files are written
 * atomically: temp file, fsync, rename.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { BpeTokenizer } from "./bpe.ts";
import type { ChatFormat } from "./types.ts";
import { fromHfTokenizerJson, toHfTokenizerJson } from "./hf.ts";
import { parseTiktokenFile, parseTiktokenJson } from "./tiktoken.ts";

export interface SaveOptions {
  /** Jinja chat template for tokenizer_config.json. */
  chatTemplate?: string;
  /** Defaults: "<|endoftext|>" when it is a special token. */
  bosToken?: string;
  /** Default: "<|im_end|>" when it is a special token, else "<|endoftext|>". */
  eosToken?: string;
  /** Default: "<|pad|>" when it is a special token. */
  padToken?: string;
}

/** Writes `text` (or bytes) to `path` atomically (temp file in the same folder, fsync, rename). */
export function writeFileAtomic(path: string, text: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, "w");
  try {
    const bytes = typeof text === "string" ? Buffer.from(text, "utf8") : text;
    for (let o = 0; o < bytes.length; ) o += writeSync(fd, bytes, o, bytes.length - o);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** Bytes to `path` atomically. */
export function writeBytesAtomic(path: string, bytes: Uint8Array): void {
  writeFileAtomic(path, bytes);
}

/** Saves tokenizer.json and tokenizer_config.json into `dir` (created if needed). */
export function saveTokenizer(dir: string, tok: BpeTokenizer, opts: SaveOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  const has = (s: string): string | undefined => (tok.special.has(s) ? s : undefined);
  const bos = opts.bosToken ?? has("<|endoftext|>");
  const eos = opts.eosToken ?? has("<|im_end|>") ?? has("<|endoftext|>");
  const pad = opts.padToken ?? has("<|pad|>");
  for (const [what, t] of [["bos", bos], ["eos", eos], ["pad", pad]] as const)
    if (t !== undefined && !tok.special.has(t)) throw new Error(`saveTokenizer: ${what} token ${JSON.stringify(t)} is not a special token of this tokenizer`);
  const addedDecoder: Record<string, object> = {};
  for (const [content, id] of [...tok.special].sort((x, y) => x[1] - y[1]))
    addedDecoder[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  const config = {
    tokenizer_class: "PreTrainedTokenizerFast",
    model_max_length: 1_000_000,
    clean_up_tokenization_spaces: false,
    add_bos_token: false,
    add_eos_token: false,
    bos_token: bos ?? null,
    eos_token: eos ?? null,
    pad_token: pad ?? null,
    unk_token: null,
    added_tokens_decoder: addedDecoder,
    ...(opts.chatTemplate !== undefined ? { chat_template: opts.chatTemplate } : {}),
  };
  writeFileAtomic(join(dir, "tokenizer.json"), JSON.stringify(toHfTokenizerJson(tok)) + "\n");
  writeFileAtomic(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2) + "\n");
}

export interface TokenizerConfig {
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  chatTemplate?: string;
}

/**
 * The chat template of tokenizer_config.json: a string, or a list of {name, template} from
 * which "default" is taken (newer transformers versions write chat_template.jinja instead,
 * read by the caller).
 */
function chatTemplateOf(v: unknown, path: string): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const d = v.find((t) => typeof t === "object" && t && (t as { name?: unknown }).name === "default") as { template?: unknown } | undefined;
    if (d && typeof d.template === "string") return d.template;
    throw new Error(`${path}: field "chat_template" is a list without a "default" template`);
  }
  return undefined;
}

/** Reads tokenizer_config.json beside a tokenizer (empty when absent). */
export function loadTokenizerConfig(dirOrFile: string): TokenizerConfig {
  const dir = existsSync(dirOrFile) && statSync(dirOrFile).isDirectory() ? dirOrFile : join(dirOrFile, "..");
  const path = join(dir, "tokenizer_config.json");
  const jinja = join(dir, "chat_template.jinja");
  if (!existsSync(path)) return existsSync(jinja) ? { chatTemplate: readFileSync(jinja, "utf8") } : {};
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  // tokens may be written as strings or as {content: ...} objects
  const tokenText = (v: unknown): string | undefined =>
    typeof v === "string" ? v : typeof v === "object" && v && typeof (v as { content?: unknown }).content === "string" ? (v as { content: string }).content : undefined;
  return {
    bosToken: tokenText(j.bos_token),
    eosToken: tokenText(j.eos_token),
    padToken: tokenText(j.pad_token),
    chatTemplate: chatTemplateOf(j.chat_template, path) ?? (existsSync(jinja) ? readFileSync(jinja, "utf8") : undefined),
  };
}

/**
 * Loads a tokenizer from a directory (its tokenizer.json), a tokenizer.json file, a
 * `.tiktoken` rank file, or a tiktoken npm encoder JSON (has "bpe_ranks").
 */
export function loadTokenizer(path: string): BpeTokenizer {
  if (!existsSync(path)) throw new Error(`loadTokenizer: ${path} does not exist`);
  let file = path;
  if (statSync(path).isDirectory()) {
    file = join(path, "tokenizer.json");
    if (!existsSync(file)) throw new Error(`loadTokenizer: ${path} has no tokenizer.json`);
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`loadTokenizer: cannot read ${file} (${(err as Error).message})`);
  }
  if (basename(file).endsWith(".tiktoken")) return parseTiktokenFile(text, file);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof json === "object" && json !== null && "bpe_ranks" in json) return parseTiktokenJson(json, file);
  const tok = fromHfTokenizerJson(json, file);
  // The chat format beside it (tokenizer_config.json's chat_template and special tokens).
  const cfg = loadTokenizerConfig(dirname(file));
  if (cfg.chatTemplate === undefined) return tok;
  const chat: ChatFormat = { template: cfg.chatTemplate };
  if (cfg.bosToken !== undefined) chat.bosToken = cfg.bosToken;
  if (cfg.eosToken !== undefined) chat.eosToken = cfg.eosToken;
  if (cfg.padToken !== undefined) chat.padToken = cfg.padToken;
  return { ...tok, chat };
}

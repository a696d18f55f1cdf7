/**
 * Hugging Face `tokenizer.json` (byte-level BPE) and `tokenizer_config.json`, read and written.
 *
 * Written layout: model BPE with the vocabulary and merges in GPT-2 byte-level characters
 * (see bytes.ts), special tokens as added_tokens, pre_tokenizer = Split(our pattern,
 * Isolated) then ByteLevel(use_regex false), decoder ByteLevel. Read: that layout, GPT-2's
 * (ByteLevel with use_regex true), and merges given as "a b" strings or ["a", "b"] pairs;
 * with it the tokenizer.json files of Llama 3 (Split + ByteLevel, ignore_merges), Qwen2/Qwen3
 * (NFC normalizer, Split + ByteLevel) and GPT-2/SmolLM (ByteLevel). Every added token (special
 * or not, e.g. Qwen3's <think>) is a special token here: matched whole when allowedSpecial
 * lets it, as Hugging Face matches added tokens. SentencePiece-style BPE (Llama 2, TinyLlama,
 * Mistral: "▁" for spaces, byte_fallback) is refused with a message saying so.
 */
import { bytesKey, bytesToByteLevel, byteLevelToBytes } from "./bytes.ts";
import { bpeTokenizer, type BpeTokenizer } from "./bpe.ts";
import { GPT2_PATTERN } from "./pattern.ts";
import { ranksToMerges } from "./tiktoken.ts";

/**
 * tokenizer.json for a tokenizer. A tiktoken vocabulary (ranks, no merge list) gets a merge
 * list derived from its ranks (ranksToMerges) and `ignore_merges: true`.
 */
export function toHfTokenizerJson(tok: BpeTokenizer): object {
  const { spec } = ranksToMerges(tok);
  const vocab: Record<string, number> = {};
  spec.tokens.forEach((t, id) => {
    if (t) vocab[bytesToByteLevel(t)] = id;
  });
  const name = (id: number): string => bytesToByteLevel(spec.tokens[id]!);
  const added = Object.entries(spec.special)
    .sort((x, y) => x[1] - y[1])
    .map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: spec.normalize === "NFC" ? { type: "NFC" } : null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: spec.pattern }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: spec.wholePieces === true,
      vocab,
      merges: spec.merges.map(([a, b]) => [name(a), name(b)]),
    },
  };
}

type Json = Record<string, unknown>;
const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);

/** The pre-split pattern of a tokenizer.json pre_tokenizer; throws for layouts we cannot run. */
function patternOf(pre: unknown, file: string): string {
  const fail = (why: string): never => {
    throw new Error(`${file}: pre_tokenizer ${why}; mynah reads byte-level BPE with a ByteLevel or Split(Regex)+ByteLevel pre-tokenizer`);
  };
  if (!isObj(pre)) return fail("is missing");
  const steps = pre.type === "Sequence" ? pre.pretokenizers : [pre];
  if (!Array.isArray(steps)) return fail("Sequence has no pretokenizers list");
  let pattern: string | null = null;
  let byteLevel = false;
  for (const s of steps) {
    if (!isObj(s)) return fail("has a step that is not an object");
    if (s.type === "Split") {
      if (pattern !== null) fail("has two Split steps");
      const p = s.pattern;
      if (!isObj(p) || typeof p.Regex !== "string") return fail("Split has no Regex pattern");
      if (s.behavior !== "Isolated" || s.invert === true) fail(`Split behavior ${String(s.behavior)}${s.invert ? " inverted" : ""} is not supported (only Isolated)`);
      pattern = p.Regex;
    } else if (s.type === "ByteLevel") {
      if (s.add_prefix_space === true) fail("ByteLevel add_prefix_space=true is not supported");
      if (s.use_regex !== false) {
        if (pattern !== null) fail("has both a Split and a ByteLevel regex");
        pattern = GPT2_PATTERN;
      }
      byteLevel = true;
    } else fail(`step ${JSON.stringify(s.type)} is not supported`);
  }
  if (!byteLevel) fail("has no ByteLevel step (not a byte-level BPE)");
  if (pattern === null) fail("has no pre-split regex");
  return pattern!;
}

/** Parses a tokenizer.json object; `file` names the source in errors. */
export function fromHfTokenizerJson(json: unknown, file: string): BpeTokenizer {
  if (!isObj(json)) throw new Error(`${file}: not a JSON object`);
  const model = json.model;
  if (!isObj(model)) throw new Error(`${file}: field "model" is missing`);
  if (model.type !== undefined && model.type !== "BPE") throw new Error(`${file}: model.type is ${JSON.stringify(model.type)}, expected "BPE"`);
  if (model.byte_fallback === true) {
    throw new Error(`${file}: model.byte_fallback is true: a SentencePiece-style BPE (Llama 2, TinyLlama, Mistral: "▁" for spaces, bytes as <0xNN> tokens) is not supported; mynah reads byte-level BPE (Llama 3, Qwen2/3, GPT-2, SmolLM)`);
  }
  let normalize: "NFC" | undefined;
  const norm = json.normalizer;
  if (isObj(norm) && norm.type === "NFC") normalize = "NFC";
  else if (norm !== null && norm !== undefined) throw new Error(`${file}: field "normalizer" is ${JSON.stringify(norm).slice(0, 120)}: only none or NFC is supported`);
  if (model.continuing_subword_prefix || model.end_of_word_suffix) throw new Error(`${file}: model.continuing_subword_prefix / end_of_word_suffix are not supported (byte-level BPE has none)`);
  if (!isObj(model.vocab)) throw new Error(`${file}: model.vocab is missing or not an object`);
  const tokens: (Uint8Array | null)[] = [];
  const idOf = new Map<string, number>();
  for (const [s, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${file}: model.vocab[${JSON.stringify(s)}] = ${JSON.stringify(id)} is not a non-negative integer id`);
    const bytes = byteLevelToBytes(s);
    if (!bytes) throw new Error(`${file}: model.vocab key ${JSON.stringify(s)} is not a GPT-2 byte-level string`);
    if (tokens[id as number]) throw new Error(`${file}: model.vocab id ${id} appears twice`);
    tokens[id as number] = bytes;
    idOf.set(s, id as number);
  }
  if (!Array.isArray(model.merges)) throw new Error(`${file}: model.merges is missing or not a list`);
  const merges: [number, number][] = model.merges.map((m: unknown, i: number): [number, number] => {
    let pair: unknown[];
    if (typeof m === "string") {
      const sp = m.indexOf(" ");
      pair = sp > 0 && m.indexOf(" ", sp + 1) < 0 ? [m.slice(0, sp), m.slice(sp + 1)] : [];
    } else pair = Array.isArray(m) ? m : [];
    if (pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string")
      throw new Error(`${file}: model.merges[${i}] = ${JSON.stringify(m)} is neither "a b" nor ["a", "b"]`);
    const a = idOf.get(pair[0]), b = idOf.get(pair[1]);
    if (a === undefined || b === undefined) throw new Error(`${file}: model.merges[${i}] uses ${JSON.stringify(a === undefined ? pair[0] : pair[1])}, which is not in model.vocab`);
    return [a, b];
  });
  const special: Record<string, number> = {};
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${file}: added_tokens is not a list`);
  added.forEach((t: unknown, i: number) => {
    if (!isObj(t) || typeof t.content !== "string" || !Number.isInteger(t.id)) throw new Error(`${file}: added_tokens[${i}] needs "content" (string) and "id" (integer)`);
    // an added token that is also an ordinary vocabulary entry stays decodable through it
    special[t.content] = t.id as number;
    const tid = t.id as number;
    if (tokens[tid] && bytesKey(tokens[tid]!) !== bytesKey(new TextEncoder().encode(t.content))) tokens[tid] = null;
  });
  for (let i = 0; i < tokens.length; i++) tokens[i] ??= null;
  const pattern = patternOf(json.pre_tokenizer, file);
  try {
    return bpeTokenizer({ tokens, mode: "merges", merges, special, pattern, wholePieces: model.ignore_merges === true, ...(normalize ? { normalize } : {}) });
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

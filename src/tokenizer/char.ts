/**
 * Character-level tokenizer: one id per distinct character of a corpus (sorted by code
 * point), as in nanoGPT's shakespeare_char. For small plain-text experiments and benchmarks.
 *
 * On disk (checkpoints of `mynah train --data FILE.txt`) it is a Hugging Face tokenizer.json
 * that any tokenizers implementation runs as the same character-level tokenizer: a BPE model
 * whose vocabulary is the characters and which has no merges, no normalizer, no
 * pre-tokenizer and a Fuse decoder (ids → characters, concatenated). tokenizer_config.json
 * says so in words (`mynah_tokenizer: "characters"`).
 */
import type { StreamDecoder, Tokenizer } from "./types.ts";

export interface CharTokenizer extends Tokenizer {
  readonly chars: string[];
}

export function charTokenizer(chars: string[]): CharTokenizer {
  const index = new Map<string, number>();
  chars.forEach((c, i) => index.set(c, i));
  const decode = (ids: ArrayLike<number>): string => {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const c = chars[ids[i]];
      if (c === undefined) throw new Error(`char tokenizer: id ${ids[i]} is outside the vocabulary (size ${chars.length})`);
      s += c;
    }
    return s;
  };
  return {
    chars,
    vocabSize: chars.length,
    special: new Map(),
    encode(text: string): number[] {
      const out: number[] = [];
      for (const c of text) {
        const id = index.get(c);
        if (id === undefined) throw new Error(`char tokenizer: character ${JSON.stringify(c)} is not in the vocabulary`);
        out.push(id);
      }
      return out;
    },
    decode,
    decodeBytes: (ids) => new TextEncoder().encode(decode(ids)),
    streamDecoder(): StreamDecoder {
      return { push: (id) => decode([id]), flush: () => "" };
    },
  };
}

/** The tokenizer of a text: its distinct characters, sorted by code point. */
export function charTokenizerFor(text: string): CharTokenizer {
  return charTokenizer([...new Set(text)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Marks a character-level tokenizer in tokenizer_config.json. */
export const CHAR_TOKENIZER_KIND = "characters";

/** tokenizer.json of a character-level tokenizer (see the header). */
export function charTokenizerJson(tok: Pick<CharTokenizer, "chars">): object {
  const vocab: Record<string, number> = {};
  tok.chars.forEach((c, i) => (vocab[c] = i));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: "Fuse" },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
             fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
}

/** tokenizer_config.json of a character-level tokenizer. */
export function charTokenizerConfig(): object {
  return {
    tokenizer_class: "PreTrainedTokenizerFast",
    mynah_tokenizer: CHAR_TOKENIZER_KIND,
    description: "character level: one id per distinct character of the training text, sorted by code point (mynah train --data FILE.txt)",
    model_max_length: 1_000_000,
    clean_up_tokenization_spaces: false,
    bos_token: null, eos_token: null, pad_token: null, unk_token: null,
  };
}

type Json = Record<string, unknown>;
const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);

/** True for a tokenizer.json in charTokenizerJson's layout. */
export function isCharTokenizerJson(json: unknown): boolean {
  if (!isObj(json) || !isObj(json.model)) return false;
  const m = json.model;
  return m.type === "BPE" && Array.isArray(m.merges) && m.merges.length === 0 && isObj(m.vocab) &&
    (json.pre_tokenizer ?? null) === null && (json.normalizer ?? null) === null &&
    isObj(json.decoder) && json.decoder.type === "Fuse" && (!Array.isArray(json.added_tokens) || json.added_tokens.length === 0);
}

/** The character-level tokenizer of a tokenizer.json in charTokenizerJson's layout; errors name the file. */
export function charTokenizerFromJson(json: unknown, file: string): CharTokenizer {
  if (!isCharTokenizerJson(json)) throw new Error(`${file}: not a character-level tokenizer.json (BPE with no merges, no pre-tokenizer, Fuse decoder)`);
  const vocab = (json as { model: { vocab: Record<string, unknown> } }).model.vocab;
  const chars: string[] = [];
  for (const [c, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${file}: model.vocab[${JSON.stringify(c)}] = ${JSON.stringify(id)} is not a non-negative integer id`);
    if ([...c].length !== 1) throw new Error(`${file}: model.vocab key ${JSON.stringify(c)} is not one character`);
    if (chars[id as number] !== undefined) throw new Error(`${file}: model.vocab id ${id} appears twice`);
    chars[id as number] = c;
  }
  for (let i = 0; i < chars.length; i++) if (chars[i] === undefined) throw new Error(`${file}: model.vocab has no id ${i} (ids must be 0..${chars.length - 1})`);
  return charTokenizer(chars);
}

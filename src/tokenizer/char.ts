/**
 * Character-level tokenizer: one id per distinct character of a corpus (sorted by code
 * point), as in nanoGPT's shakespeare_char. For small plain-text experiments and benchmarks.
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

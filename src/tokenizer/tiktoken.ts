/**
 * tiktoken vocabularies: `.tiktoken` rank files (one "base64-token rank" a line), and the
 * encoder JSON files the `tiktoken` npm package ships (`{pat_str, special_tokens, bpe_ranks}`,
 * bpe_ranks being lines of "marker firstRank token token ...", ranks consecutive per line).
 */
import { basename } from "node:path";
import { bpeTokenizer, type BpeTokenizer } from "./bpe.ts";
import { bytesKey } from "./bytes.ts";
import { CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN } from "./pattern.ts";

/** Patterns and special tokens of the well-known encodings, by name. */
export const TIKTOKEN_ENCODINGS: Record<string, { pattern: string; special: Record<string, number> }> = {
  gpt2: { pattern: GPT2_PATTERN, special: { "<|endoftext|>": 50256 } },
  r50k_base: { pattern: GPT2_PATTERN, special: { "<|endoftext|>": 50256 } },
  p50k_base: { pattern: GPT2_PATTERN, special: { "<|endoftext|>": 50256 } },
  cl100k_base: {
    pattern: CL100K_PATTERN,
    special: { "<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276 },
  },
  o200k_base: { pattern: O200K_PATTERN, special: { "<|endoftext|>": 199999, "<|endofprompt|>": 200018 } },
};

/** Builds a tokenizer from id → bytes ranks. */
export function tiktokenFromRanks(ranks: (Uint8Array | null)[], pattern: string, special: Record<string, number>): BpeTokenizer {
  return bpeTokenizer({ tokens: ranks, mode: "ranks", merges: [], special, pattern });
}

function decodeB64(s: string, where: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw new Error(`${where}: ${JSON.stringify(s.slice(0, 40))} is not base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
}

/**
 * Parses a `.tiktoken` rank file's text. `name` (the file name without extension, or given)
 * picks the pattern and special tokens of a known encoding unless `opts` gives them.
 */
export function parseTiktokenFile(
  text: string,
  file: string,
  opts: { pattern?: string; special?: Record<string, number> } = {},
): BpeTokenizer {
  const ranks: (Uint8Array | null)[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    const parts = line.trim().split(" ");
    const where = `${file}:${i + 1}`;
    if (parts.length !== 2) throw new Error(`${where}: expected "<base64 token> <rank>", got ${JSON.stringify(line.slice(0, 60))}`);
    const rank = Number(parts[1]);
    if (!Number.isInteger(rank) || rank < 0) throw new Error(`${where}: rank ${JSON.stringify(parts[1])} is not a non-negative integer`);
    ranks[rank] = decodeB64(parts[0], where);
  });
  if (ranks.length === 0) throw new Error(`${file}: no tokens in the rank file`);
  for (let i = 0; i < ranks.length; i++) ranks[i] ??= null;
  const known = TIKTOKEN_ENCODINGS[basename(file).replace(/\.tiktoken$/, "")];
  const pattern = opts.pattern ?? known?.pattern;
  if (!pattern) throw new Error(`${file}: unknown encoding name; pass its pre-split pattern (known: ${Object.keys(TIKTOKEN_ENCODINGS).join(", ")})`);
  return tiktokenFromRanks(ranks, pattern, opts.special ?? known?.special ?? {});
}

/** Parses the encoder JSON shipped by the `tiktoken` npm package (e.g. tiktoken/encoders/cl100k_base.json). */
export function parseTiktokenJson(json: unknown, file: string): BpeTokenizer {
  const j = json as { pat_str?: unknown; special_tokens?: unknown; bpe_ranks?: unknown };
  if (typeof j?.pat_str !== "string") throw new Error(`${file}: field "pat_str" is missing or not a string`);
  if (typeof j.bpe_ranks !== "string") throw new Error(`${file}: field "bpe_ranks" is missing or not a string`);
  if (typeof j.special_tokens !== "object" || j.special_tokens === null) throw new Error(`${file}: field "special_tokens" is missing or not an object`);
  const ranks: (Uint8Array | null)[] = [];
  j.bpe_ranks.split("\n").forEach((line, i) => {
    if (line === "") return;
    const parts = line.split(" ");
    const where = `${file}: bpe_ranks line ${i + 1}`;
    const first = Number(parts[1]);
    if (parts.length < 2 || !Number.isInteger(first)) throw new Error(`${where}: expected "<marker> <first rank> <tokens...>"`);
    for (let k = 2; k < parts.length; k++) ranks[first + k - 2] = decodeB64(parts[k], where);
  });
  for (let i = 0; i < ranks.length; i++) ranks[i] ??= null;
  const special: Record<string, number> = {};
  for (const [k, v] of Object.entries(j.special_tokens as Record<string, unknown>)) {
    if (!Number.isInteger(v)) throw new Error(`${file}: special token ${JSON.stringify(k)} has a non-integer id`);
    special[k] = v as number;
  }
  return tiktokenFromRanks(ranks, j.pat_str, special);
}

/**
 * A merge list for a tiktoken vocabulary, so it can be written as tokenizer.json: for each
 * token (in rank order) of two or more bytes, run tiktoken's merge loop on its bytes with only
 * lower ranks allowed; the two parts left are its merge. Tokens that do not end in exactly two
 * parts get no merge (they are still produced whole, as `ignore_merges` / wholePieces says).
 */
export function ranksToMerges(tok: BpeTokenizer): BpeTokenizer {
  const { spec } = tok;
  if (spec.mode !== "ranks") return tok;
  const byKey = new Map<string, number>();
  spec.tokens.forEach((t, id) => t && byKey.set(bytesKey(t), id));
  const merges: [number, number][] = [];
  spec.tokens.forEach((t, rank) => {
    if (!t || t.length < 2) return;
    // parts as [start, end) byte ranges; merge the pair whose concatenation has the lowest rank < rank
    const cuts: number[] = [];
    for (let i = 0; i <= t.length; i++) cuts.push(i);
    const rankOf = (i: number): number => {
      const r = byKey.get(bytesKey(t.subarray(cuts[i], cuts[i + 2])));
      return r !== undefined && r < rank ? r : Infinity;
    };
    while (cuts.length > 3) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 2 < cuts.length; i++) {
        const r = rankOf(i);
        if (r < bestRank) (bestRank = r), (best = i);
      }
      if (best < 0) break;
      cuts.splice(best + 1, 1);
    }
    if (cuts.length !== 3) return;
    const a = byKey.get(bytesKey(t.subarray(0, cuts[1])));
    const b = byKey.get(bytesKey(t.subarray(cuts[1])));
    if (a !== undefined && b !== undefined) merges.push([a, b]);
  });
  return bpeTokenizer({ ...spec, mode: "merges", merges, wholePieces: true });
}

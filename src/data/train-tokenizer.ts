/**
 * `mynah tokenizer train` on files: the documents `mynah data prepare` would put in shards,
 * read by the same layer (readers.ts: text, JSONL, JSON arrays, Parquet, .gz; --format,
 * --text-field, --doc-split, --skip-bad) and cleaned the same way (clean.ts: NFC, control
 * characters, --min-chars, duplicates), so the tokenizer learns from the text the shards hold.
 * A conversation contributes the content of each message (the template's markers are special
 * tokens, not learned).
 */
import { statSync } from "node:fs";
import { mergesWanted, trainBpeAsync, type TrainOptions } from "../tokenizer/train.ts";
import type { BpeTokenizer } from "../tokenizer/bpe.ts";
import { cleanDocs, countingOnBad, noDocumentsMessage, type SourceStats } from "./clean.ts";
import type { DataError, OnBad } from "./errors.ts";
import { expandInputsDetailed, type SkippedInput } from "./inputs.ts";
import { readFiles, type ReadOptions } from "./readers.ts";
import { docTexts } from "./records.ts";

export interface TrainTokenizerOptions {
  /** Files, folders (recursive) and globs. */
  inputs: string[];
  read?: Pick<ReadOptions, "format" | "textField" | "docSplit">;
  /** Cleaning as in `data prepare` (default: minChars 1, dedup on). */
  clean?: { minChars?: number; dedup?: boolean };
  /** Count and report bad records instead of stopping at the first. */
  skipBad?: boolean;
  onSkip?: (err: DataError) => void;
  /** Vocabulary size, special tokens, pattern, progress ("count" phase: input bytes read). */
  train: TrainOptions;
}

export interface TrainTokenizerResult {
  tokenizer: BpeTokenizer;
  /** Per input file: records, bad, duplicates, too short, documents used (docs.train). */
  sources: SourceStats[];
  /** Bad records skipped (--skip-bad). */
  skipped: number;
  /** Folder entries not read (broken or looping links, ...). */
  inputsSkipped: SkippedInput[];
}

/** Trains a byte-level BPE tokenizer on the cleaned documents of `inputs`. */
export async function trainTokenizerOnInputs(o: TrainTokenizerOptions): Promise<TrainTokenizerResult> {
  mergesWanted(o.train); // a bad vocabulary size fails before anything is read
  const { files, skipped: inputsSkipped } = expandInputsDetailed(o.inputs);
  const total = files.reduce((n, f) => n + statSync(f).size, 0);
  let done = 0;
  const onBytes = (n: number): void => o.train.onProgress?.({ phase: "count", done: (done += n), total });
  const stats = new Map<string, SourceStats>();
  let skipped = 0;
  const onBad: OnBad = o.skipBad ? (e) => (skipped++, o.onSkip?.(e)) : undefined;
  const clean = { minChars: o.clean?.minChars ?? 1, dedup: o.clean?.dedup ?? true };
  const read = { format: o.read?.format ?? "auto", textField: o.read?.textField ?? "text", docSplit: o.read?.docSplit ?? "blank" } as const;
  const docs = cleanDocs(readFiles(files, { ...read, onBad: countingOnBad(stats, onBad), onBytes }), { ...clean, valFraction: 0, onBad }, stats);
  let used = 0;
  async function* texts(): AsyncGenerator<string> {
    for await (const d of docs) {
      used++;
      yield* docTexts(d);
    }
  }
  let tokenizer: BpeTokenizer;
  try {
    tokenizer = await trainBpeAsync(texts(), o.train);
  } catch (err) {
    if (used === 0 && /corpus is empty/.test((err as Error).message)) throw new Error(noDocumentsMessage("no documents to learn from", files, stats, clean));
    throw err;
  }
  return { tokenizer, sources: files.map((f) => stats.get(f)!).filter(Boolean), skipped, inputsSkipped };
}

/**
 * `mynah tokenizer train|encode|decode|info`: thin wrappers over src/tokenizer.
 */
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { INPUT_FORMATS, type DocSplit, type InputFormat } from "../data/readers.ts";
import { trainTokenizerOnInputs } from "../data/train-tokenizer.ts";
import { writeAtomic } from "../core/atomic-write.ts";
import { encodeFile } from "../tokenizer/parallel.ts";
import { choiceOption, intOption } from "./options.ts";
import { CHAT_TEMPLATE } from "../data/chat-template.ts";
import { loadTokenizer, saveTokenizer, DEFAULT_SPECIAL_TOKENS, PATTERN_PRESETS, type PatternPreset, type TrainProgress } from "../tokenizer/index.ts";

/**
 * Training progress on stderr with ETA: a bar redrawn at most 10 times a second on a
 * terminal, otherwise (logs) one line every 5 seconds and at the end of each phase.
 */
function progressBar(tty: boolean): (p: TrainProgress) => void {
  let phase = "";
  let start = 0;
  let last = 0;
  return (p) => {
    const now = Date.now();
    const ended = p.total > 0 && p.done >= p.total;
    if (p.phase !== phase) {
      if (phase && tty) process.stderr.write("\n");
      phase = p.phase;
      start = now;
      last = 0;
    } else if (now - last < (tty ? 100 : 5000) && !ended) return;
    last = now;
    const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
    const eta = frac > 0 ? ((now - start) / 1000) * (1 / frac - 1) : NaN;
    const what = p.phase === "count" ? `counting ${(p.done / 1e6).toFixed(1)}/${(p.total / 1e6).toFixed(1)} MB` : `merges ${p.done}/${p.total}`;
    const line = `${(frac * 100).toFixed(0).padStart(3)}% ${what}  ETA ${Number.isFinite(eta) ? eta.toFixed(0) + "s" : "?"}`;
    if (tty) process.stderr.write(`\r${"#".repeat(Math.round(frac * 30)).padEnd(30, ".")} ${line}   `);
    else process.stderr.write(`tokenizer train: ${line}\n`);
  };
}

interface TrainFlags {
  out: string; format: string; textField: string; docSplit: string; minChars: number; dedup: boolean; skipBad: boolean;
  vocabSize: number; special: string; chatTemplate?: string | false; minPieceCount: number; pattern: string;
}

export function registerTokenizer(program: Command): void {
  const cmd = program.command("tokenizer").description("Train, inspect and use byte-level BPE tokenizers");

  cmd
    .command("train")
    .description("Train a byte-level BPE tokenizer on the documents of text, JSONL or Parquet files (as `mynah data` reads them; .gz too)")
    .argument("<inputs...>", "input files, folders or globs")
    .addOption(choiceOption("--format <format>", "record shape", INPUT_FORMATS, "auto"))
    .option("--text-field <name>", "field holding the text in JSON text records (as `mynah data prepare`)", "text")
    .addOption(choiceOption("--doc-split <mode>", "plain text documents end at: blank (blank lines), line (every line), file", ["blank", "line", "file"], "blank"))
    .addOption(intOption("--min-chars <n>", "drop documents shorter than this after cleaning (as `mynah data prepare`)", { min: 0 }, 1))
    .option("--no-dedup", "keep exact duplicate documents")
    .option("--skip-bad", "skip and count bad records instead of stopping at the first", false)
    .requiredOption("--out <dir>", "output directory (tokenizer.json, tokenizer_config.json)")
    .addOption(intOption("--vocab-size <n>", "vocabulary size, special tokens included", { min: 1, max: 2 ** 31 - 1 }, 32768))
    .option("--special <tokens>", "comma-separated special tokens (ids right after the merges)", DEFAULT_SPECIAL_TOKENS.join(","))
    .option("--chat-template <file>", "Jinja chat template file for tokenizer_config.json (default: mynah's ChatML template)")
    .option("--no-chat-template", "store no chat template")
    .addOption(intOption("--min-piece-count <n>", "ignore pre-split pieces seen fewer times", { min: 1 }, 1))
    .addOption(choiceOption("--pattern <name>", "pre-split regex (mynah splits Chinese runs from Latin letters; " +
      "the others are reproduced exactly by llama.cpp after `mynah export --format gguf`; llama3 also emits whole-token pieces unmerged, as Llama 3 does)", Object.keys(PATTERN_PRESETS), "mynah"))
    .action(async (inputs: string[], o: TrainFlags) => {
      const t0 = Date.now();
      const preset = PATTERN_PRESETS[o.pattern as PatternPreset];
      const minChars = o.minChars;
      const progress = progressBar(process.stderr.isTTY === true);
      let shown = 0;
      // The same reading and cleaning as `mynah data prepare`: the tokenizer learns the text the shards will hold.
      const r = await trainTokenizerOnInputs({
        inputs,
        read: { format: o.format as InputFormat, textField: o.textField, docSplit: o.docSplit as DocSplit },
        clean: { minChars, dedup: o.dedup },
        skipBad: o.skipBad,
        onSkip: (err) => {
          if (shown++ < 10) process.stderr.write(`${process.stderr.isTTY ? "\r" : ""}skipped ${err.message}\n`);
        },
        train: {
          vocabSize: o.vocabSize,
          specialTokens: o.special.split(",").filter((s) => s !== ""),
          minPieceCount: o.minPieceCount,
          pattern: preset.pattern,
          wholePieces: preset.wholePieces,
          onProgress: progress,
        },
      });
      const tok = r.tokenizer;
      if (process.stderr.isTTY) process.stderr.write("\n");
      const chatTemplate = o.chatTemplate === false ? undefined : typeof o.chatTemplate === "string" ? readFileSync(o.chatTemplate, "utf8") : CHAT_TEMPLATE;
      saveTokenizer(o.out, tok, { chatTemplate });
      const short = tok.vocabSize < Number(o.vocabSize) ? ` (asked for ${o.vocabSize}: the corpus has no more pairs to merge)` : "";
      const docs = r.sources.reduce((n, st) => n + st.docs.train, 0);
      const dropped = r.sources.reduce((n, st) => n + st.duplicates + st.tooShort, 0);
      console.log(`read ${docs} documents from ${r.sources.length} files` + (dropped ? ` (${dropped} duplicates or shorter than --min-chars dropped)` : "") +
        (r.skipped ? `; ${r.skipped} bad records skipped` : "") + (r.inputsSkipped.length ? `; ${r.inputsSkipped.length} folder entries not read (${r.inputsSkipped.slice(0, 3).map((x) => `${x.path}: ${x.reason}`).join("; ")})` : ""));
      console.log(`trained ${tok.vocabSize} tokens (${tok.numMerges} merges)${short} in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${o.out}`);
    });

  cmd
    .command("encode")
    .description("Print the token ids of a text, or write a file's ids as uint32 (--out), using all cores")
    .requiredOption("--tokenizer <path>", "tokenizer directory, tokenizer.json or .tiktoken file")
    .option("--text <text>", "text to encode (default: standard input)")
    .option("--file <file>", "file to encode")
    .option("--out <file>", "write the ids as little-endian uint32 to this file instead of printing them")
    .addOption(intOption("--workers <n>", "worker threads for --file (default: all cores)", { min: 1, max: 4096 }))
    .option("--allow-special", "encode special-token text as special tokens", false)
    .action(async (o: { tokenizer: string; text?: string; file?: string; out?: string; workers?: number; allowSpecial: boolean }) => {
      const tok = loadTokenizer(o.tokenizer);
      const allowedSpecial = o.allowSpecial ? ("all" as const) : undefined;
      const t0 = Date.now();
      let ids: ArrayLike<number>;
      if (o.file && o.text === undefined) {
        ids = await encodeFile(tok, o.file, { allowedSpecial, workers: o.workers });
      } else {
        ids = tok.encode(o.text ?? readFileSync(0, "utf8"), { allowedSpecial });
      }
      if (!o.out) {
        console.log(Array.from(ids).join(" "));
        return;
      }
      const u32 = Uint32Array.from(ids);
      writeAtomic(o.out, new Uint8Array(u32.buffer));
      console.log(`${u32.length} tokens → ${o.out} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });

  cmd
    .command("decode")
    .description("Print the text of token ids")
    .requiredOption("--tokenizer <path>", "tokenizer directory, tokenizer.json or .tiktoken file")
    .argument("[ids...]", "token ids (default: read from standard input)")
    .action((ids: string[], o: { tokenizer: string }) => {
      const tok = loadTokenizer(o.tokenizer);
      const src = ids.length ? ids : readFileSync(0, "utf8").trim().split(/[\s,]+/);
      const nums = src.filter((s) => s !== "").map((s) => {
        const n = Number(s);
        if (!Number.isInteger(n)) throw new Error(`decode: ${JSON.stringify(s)} is not a token id`);
        return n;
      });
      console.log(tok.decode(nums));
    });

  cmd
    .command("convert")
    .description("Write any tokenizer mynah reads (.tiktoken, tiktoken encoder JSON, tokenizer.json) as tokenizer.json + tokenizer_config.json")
    .requiredOption("--tokenizer <path>", "tokenizer directory, tokenizer.json, .tiktoken file or tiktoken encoder JSON")
    .requiredOption("--out <dir>", "output directory")
    .option("--bos-token <text>", "bos_token for tokenizer_config.json")
    .option("--eos-token <text>", "eos_token for tokenizer_config.json")
    .action((o: { tokenizer: string; out: string; bosToken?: string; eosToken?: string }) => {
      const tok = loadTokenizer(o.tokenizer);
      saveTokenizer(o.out, tok, { bosToken: o.bosToken, eosToken: o.eosToken });
      console.log(`wrote ${tok.vocabSize} tokens → ${o.out}`);
    });

  cmd
    .command("info")
    .description("Print a tokenizer's size, special tokens and pattern")
    .requiredOption("--tokenizer <path>", "tokenizer directory, tokenizer.json or .tiktoken file")
    .action((o: { tokenizer: string }) => {
      const tok = loadTokenizer(o.tokenizer);
      console.log(`vocabulary: ${tok.vocabSize} ids (${tok.spec.mode === "merges" ? `${tok.numMerges} merges` : "tiktoken ranks"})`);
      console.log(`special: ${[...tok.special].map(([s, id]) => `${s}=${id}`).join(" ")}`);
      console.log(`pattern: ${tok.spec.pattern}`);
    });
}

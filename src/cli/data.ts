/**
 * `mynah data prepare|inspect`: thin wrappers over src/data/prepare.ts.
 */
import type { Command } from "commander";
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import { prepareData, readManifest, type Manifest, type PrepareProgress } from "../data/prepare.ts";
import { INPUT_FORMATS, type DocSplit, type InputFormat } from "../data/readers.ts";
import { choiceOption, intOption, numOption } from "./options.ts";

interface PrepareFlags {
  tokenizer: string;
  out: string;
  format: string;
  textField: string;
  docSplit: string;
  valFraction: number;
  seed: number;
  minChars: number;
  dedup: boolean;
  threads: number;
  shardTokens: number;
  skipBad: boolean;
  force: boolean;
}

/** One progress line on stderr: MB read, MB/s, tokens, ETA. */
function progressLine(p: PrepareProgress): void {
  const mb = p.bytesRead / 1e6;
  const rate = p.seconds > 0 ? mb / p.seconds : 0;
  const frac = p.bytesTotal > 0 ? Math.min(1, p.bytesRead / p.bytesTotal) : 0;
  const eta = rate > 0 ? Math.max(0, (p.bytesTotal / 1e6 - mb) / rate) : NaN;
  // At the end, how the batches were spread over the tokenizing threads (this one first).
  const spread = p.done && p.encodedOn.length > 1 ? `  batches per thread ${p.encodedOn.join(" + ")}` : "";
  const line = `${(frac * 100).toFixed(0).padStart(3)}%  ${mb.toFixed(1)}/${(p.bytesTotal / 1e6).toFixed(1)} MB  ${rate.toFixed(1)} MB/s  ${(p.tokens / 1e6).toFixed(2)} M tokens  ETA ${Number.isFinite(eta) ? eta.toFixed(0) + " s" : "?"}${spread}`;
  if (process.stderr.isTTY) process.stderr.write(`\r${line}   ${p.done ? "\n" : ""}`);
  else if (p.done) process.stderr.write(line + "\n");
}

/** The summary table: what was read, skipped and written, per source. */
export function formatManifest(m: Manifest): string {
  const rows = [["source", "records", "bad", "dup", "short", "train docs", "val docs", "train tokens", "val tokens"]];
  for (const s of m.sources)
    rows.push([basename(s.file), s.records, s.bad, s.duplicates, s.tooShort, s.docs.train, s.docs.val, s.tokens.train, s.tokens.val].map(String));
  const t = (k: (s: Manifest["sources"][number]) => number): string => String(m.sources.reduce((n, s) => n + k(s), 0));
  rows.push(["total", t((s) => s.records), t((s) => s.bad), t((s) => s.duplicates), t((s) => s.tooShort), t((s) => s.docs.train), t((s) => s.docs.val), t((s) => s.tokens.train), t((s) => s.tokens.val)]);
  const w = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const lines = rows.map((r) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]) : c.padStart(w[j]))).join("  "));
  const bytes = m.sources.reduce((n, s) => n + s.bytes, 0);
  lines.push(
    `${m.splits.train.shards.length} train + ${m.splits.val.shards.length} val shards (uint${m.bytesPerToken * 8}), ` +
      `vocab ${m.tokenizer.vocabSize}; ${(bytes / 1e6).toFixed(1)} MB in ${m.seconds.toFixed(1)} s (${(bytes / 1e6 / Math.max(m.seconds, 1e-9)).toFixed(1)} MB/s)` +
      (m.skipped ? `; ${m.skipped} bad records skipped` : ""),
  );
  const left = m.inputsSkipped ?? [];
  if (left.length) {
    lines.push(`${left.length} folder ${left.length === 1 ? "entry" : "entries"} not read:`);
    for (const x of left.slice(0, 10)) lines.push(`  ${x.path}: ${x.reason}`);
    if (left.length > 10) lines.push(`  … ${left.length - 10} more (manifest.json: inputsSkipped)`);
  }
  return lines.join("\n");
}

export function registerData(program: Command): void {
  const cmd = program.command("data").description("Prepare training data: read, clean, split, tokenize into shards");

  cmd
    .command("prepare")
    .description("Tokenize text files, folders, globs, JSONL (text, chat, ShareGPT, Alpaca) or Parquet into binary shards + manifest.json")
    .argument("<inputs...>", "files, folders (recursive) or globs; .gz is read transparently")
    .requiredOption("--tokenizer <dir>", "tokenizer folder from `mynah tokenizer train`")
    .requiredOption("--out <dir>", "output folder for shards and manifest.json")
    .addOption(choiceOption("--format <format>", "record format (auto detects per file)", INPUT_FORMATS, "auto"))
    .option("--text-field <name>", "field holding the text in JSON text records", "text")
    .addOption(choiceOption("--doc-split <mode>", "plain text documents end at: blank (blank lines), line (every line), file", ["blank", "line", "file"], "blank"))
    .addOption(numOption("--val-fraction <x>", "fraction of documents held out as the val split (by content hash)", { min: 0, max: 0.5 }, 0.01))
    .addOption(intOption("--seed <n>", "seed of the train/val split", { min: 0, max: 2 ** 32 - 1 }, 0))
    .addOption(intOption("--min-chars <n>", "drop documents shorter than this after cleaning", { min: 0 }, 1))
    .option("--no-dedup", "keep exact duplicate documents")
    .addOption(intOption("--threads <n>", "tokenizing threads", { min: 1, max: 4096 }, availableParallelism()))
    .addOption(intOption("--shard-tokens <n>", "tokens per shard (a shard holds whole documents)", { min: 1, max: 2 ** 31 - 1 }, 1 << 24))
    .option("--skip-bad", "skip and count bad records instead of stopping at the first", false)
    .option("--force", "replace shards prepared from other inputs or options in --out", false)
    .action(async (inputs: string[], o: PrepareFlags) => {
      let shown = 0;
      const m = await prepareData({
        inputs,
        out: o.out,
        tokenizer: o.tokenizer,
        read: { format: o.format as InputFormat, textField: o.textField, docSplit: o.docSplit as DocSplit },
        clean: { valFraction: o.valFraction, seed: o.seed, minChars: o.minChars, dedup: o.dedup },
        threads: o.threads,
        shardTokens: o.shardTokens,
        skipBad: o.skipBad,
        force: o.force,
        onProgress: progressLine,
        onSkip: (err) => {
          // The first few skipped records are shown; the rest are counted in the summary.
          if (shown++ < 10) process.stderr.write(`${process.stderr.isTTY ? "\r" : ""}skipped ${err.message}\n`);
        },
      });
      console.log(formatManifest(m));
      console.log(`→ ${o.out}`);
    });

  cmd
    .command("inspect")
    .description("Print the summary of a prepared folder")
    .argument("<dir>", "folder written by `mynah data prepare`")
    .action((dir: string) => {
      console.log(formatManifest(readManifest(dir)));
    });
}

/**
 * `mynah data prepare`: read → clean → split → tokenize → shards + manifest.json.
 *
 * The main thread reads the files and keeps what needs input order: deduplication (a compact
 * hash set), the train/val split, per-file statistics, and writing shards. The per-document
 * work, cleaning (NFC, control characters, the conversation check, --min-chars), the content
 * digest and tokenizing, runs in batches on the tokenizing threads (encode-pool.ts: the main
 * thread itself and threads − 1 worker threads), whose results are taken in order, so the
 * shards are the same whatever the thread count or timing. Memory stays bounded: a few
 * batches in flight per thread, one open shard per split streamed to disk, 12 bytes of digest
 * per distinct document.
 *
 * Interrupted runs: a shard is a temp file until it is complete (then fsync + rename), and
 * after each shard `.prepare-state.json` records, per split, the documents already in
 * finished shards. Re-running the same command with the same inputs resumes: it re-reads and
 * re-cleans (for dedup and the split) but does not tokenize what is done. Nothing here uses
 * the native addon: tokenizing is JavaScript.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { loadTokenizer } from "../tokenizer/io.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { countingOnBad, DocSorter, noDocumentsMessage, type CleanOptions, type SourceStats, type Split } from "./clean.ts";
import { eotId, STATUS_NAMES } from "./encode-docs.ts";
import { EncodePool, type Ticket } from "./encode-pool.ts";
import { DataError, type OnBad } from "./errors.ts";
import { expandInputsDetailed, type SkippedInput } from "./inputs.ts";
import { readFiles, type ReadOptions } from "./readers.ts";
import type { DocBody } from "./records.ts";
import { bytesPerTokenFor, ShardWriter, SHARD_VERSION } from "./shards.ts";

export const MANIFEST = "manifest.json";
const STATE = ".prepare-state.json";
const SPLITS: readonly Split[] = ["train", "val"];

export interface PrepareOptions {
  /** Files, folders (recursive) and globs. */
  inputs: string[];
  /** Output folder: <split>-NNNNNN.bin shards and manifest.json. */
  out: string;
  /** Tokenizer folder (from `mynah tokenizer train`) or tokenizer.json. */
  tokenizer: string;
  read?: Pick<ReadOptions, "format" | "textField" | "docSplit">;
  clean?: Omit<CleanOptions, "onBad">;
  /**
   * Tokenizing threads (default: all cores): the calling thread and threads − 1 workers; 1
   * tokenizes on the calling thread alone.
   */
  threads?: number;
  /** Testing: with workers, every batch is tokenized on one (the calling thread only reads and writes). */
  workersOnly?: boolean;
  /** A shard is closed once it holds at least this many tokens (default 2^24). */
  shardTokens?: number;
  /** Count and report bad records instead of stopping at the first. */
  skipBad?: boolean;
  /** Replace an output folder prepared with other inputs or options. */
  force?: boolean;
  onProgress?: (p: PrepareProgress) => void;
  /** Least milliseconds between two onProgress calls (default 200; 0 = after every batch). */
  progressIntervalMs?: number;
  /** Each skipped bad record (with skipBad). */
  onSkip?: (err: DataError) => void;
}

export interface PrepareProgress {
  bytesRead: number;
  /** Sum of input file sizes (gzip files count compressed, so the fraction is approximate). */
  bytesTotal: number;
  tokens: number;
  docs: number;
  seconds: number;
  done: boolean;
  /** Batches tokenized so far by each thread: [the calling thread, worker 1, ...]. */
  encodedOn: number[];
}

export interface ShardInfo {
  file: string;
  tokens: number;
  docs: number;
}

export interface SourceSummary extends SourceStats {
  bytes: number;
  tokens: Record<Split, number>;
}

export interface Manifest {
  format: "mynah-shards";
  version: 2;
  /** Hash of inputs (names, sizes, times), options and tokenizer: what resume compares. */
  configKey: string;
  /**
   * The tokenizer the shards were made with, copied into the folder (`file`, relative to it,
   * e.g. "tokenizer/tokenizer.json", with tokenizer_config.json beside it when the source had
   * one), so the folder is self-contained and can be moved. `source`: where it was copied from.
   */
  tokenizer: { file: string; sha256: string; vocabSize: number; eot: number; source: string };
  bytesPerToken: 2 | 4;
  options: { read: PrepareOptions["read"]; clean: PrepareOptions["clean"]; shardTokens: number };
  sources: SourceSummary[];
  splits: Record<Split, { docs: number; tokens: number; shards: ShardInfo[] }>;
  /** Bad records skipped (all sources). */
  skipped: number;
  /** Folder entries not read: broken or looping symbolic links, non-files, second paths to one file. */
  inputsSkipped: SkippedInput[];
  seconds: number;
}

interface SplitState {
  shards: ShardInfo[];
  /** Documents of this split inside finished shards (skipped on resume). */
  docs: number;
  /** Tokens per source file inside finished shards. */
  sourceTokens: Record<string, number>;
}
interface PrepareState {
  configKey: string;
  splits: Record<Split, SplitState>;
}

function tokenizerFile(path: string): string {
  return statSync(path).isDirectory() ? join(path, "tokenizer.json") : path;
}

/** Folder inside a prepared folder holding its copy of the tokenizer. */
export const TOKENIZER_DIR = "tokenizer";

/**
 * Copies the tokenizer file (and the tokenizer_config.json beside it) into OUT/tokenizer/;
 * returns the copy's path relative to OUT.
 */
function copyTokenizer(out: string, tokPath: string, bytes: Uint8Array): string {
  const dir = join(out, TOKENIZER_DIR);
  mkdirSync(dir, { recursive: true });
  const name = basename(tokPath);
  writeAtomic(join(dir, name), bytes);
  const config = join(dirname(tokPath), "tokenizer_config.json");
  if (name !== "tokenizer_config.json" && existsSync(config)) writeAtomic(join(dir, "tokenizer_config.json"), readFileSync(config));
  else rmSync(join(dir, "tokenizer_config.json"), { force: true });
  return `${TOKENIZER_DIR}/${name}`;
}

/**
 * The tokenizer of a prepared folder: its own copy, checked against the SHA-256 recorded at
 * prepare time (a changed copy would make checkpoints whose tokenizer does not match the shards).
 */
export function loadPreparedTokenizer(dir: string, m: Manifest = readManifest(dir)): { tokenizer: Tokenizer; path: string } {
  const path = join(dir, m.tokenizer.file);
  if (!existsSync(path)) throw new Error(`${dir}: its tokenizer copy ${m.tokenizer.file} is missing; prepare the folder again with \`mynah data prepare ... --force\``);
  const sha = createHash("sha256").update(readFileSync(path)).digest("hex");
  if (sha !== m.tokenizer.sha256)
    throw new Error(`${path}: SHA-256 ${sha.slice(0, 12)}… differs from the ${m.tokenizer.sha256.slice(0, 12)}… the shards were made with (the tokenizer changed after \`mynah data prepare\`); prepare the folder again with --force`);
  return { tokenizer: loadTokenizer(path), path };
}

function emptyState(configKey: string): PrepareState {
  const s = (): SplitState => ({ shards: [], docs: 0, sourceTokens: {} });
  return { configKey, splits: { train: s(), val: s() } };
}

function readJson<T>(path: string): T | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return null;
  }
}

const isOurs = (f: string): boolean => /^(train|val)-\d{6}\.bin(\.tmp-\d+)?$/.test(f) || f === MANIFEST || f === STATE;

/** Documents per batch sent to a worker (by characters). */
const BATCH_CHARS = 1 << 18;

/**
 * Prepares shards in `opts.out`; returns the manifest (also written as manifest.json).
 * Throws a DataError naming file:line for the first bad record unless skipBad.
 */
export async function prepareData(opts: PrepareOptions): Promise<Manifest> {
  const t0 = Date.now();
  const { files, skipped: inputsSkipped } = expandInputsDetailed(opts.inputs);
  const tokPath = tokenizerFile(opts.tokenizer);
  const tokText = readFileSync(tokPath);
  const tokHash = createHash("sha256").update(tokText).digest("hex");
  const tok = loadTokenizer(opts.tokenizer);
  const eot = eotId(tok);
  const bpt = bytesPerTokenFor(tok.vocabSize);
  const shardTokens = opts.shardTokens ?? 1 << 24;
  const read = { format: opts.read?.format ?? "auto", textField: opts.read?.textField ?? "text", docSplit: opts.read?.docSplit ?? "blank" } as const;
  const clean = { minChars: opts.clean?.minChars ?? 1, valFraction: opts.clean?.valFraction ?? 0, seed: opts.clean?.seed ?? 0, dedup: opts.clean?.dedup ?? true };
  const sizes = files.map((f) => statSync(f));
  const configKey = createHash("sha256")
    .update(JSON.stringify({ version: SHARD_VERSION, files: files.map((f, i) => [resolve(f), sizes[i].size, sizes[i].mtimeMs]), read, clean, shardTokens, tokHash, skipBad: !!opts.skipBad }))
    .digest("hex")
    .slice(0, 32);

  // The output folder: fresh, resumable, already done, or someone else's (needs --force).
  mkdirSync(opts.out, { recursive: true });
  const manifestPath = join(opts.out, MANIFEST);
  const statePath = join(opts.out, STATE);
  const oldManifest = readJson<Manifest>(manifestPath);
  let state = readJson<PrepareState>(statePath);
  if (oldManifest && oldManifest.configKey === configKey) return oldManifest;
  if ((oldManifest || state) && (state?.configKey ?? oldManifest?.configKey) !== configKey) {
    const older = oldManifest && oldManifest.version !== 2 ? " (by an older mynah)" : "";
    if (!opts.force) throw new Error(`${opts.out} holds shards prepared from other inputs or options${older}; choose another --out or pass --force to replace them`);
    state = null;
  }
  state ??= emptyState(configKey);
  const keep = new Set(SPLITS.flatMap((s) => state!.splits[s].shards.map((x) => x.file)));
  for (const f of readdirSync(opts.out)) if (isOurs(f) && f !== STATE && !keep.has(f)) unlinkSync(join(opts.out, f));
  // The folder's own copy of the tokenizer: what the workers, `mynah train` and its checkpoints use.
  const tokFile = copyTokenizer(opts.out, tokPath, tokText);

  const stats = new Map<string, SourceStats>();
  let skipped = 0;
  const onBad: OnBad = opts.skipBad
    ? (err) => {
        skipped++;
        opts.onSkip?.(err);
      }
    : undefined;
  let bytesRead = 0;
  const bytesTotal = sizes.reduce((n, s) => n + s.size, 0);
  // Reading (and the stateful part of cleaning: dedup, split, statistics) stays on this thread, in
  // input order; the per-document work (cleaning, digest, tokenizing) runs on the workers.
  const docs = readFiles(files, { ...read, onBad: countingOnBad(stats, onBad), onBytes: (n) => (bytesRead += n) });
  const sorter = new DocSorter({ ...clean, onBad }, stats);

  // Per split: the open shard, documents seen so far (for resume), pending source tokens.
  const writers: Record<Split, ShardWriter | null> = { train: null, val: null };
  const seen: Record<Split, number> = { train: 0, val: 0 };
  const done: Record<Split, number> = { train: state.splits.train.docs, val: state.splits.val.docs };
  const pendingTokens: Record<Split, Record<string, number>> = { train: {}, val: {} };
  let tokensOut = 0;
  let docsOut = 0;
  const shardName = (s: Split): string => `${s}-${String(state!.splits[s].shards.length).padStart(6, "0")}.bin`;
  const commit = (s: Split): void => {
    const w = writers[s];
    if (!w) return;
    const h = w.commit();
    writers[s] = null;
    const st = state!.splits[s];
    st.shards.push({ file: shardName(s), tokens: h.tokens, docs: h.docs });
    st.docs += h.docs;
    for (const [f, n] of Object.entries(pendingTokens[s])) st.sourceTokens[f] = (st.sourceTokens[f] ?? 0) + n;
    pendingTokens[s] = {};
    writeAtomic(statePath, JSON.stringify(state) + "\n");
  };
  const write = (s: Split, file: string, ids: Uint32Array): void => {
    writers[s] ??= new ShardWriter(join(opts.out, shardName(s)), bpt);
    writers[s]!.append(ids);
    pendingTokens[s][file] = (pendingTokens[s][file] ?? 0) + ids.length;
    tokensOut += ids.length;
    docsOut++;
    if (writers[s]!.tokens >= shardTokens) commit(s);
  };

  type Meta = { file: string; line: number; unit: "line" | "row" };
  // A batch in flight: its documents (kept until its result is in, for resubmitting while resuming), where
  // they came from, and, for a resubmitted batch, the splits already decided.
  interface InFlight { ticket: Ticket; docs: DocBody[]; meta: Meta[]; decided?: Split[] }
  const inFlight: InFlight[] = [];
  // Resuming: documents inside finished shards are cleaned (for dedup and the split) but not tokenized.
  let resuming = done.train + done.val > 0;
  let lastReport = 0;
  const report = (final: boolean): void => {
    const now = Date.now();
    if (!opts.onProgress || (!final && now - lastReport < (opts.progressIntervalMs ?? 200))) return;
    lastReport = now;
    opts.onProgress({ bytesRead, bytesTotal, tokens: tokensOut, docs: docsOut, seconds: (now - t0) / 1000, done: final, encodedOn: [...pool.encodedOn] });
  };
  const submit = (d: DocBody[], meta: Meta[], tokenize: boolean, decided?: Split[]): InFlight => ({
    // A resubmitted batch is needed before everything queued after it.
    ticket: pool.submit({ docs: d, minChars: clean.minChars, tokenize }, decided !== undefined), docs: d, meta, decided,
  });
  const drainOne = async (): Promise<void> => {
    const f = inFlight.shift()!;
    // Rather than wait, this thread encodes what no worker has taken (everything with 1 thread), and
    // between two batches lets the workers' replies in so they are handed more work at once.
    while (!f.ticket.settled && pool.runOne()) await new Promise((r) => setImmediate(r));
    const r = await f.ticket.promise;
    let o = 0;
    const redo: { doc: DocBody; meta: Meta; split: Split }[] = [];
    f.meta.forEach((m, i) => {
      const n = r.lens?.[i] ?? 0;
      const ids = r.ids?.subarray(o, o + n);
      o += n;
      // A resubmitted batch was deduplicated and split the first time round.
      const split = f.decided ? f.decided[i] : sorter.accept(m, STATUS_NAMES[r.status[i]], r.problems[i], r.digests.subarray(12 * i, 12 * i + 12), r.chars[i]);
      if (split === null) return;
      if (!f.decided && seen[split]++ < done[split]) return; // inside a finished shard
      if (ids) write(split, m.file, ids);
      else redo.push({ doc: f.docs[i], meta: m, split });
    });
    if (resuming && seen.train >= done.train && seen.val >= done.val) resuming = false;
    // Past the finished shards: the documents of this batch that go on are tokenized now, before later batches.
    if (redo.length) inFlight.unshift(submit(redo.map((x) => x.doc), redo.map((x) => x.meta), true, redo.map((x) => x.split)));
    report(false);
  };
  // The tokenizing threads: this one and threads − 1 workers, which start now, so their start-up
  // overlaps reading (and this thread encoding) the first batches.
  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const pool = new EncodePool(tok, join(opts.out, tokFile), { threads, workersOnly: opts.workersOnly });
  // Batches read ahead: enough to keep every worker's two full, with some left for this thread.
  const maxInFlight = 2 * threads + 1;
  let batch: DocBody[] = [];
  let meta: Meta[] = [];
  let chars = 0;
  const dispatch = async (): Promise<void> => {
    if (batch.length === 0) return;
    inFlight.push(submit(batch, meta, !resuming));
    batch = [];
    meta = [];
    chars = 0;
    while (inFlight.length >= maxInFlight) await drainOne();
  };
  try {
    for await (const d of docs) {
      if (d.kind === "preference") throw new DataError(d.file, d.line, "a preference pair (chosen/rejected) is data for `mynah dpo`, not for pretraining", d.unit);
      batch.push(d.kind === "text" ? { kind: "text", text: d.text } : { kind: "chat", messages: d.messages });
      meta.push({ file: d.file, line: d.line, unit: d.unit });
      chars += d.kind === "text" ? d.text.length : d.messages.reduce((n, m) => n + m.content.length, 0);
      if (chars >= BATCH_CHARS) await dispatch();
    }
    await dispatch();
    while (inFlight.length) await drainOne();
    for (const s of SPLITS) commit(s);
  } catch (err) {
    for (const s of SPLITS) writers[s]?.abort();
    throw err; // the batches still in flight are dropped by pool.close()
  } finally {
    await pool.close();
  }
  report(true);
  if (SPLITS.every((sp) => state!.splits[sp].docs === 0)) throw new Error(noDocumentsMessage("no documents to write; nothing was prepared", files, stats, clean));

  const sources: SourceSummary[] = files.map((f, i) => {
    const st = stats.get(f) ?? { file: f, records: 0, bad: 0, duplicates: 0, tooShort: 0, docs: { train: 0, val: 0 }, chars: { train: 0, val: 0 } };
    return { ...st, bytes: sizes[i].size, tokens: { train: state!.splits.train.sourceTokens[f] ?? 0, val: state!.splits.val.sourceTokens[f] ?? 0 } };
  });
  const split = (s: Split): Manifest["splits"][Split] => {
    const sh = state!.splits[s].shards;
    return { docs: sh.reduce((n, x) => n + x.docs, 0), tokens: sh.reduce((n, x) => n + x.tokens, 0), shards: sh };
  };
  const manifest: Manifest = {
    format: "mynah-shards",
    version: 2,
    configKey,
    tokenizer: { file: tokFile, sha256: tokHash, vocabSize: tok.vocabSize, eot, source: resolve(opts.tokenizer) },
    bytesPerToken: bpt,
    options: { read, clean, shardTokens },
    sources,
    splits: { train: split("train"), val: split("val") },
    skipped,
    inputsSkipped,
    seconds: (Date.now() - t0) / 1000,
  };
  writeAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
  if (existsSync(statePath)) unlinkSync(statePath);
  return manifest;
}

/** Reads and checks a prepared folder's manifest. */
export function readManifest(dir: string): Manifest {
  const path = join(dir, MANIFEST);
  if (!existsSync(path)) throw new Error(`${dir}: no ${MANIFEST} (prepare the folder with \`mynah data prepare\`)`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (m.format !== "mynah-shards") throw new Error(`${path}: not a mynah shard manifest (format ${JSON.stringify(m.format)})`);
  if ((m.version as number) === 1) throw new Error(`${dir} was prepared by an older mynah (manifest version 1: shards without a document index); prepare it again with \`mynah data prepare ... --out ${dir} --force\``);
  if (m.version !== 2) throw new Error(`${path}: manifest version ${m.version}, this mynah reads 2`);
  return m;
}

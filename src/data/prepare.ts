/**
 * `mynah data prepare`: read → clean → split → tokenize → shards + manifest.json.
 *
 * The main thread reads and cleans (cheap); tokenizing (the expensive part) runs on
 * worker_threads, in batches of documents whose results are written back in order, so the
 * shards are the same whatever the thread count. Memory stays bounded: a few batches in
 * flight per worker, one open shard per split streamed to disk, and one hash per document.
 *
 * Interrupted runs: a shard is a temp file until it is complete (then fsync + rename), and
 * after each shard `.prepare-state.json` records, per split, the documents already in
 * finished shards. Re-running the same command with the same inputs resumes: it re-reads
 * (cheap) but skips tokenizing what is done. The native addon is never loaded here: its
 * thread pool would pin the main thread.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, unlinkSync, mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { loadTokenizer } from "../tokenizer/io.ts";
import { writeFileAtomic } from "../tokenizer/io.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { cleanDocs, countingOnBad, type CleanOptions, type SourceStats, type Split } from "./clean.ts";
import { encodeDocs, eotId } from "./encode-docs.ts";
import { DataError, type OnBad } from "./errors.ts";
import { expandInputs } from "./inputs.ts";
import { readFiles, type ReadOptions } from "./readers.ts";
import type { DocBody } from "./records.ts";
import { bytesPerTokenFor, ShardWriter } from "./shards.ts";

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
  /** Tokenizing threads (default: all cores); 1 tokenizes on the calling thread. */
  threads?: number;
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
  version: 1;
  /** Hash of inputs (names, sizes, times), options and tokenizer: what resume compares. */
  configKey: string;
  tokenizer: { path: string; sha256: string; vocabSize: number; eot: number };
  bytesPerToken: 2 | 4;
  options: { read: PrepareOptions["read"]; clean: PrepareOptions["clean"]; shardTokens: number };
  sources: SourceSummary[];
  splits: Record<Split, { docs: number; tokens: number; shards: ShardInfo[] }>;
  /** Bad records skipped (all sources). */
  skipped: number;
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

/** Messages to and from prepare-worker.ts. */
export interface WorkerJob {
  seq: number;
  docs: DocBody[];
}
export interface WorkerResult {
  seq: number;
  ids?: Uint32Array;
  lens?: Uint32Array;
  error?: string;
}

function tokenizerFile(path: string): string {
  return statSync(path).isDirectory() ? join(path, "tokenizer.json") : path;
}

const fromSource = import.meta.url.endsWith(".ts");
const workerUrl = new URL(fromSource ? "./prepare-worker.ts" : "./prepare-worker.js", import.meta.url);

/** Starts a tokenizing worker (from TypeScript sources the worker registers tsx first). */
function startWorker(tokenizer: string): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData: { tokenizer } });
  const api = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
  return new Worker(code, { eval: true, workerData: { tokenizer } });
}

/** Encodes batches in order: on N workers, or on this thread when threads = 1. */
interface Encoder {
  submit(job: WorkerJob): Promise<WorkerResult>;
  close(): Promise<void>;
}

function localEncoder(tok: Tokenizer): Encoder {
  return {
    submit: async (job) => ({ seq: job.seq, ...encodeDocs(tok, job.docs) }),
    close: async () => {},
  };
}

function workerEncoder(tokenizer: string, n: number): Encoder {
  const workers = Array.from({ length: n }, () => startWorker(tokenizer));
  const pending = new Map<number, { resolve: (r: WorkerResult) => void; reject: (e: Error) => void }>();
  let failed: Error | null = null;
  for (const w of workers) {
    w.on("message", (r: WorkerResult) => {
      const p = pending.get(r.seq)!;
      pending.delete(r.seq);
      if (r.error) p.reject(new Error(`tokenizing worker: ${r.error}`));
      else p.resolve(r);
    });
    w.on("error", (e) => {
      failed = e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
  }
  return {
    submit(job) {
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => {
        pending.set(job.seq, { resolve, reject });
        workers[job.seq % n].postMessage(job);
      });
    },
    async close() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
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
  const files = expandInputs(opts.inputs);
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
    .update(JSON.stringify({ files: files.map((f, i) => [resolve(f), sizes[i].size, sizes[i].mtimeMs]), read, clean, shardTokens, tokHash, skipBad: !!opts.skipBad }))
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
    if (!opts.force) throw new Error(`${opts.out} holds shards prepared from other inputs or options; choose another --out or pass --force to replace them`);
    state = null;
  }
  state ??= emptyState(configKey);
  const keep = new Set(SPLITS.flatMap((s) => state!.splits[s].shards.map((x) => x.file)));
  for (const f of readdirSync(opts.out)) if (isOurs(f) && f !== STATE && !keep.has(f)) unlinkSync(join(opts.out, f));

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
  const docs = cleanDocs(
    readFiles(files, { ...read, onBad: countingOnBad(stats, onBad), onBytes: (n) => (bytesRead += n) }),
    { ...clean, onBad },
    stats,
  );

  // Per split: the open shard, documents seen so far (for resume), pending source tokens.
  const writers: Record<Split, ShardWriter | null> = { train: null, val: null };
  const seen: Record<Split, number> = { train: 0, val: 0 };
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
    writeFileAtomic(statePath, JSON.stringify(state) + "\n");
  };
  const write = (s: Split, file: string, ids: Uint32Array): void => {
    writers[s] ??= new ShardWriter(join(opts.out, shardName(s)), bpt);
    writers[s]!.append(ids);
    pendingTokens[s][file] = (pendingTokens[s][file] ?? 0) + ids.length;
    tokensOut += ids.length;
    docsOut++;
    if (writers[s]!.tokens >= shardTokens) commit(s);
  };

  const threads = Math.max(1, opts.threads ?? availableParallelism());
  const encoder = threads === 1 ? localEncoder(tok) : workerEncoder(opts.tokenizer, threads);
  const inFlight: { job: Promise<WorkerResult>; meta: { split: Split; file: string }[] }[] = [];
  let seq = 0;
  let lastReport = 0;
  const report = (done: boolean): void => {
    const now = Date.now();
    if (!opts.onProgress || (!done && now - lastReport < (opts.progressIntervalMs ?? 200))) return;
    lastReport = now;
    opts.onProgress({ bytesRead, bytesTotal, tokens: tokensOut, docs: docsOut, seconds: (now - t0) / 1000, done });
  };
  const drainOne = async (): Promise<void> => {
    const { job, meta } = inFlight.shift()!;
    const r = await job;
    let o = 0;
    meta.forEach((m, i) => {
      const n = r.lens![i];
      write(m.split, m.file, r.ids!.subarray(o, o + n));
      o += n;
    });
    report(false);
  };
  let batch: DocBody[] = [];
  let meta: { split: Split; file: string }[] = [];
  let chars = 0;
  const dispatch = async (): Promise<void> => {
    if (batch.length === 0) return;
    inFlight.push({ job: encoder.submit({ seq: seq++, docs: batch }), meta });
    batch = [];
    meta = [];
    chars = 0;
    while (inFlight.length >= 2 * threads) await drainOne();
  };
  try {
    for await (const d of docs) {
      // Resume: documents already inside finished shards are not tokenized again.
      if (seen[d.split]++ < state.splits[d.split].docs) continue;
      if (d.kind === "preference") throw new DataError(d.file, d.line, "a preference pair (chosen/rejected) is data for `mynah dpo`, not for pretraining", d.unit);
      batch.push(d.kind === "text" ? { kind: "text", text: d.text } : { kind: "chat", messages: d.messages });
      meta.push({ split: d.split, file: d.file });
      chars += d.kind === "text" ? d.text.length : d.messages.reduce((n, m) => n + m.content.length, 0);
      if (chars >= BATCH_CHARS) await dispatch();
    }
    await dispatch();
    while (inFlight.length) await drainOne();
    for (const s of SPLITS) commit(s);
  } catch (err) {
    for (const s of SPLITS) writers[s]?.abort();
    // Let in-flight jobs settle so no rejection goes unhandled.
    await Promise.allSettled(inFlight.map((x) => x.job));
    throw err;
  } finally {
    await encoder.close();
  }
  report(true);

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
    version: 1,
    configKey,
    tokenizer: { path: resolve(opts.tokenizer), sha256: tokHash, vocabSize: tok.vocabSize, eot },
    bytesPerToken: bpt,
    options: { read, clean, shardTokens },
    sources,
    splits: { train: split("train"), val: split("val") },
    skipped,
    seconds: (Date.now() - t0) / 1000,
  };
  writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
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
  if (m.format !== "mynah-shards" || m.version !== 1) throw new Error(`${path}: not a mynah shard manifest (format ${m.format}, version ${m.version})`);
  return m;
}

/**
 * Batch encoding over worker_threads, one worker per core: a large text is cut at points
 * where no pre-split piece crosses (safeCutPoint), the chunks are encoded in parallel, and
 * the ids are joined in order, so the result equals `tok.encode(text)` exactly.
 */
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import type { BpeSpec, BpeTokenizer } from "./bpe.ts";
import { safeCutPoint } from "./pattern.ts";

export interface ParallelOptions {
  /** Worker threads (default: all cores). */
  workers?: number;
  /** Target chunk size in characters (default 1 M). */
  chunkChars?: number;
  /** An existing pool to use (not closed afterwards); default: a fresh one, closed at the end. */
  pool?: EncoderPool;
  /** Special tokens to recognize, as in Tokenizer.encode. */
  allowedSpecial?: "all" | ReadonlySet<string>;
}

/**
 * A BpeSpec as a few flat arrays: cloning 100 k small Uint8Arrays into each worker costs
 * ~100 ms, one buffer almost nothing.
 */
export interface PackedSpec {
  bytes: Uint8Array;
  /** [vocab + 1] start offsets into bytes; a token of −1 length (start = −1) is null. */
  starts: Int32Array;
  merges: Int32Array;
  mode: BpeSpec["mode"];
  special: Record<string, number>;
  pattern: string;
}

export function packSpec(spec: BpeSpec): PackedSpec {
  let n = 0;
  for (const t of spec.tokens) n += t ? t.length : 0;
  const bytes = new Uint8Array(n);
  const starts = new Int32Array(spec.tokens.length + 1);
  let o = 0;
  spec.tokens.forEach((t, i) => {
    starts[i] = t ? o : -1 - o;
    if (t) bytes.set(t, o), (o += t.length);
  });
  starts[spec.tokens.length] = o;
  return { bytes, starts, merges: Int32Array.from(spec.merges.flat()), mode: spec.mode, special: spec.special, pattern: spec.pattern };
}

export function unpackSpec(p: PackedSpec): BpeSpec {
  const tokens: (Uint8Array | null)[] = [];
  const start = (i: number): number => (p.starts[i] < 0 ? -1 - p.starts[i] : p.starts[i]);
  for (let i = 0; i + 1 < p.starts.length; i++) tokens.push(p.starts[i] < 0 ? null : p.bytes.subarray(start(i), start(i + 1)));
  const merges: [number, number][] = [];
  for (let i = 0; i < p.merges.length; i += 2) merges.push([p.merges[i], p.merges[i + 1]]);
  return { tokens, merges, mode: p.mode, special: p.special, pattern: p.pattern };
}

/** Messages to and from worker.ts. */
export type WorkerRequest = { id: number; text: string; allowedSpecial?: "all" | string[] };
export type WorkerReply = { id: number; ids?: Int32Array; error?: string };

/** Cuts text into chunks of about `size` characters at safe points. */
export function chunkText(text: string, size: number): string[] {
  const chunks: string[] = [];
  let start = 0;
  while (text.length - start > size) {
    const cut = safeCutPoint(text, start + size);
    if (cut < 0) break;
    chunks.push(text.slice(start, cut));
    start = cut;
  }
  chunks.push(text.slice(start));
  return chunks;
}

const fromSource = import.meta.url.endsWith(".ts");
const workerUrl = new URL(fromSource ? "./worker.ts" : "./worker.js", import.meta.url);

/**
 * Starts a worker on worker.ts/.js. Running from TypeScript sources (tsx), a worker does not
 * inherit the --import hook in Node 20, so it first registers tsx itself, then loads the file.
 */
function startWorker(spec: PackedSpec): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData: spec });
  const api = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
  return new Worker(code, { eval: true, workerData: spec });
}

/** A pool of encoding workers for one tokenizer. Call close() when done. */
export class EncoderPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { req: WorkerRequest; resolve: (ids: Int32Array) => void; reject: (e: Error) => void }[] = [];
  private readonly pending = new Map<number, { resolve: (ids: Int32Array) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(spec: BpeSpec, n = availableParallelism()) {
    const packed = packSpec(spec);
    for (let i = 0; i < Math.max(1, n); i++) {
      const w = startWorker(packed);
      w.on("message", (m: WorkerReply) => {
        const p = this.pending.get(m.id)!;
        this.pending.delete(m.id);
        if (m.error !== undefined) p.reject(new Error(`tokenizer worker: ${m.error}`));
        else p.resolve(m.ids!);
        this.idle.push(w);
        this.pump();
      });
      w.on("error", (err) => {
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.pending.set(job.req.id, job);
      w.postMessage(job.req);
    }
  }

  /** Encodes one text on some worker. */
  encode(text: string, allowedSpecial?: "all" | ReadonlySet<string>): Promise<Int32Array> {
    return new Promise((resolve, reject) => {
      const req: WorkerRequest = { id: this.nextId++, text, allowedSpecial: allowedSpecial === "all" ? "all" : allowedSpecial ? [...allowedSpecial] : undefined };
      this.queue.push({ req, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Encodes many texts in parallel; result i holds the ids of texts[i]. */
export async function encodeBatch(tok: BpeTokenizer, texts: string[], opts: ParallelOptions = {}): Promise<Int32Array[]> {
  if (opts.pool) return Promise.all(texts.map((t) => opts.pool!.encode(t, opts.allowedSpecial)));
  const pool = new EncoderPool(tok.spec, Math.min(opts.workers ?? availableParallelism(), Math.max(1, texts.length)));
  try {
    return await Promise.all(texts.map((t) => pool.encode(t, opts.allowedSpecial)));
  } finally {
    await pool.close();
  }
}

/** Encodes one large text in parallel chunks; equals tok.encode(text). */
export async function encodeLargeText(tok: BpeTokenizer, text: string, opts: ParallelOptions = {}): Promise<Int32Array> {
  const workers = opts.workers ?? availableParallelism();
  const size = opts.chunkChars ?? Math.max(1 << 16, Math.min(1 << 20, Math.ceil(text.length / (workers * 4))));
  const parts = await encodeBatch(tok, chunkText(text, size), { ...opts, workers });
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Int32Array(n);
  let o = 0;
  for (const p of parts) out.set(p, o), (o += p.length);
  return out;
}

/** Reads a UTF-8 file and encodes it with all cores. */
export async function encodeFile(tok: BpeTokenizer, path: string, opts: ParallelOptions = {}): Promise<Int32Array> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  return encodeLargeText(tok, text, opts);
}

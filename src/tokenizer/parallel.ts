/**
 * Batch encoding over worker_threads, one worker per core: a large text is cut at points
 * where no pre-split piece (and no special token) crosses, the chunks are encoded in
 * parallel, and the ids are joined in order, so the result equals `tok.encode(text)` exactly.
 * For the known patterns the cut points come from safeCutPoint (no scan); for any other
 * pattern the main thread runs the pattern over the text to find true piece boundaries.
 */
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import type { BpeSpec, BpeTokenizer } from "./bpe.ts";
import { CL100K_PATTERN, compilePattern, GPT2_PATTERN, MYNAH_PATTERN, O200K_PATTERN, safeCutPoint } from "./pattern.ts";

/** Patterns for which safeCutPoint is known to be a piece boundary. */
const NEWLINE_SAFE = new Set([GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN, MYNAH_PATTERN]);

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

/** True when an occurrence of one of `specials` starts before `cut` and ends after it. */
function splitsSpecial(text: string, cut: number, specials: readonly string[]): boolean {
  for (const sp of specials) {
    const from = Math.max(0, cut - sp.length + 1);
    const at = text.indexOf(sp, from);
    if (at >= 0 && at < cut && at + sp.length > cut) return true;
  }
  return false;
}

/**
 * Cuts text into chunks of about `size` characters at piece boundaries of `pattern` (default:
 * a known pattern) that split none of `specials`.
 */
export function chunkText(text: string, size: number, pattern = MYNAH_PATTERN, specials: readonly string[] = []): string[] {
  const chunks: string[] = [];
  let start = 0;
  if (NEWLINE_SAFE.has(pattern)) {
    let from = start + size;
    while (text.length - start > size) {
      const cut = safeCutPoint(text, from);
      if (cut < 0) break;
      if (splitsSpecial(text, cut, specials)) {
        from = cut + 1;
        continue;
      }
      chunks.push(text.slice(start, cut));
      start = cut;
      from = start + size;
    }
  } else if (specials.length > 0) {
    // Special tokens split the text before the pattern runs, so the only boundaries known
    // without scanning every segment are the ends of special-token occurrences.
    const re = new RegExp([...specials].sort((a, b) => b.length - a.length).map((x) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
    for (let m = re.exec(text); m !== null && text.length - start > size; m = re.exec(text)) {
      const end = m.index + m[0].length;
      if (end - start >= size && end < text.length) {
        chunks.push(text.slice(start, end));
        start = end;
      }
    }
  } else {
    // exact: run the pattern from the start and cut at the end of a match
    const re = compilePattern(pattern);
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null && text.length - start > size; m = re.exec(text)) {
      if (m[0].length === 0) re.lastIndex++;
      const end = m.index + m[0].length;
      if (end - start >= size && end < text.length) {
        chunks.push(text.slice(start, end));
        start = end;
      }
    }
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
  const specials = opts.allowedSpecial === "all" ? [...tok.special.keys()] : opts.allowedSpecial ? [...opts.allowedSpecial] : [];
  const parts = await encodeBatch(tok, chunkText(text, size, tok.spec.pattern, specials), { ...opts, workers });
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

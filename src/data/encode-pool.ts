/**
 * The tokenizing threads of `data prepare`: the calling thread and `threads − 1` worker
 * threads, fed from one queue of batches.
 *
 * Why the calling thread encodes too: its own work (reading, dedup, the split, writing
 * shards) is a small share, so a thread of its own for it would idle most of the time, and
 * each worker costs a start-up (a fresh V8 isolate, the modules, the tokenizer; with tsx from
 * TypeScript sources several times more) and a piece cache that starts cold. So a worker takes
 * up to DEPTH batches at a time, and the calling thread, instead of waiting for a result,
 * encodes the oldest batch no worker has taken: all of them with 1 thread, those that arrive
 * while the workers are still starting, and its share of the rest. Results are taken in the
 * order batches were submitted, whoever encoded them, so the output never depends on the
 * thread count or on timing.
 *
 * Threads and CPUs: a new thread starts on the CPU of the thread that creates it; Linux moves
 * busy threads apart (measured on the 2-CPU machine: two busy workers ran on CPUs 0 and 1 in
 * every run, each getting ~97 % of a CPU), so the workers are not pinned here. `encodedOn`
 * says how the batches were spread over the threads.
 */
import { Worker } from "node:worker_threads";
import type { Tokenizer } from "../tokenizer/types.ts";
import { cleanEncode, type CleanEncoded } from "./encode-docs.ts";
import type { DocBody } from "./records.ts";

/** A batch of documents to clean and tokenize. */
export interface EncodeJob {
  docs: DocBody[];
  /** --min-chars */
  minChars: number;
  /** False while resuming: clean and digest only (documents inside finished shards are not tokenized again). */
  tokenize: boolean;
}
/** Messages to and from prepare-worker.ts. */
export type WorkerRequest = EncodeJob & { seq: number };
export type WorkerReply = { ready: true } | ({ seq: number; error?: string } & Partial<CleanEncoded>);

/** A submitted batch: `settled` turns true (synchronously) once its result or error is in. */
export interface Ticket {
  readonly promise: Promise<CleanEncoded>;
  settled: boolean;
}

/** Batches a worker holds at once: one it encodes and one waiting, so it never waits for the calling thread. */
const DEPTH = 2;

interface Pending {
  seq: number;
  job: EncodeJob;
  ticket: Ticket;
  resolve: (r: CleanEncoded) => void;
  reject: (e: Error) => void;
}
interface Slot {
  worker: Worker;
  index: number;
  ready: boolean;
  held: Map<number, Pending>;
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

export interface EncodePoolOptions {
  /** Tokenizing threads, the calling one included (1: no workers). */
  threads: number;
  /** Testing: the calling thread encodes nothing while there are workers (every batch crosses to one). */
  workersOnly?: boolean;
}

export class EncodePool {
  /** Batches encoded by each thread: [the calling thread, worker 1, worker 2, ...]. */
  readonly encodedOn: number[];
  private readonly queue: Pending[] = [];
  private readonly slots: Slot[] = [];
  private failed: Error | null = null;
  private closing = false;
  private seq = 0;

  /** `tokenizerFile`: what the workers load; it must be the tokenizer `tok` was loaded from. */
  constructor(private readonly tok: Tokenizer, tokenizerFile: string, private readonly opts: EncodePoolOptions) {
    const n = Math.max(0, opts.threads - 1);
    this.encodedOn = new Array(n + 1).fill(0);
    for (let i = 0; i < n; i++) {
      const slot: Slot = { worker: startWorker(tokenizerFile), index: i + 1, ready: false, held: new Map() };
      slot.worker.on("message", (m: WorkerReply) => this.onReply(slot, m));
      slot.worker.on("error", (e) => this.fail(e));
      slot.worker.on("exit", (code) => {
        if (!this.closing) this.fail(new Error(`tokenizing worker ${slot.index} exited (code ${code})`));
      });
      this.slots.push(slot);
    }
  }

  /** Queues a batch; `first`: ahead of every queued batch (the caller needs it before them). */
  submit(job: EncodeJob, first = false): Ticket {
    let resolve!: (r: CleanEncoded) => void, reject!: (e: Error) => void;
    const ticket: Ticket = { settled: false, promise: new Promise<CleanEncoded>((res, rej) => ((resolve = res), (reject = rej))) };
    // Settled handlers run before the caller's, so `settled` is true whenever a result can be awaited.
    const p: Pending = { seq: this.seq++, job, ticket, resolve: (r) => ((ticket.settled = true), resolve(r)), reject: (e) => ((ticket.settled = true), reject(e)) };
    ticket.promise.catch(() => {}); // a batch abandoned after an error must not be an unhandled rejection
    if (this.failed) p.reject(this.failed);
    else {
      if (first) this.queue.unshift(p);
      else this.queue.push(p);
      this.pump();
    }
    return ticket;
  }

  /**
   * Encodes the oldest batch no worker has taken on the calling thread; false when there is
   * none (or with `workersOnly`). The caller runs this instead of waiting for a result.
   */
  runOne(): boolean {
    if (this.opts.workersOnly && this.slots.length > 0) return false;
    const p = this.queue.shift();
    if (!p) return false;
    let r: CleanEncoded;
    try {
      r = cleanEncode(this.tok, p.job.docs, p.job.minChars, p.job.tokenize);
    } catch (err) {
      p.reject(err as Error);
      return true;
    }
    this.encodedOn[0]++;
    p.resolve(r);
    return true;
  }

  /** Stops the workers; batches not encoded yet are dropped (their tickets reject). */
  async close(): Promise<void> {
    this.closing = true;
    this.fail(new Error("the tokenizing threads were closed"));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** Hands queued batches to ready workers, the least loaded first, up to DEPTH each. */
  private pump(): void {
    while (this.queue.length > 0) {
      let best: Slot | null = null;
      for (const s of this.slots) if (s.ready && s.held.size < DEPTH && (!best || s.held.size < best.held.size)) best = s;
      if (!best) return;
      const p = this.queue.shift()!;
      best.held.set(p.seq, p);
      const req: WorkerRequest = { seq: p.seq, ...p.job };
      best.worker.postMessage(req);
    }
  }

  private onReply(slot: Slot, m: WorkerReply): void {
    if ("ready" in m) {
      slot.ready = true;
      this.pump();
      return;
    }
    const p = slot.held.get(m.seq)!;
    slot.held.delete(m.seq);
    if (m.error !== undefined) p.reject(new Error(`tokenizing worker ${slot.index}: ${m.error}`));
    else {
      this.encodedOn[slot.index]++;
      p.resolve(m as CleanEncoded);
    }
    this.pump();
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    for (const s of this.slots) {
      for (const p of s.held.values()) p.reject(e);
      s.held.clear();
    }
    for (const p of this.queue.splice(0)) p.reject(e);
  }
}

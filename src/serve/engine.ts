/**
 * The HTTP side of generation: starts the worker (engine-worker.ts) that holds the model,
 * admits requests up to `parallel` running + `queue` waiting (beyond that `submit` throws
 * QueueFullError, which the API turns into 429), and routes the worker's events to each
 * request's callbacks. Nothing here loads the native addon.
 */
import type { WeightDtype } from "../infer/weight-dtype.ts";
import { Worker } from "node:worker_threads";
import type { EventLoopUtilization } from "node:perf_hooks";
import type { GenerateOptions, Generation } from "../infer/generate.ts";
import type { TokenEvent } from "../infer/batcher.ts";

export interface EngineInit {
  modelDir: string;
  parallel: number;
  threads: number;
  contextTokens?: number;
  /** Weight storage for decoding (default: the model folder's mynah.dtype, else f32). */
  dtype?: WeightDtype;
}

/** Options that cross the thread boundary (no callbacks). */
export type WireOptions = Omit<GenerateOptions, "onText" | "shouldStop">;

export type ToWorker =
  | { t: "submit"; id: string; prompt: number[]; opts: WireOptions; topLogprobs: number }
  | { t: "cancel"; id: string };

export type FromWorker =
  | { t: "ready"; backend: string; maxT: number }
  | { t: "fatal"; message: string }
  | { t: "stats"; active: number; pending: number; profile: StepProfile }
  | { t: "start"; id: string }
  | { t: "step"; id: string; text: string; tokens: TokenEvent[] }
  | { t: "done"; id: string; generation: Generation }
  | { t: "error"; id: string; message: string }
  | { t: "batch"; events: FromWorker[] };

/**
 * Where the generation worker's time went since it started (ms, cumulative): `stepMs` is
 * batcher steps, of which `forwardMs` the batched forward pass and `sampleMs` sampling,
 * decoding and the per-request callbacks; `postMs` handing each step's events to the HTTP
 * thread. `rows` counts sequences advanced (Σ batch size over steps).
 */
export interface StepProfile { steps: number; rows: number; forwardMs: number; sampleMs: number; stepMs: number; postMs: number }

export interface GenerationHandlers {
  onStart?: () => void;
  onStep?: (text: string, tokens: TokenEvent[]) => void;
  onDone: (g: Generation) => void;
  onError: (err: Error) => void;
}

/** The queue is full: the request was not taken (HTTP 429). */
export class QueueFullError extends Error {
  constructor(readonly inFlight: number) {
    super(`the server is busy: ${inFlight} requests are running or waiting; try again shortly`);
    this.name = "QueueFullError";
  }
}

/** What the API needs from an engine (the worker engine below, or a stand-in). */
export interface GenerationEngine {
  readonly ready: boolean;
  /** Context window of the cache (prompt + reply), known once ready. */
  readonly maxT: number;
  readonly parallel: number;
  readonly queueLimit: number;
  /** Requests taken and not finished (running + waiting). */
  readonly inFlight: number;
  readonly running: number;
  submit(prompt: number[], opts: WireOptions, topLogprobs: number, h: GenerationHandlers): { cancel(): void };
  close(): Promise<void>;
}

const fromSource = import.meta.url.endsWith(".ts");
const workerUrl = new URL(fromSource ? "./engine-worker.ts" : "./engine-worker.js", import.meta.url);

export class WorkerEngine implements GenerationEngine {
  ready = false;
  maxT = 0;
  backend = "";
  inFlight = 0;
  running = 0;
  /** The worker's step profile, as of its last step. */
  profile: StepProfile = { steps: 0, rows: 0, forwardMs: 0, sampleMs: 0, stepMs: 0, postMs: 0 };
  readonly parallel: number;
  readonly queueLimit: number;
  /** Resolves when the model is loaded; rejects with the worker's error. */
  readonly loaded: Promise<void>;
  private readonly worker: Worker;
  private readonly live = new Map<string, GenerationHandlers>();
  private seq = 0;
  private closing = false;

  constructor(init: EngineInit & { queue: number }) {
    this.parallel = init.parallel;
    this.queueLimit = init.queue;
    const data: EngineInit = { modelDir: init.modelDir, parallel: init.parallel, threads: init.threads, contextTokens: init.contextTokens, dtype: init.dtype };
    if (fromSource) {
      // From TypeScript sources the worker registers tsx first.
      const api = import.meta.resolve("tsx/esm/api");
      const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}); });`;
      this.worker = new Worker(code, { eval: true, workerData: data });
    } else {
      this.worker = new Worker(workerUrl, { workerData: data });
    }
    this.loaded = new Promise((resolve, reject) => {
      this.worker.on("message", (m: FromWorker) => {
        if (m.t === "ready") { this.ready = true; this.maxT = m.maxT; this.backend = m.backend; resolve(); return; }
        if (m.t === "fatal") { reject(new Error(m.message)); return; }
        this.onMessage(m);
      });
      this.worker.on("error", (err) => { reject(err); this.failAll(err); });
      this.worker.on("exit", (code) => {
        const err = new Error(`the generation worker exited (code ${code})`);
        reject(err);
        this.ready = false;
        if (!this.closing) this.failAll(err);
      });
    });
    // A load failure is reported through `loaded`; keep it from being an unhandled rejection.
    this.loaded.catch(() => {});
  }

  /** The worker thread's event-loop utilization (busy share) since `prev`, as Node measures it. */
  utilization(prev?: EventLoopUtilization): EventLoopUtilization {
    return this.worker.performance.eventLoopUtilization(prev);
  }

  private failAll(err: Error): void {
    for (const [id, h] of this.live) { this.live.delete(id); this.inFlight--; h.onError(err); }
  }

  private onMessage(m: FromWorker): void {
    if (m.t === "batch") { for (const e of m.events) this.onMessage(e); return; }
    if (m.t === "stats") { this.running = m.active; this.profile = m.profile; return; }
    if (!("id" in m)) return;
    const h = this.live.get(m.id);
    if (!h) return;
    if (m.t === "start") h.onStart?.();
    else if (m.t === "step") h.onStep?.(m.text, m.tokens);
    else if (m.t === "done" || m.t === "error") {
      this.live.delete(m.id);
      this.inFlight--;
      if (m.t === "done") h.onDone(m.generation);
      else h.onError(new Error(m.message));
    }
  }

  submit(prompt: number[], opts: WireOptions, topLogprobs: number, h: GenerationHandlers): { cancel(): void } {
    if (this.inFlight >= this.parallel + this.queueLimit) throw new QueueFullError(this.inFlight);
    const id = String(++this.seq);
    this.live.set(id, h);
    this.inFlight++;
    this.worker.postMessage({ t: "submit", id, prompt, opts, topLogprobs } satisfies ToWorker);
    return { cancel: () => { if (this.live.has(id)) this.worker.postMessage({ t: "cancel", id } satisfies ToWorker); } };
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }
}

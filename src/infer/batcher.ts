/**
 * Continuous batching: many independent requests decoded together over one KV cache of
 * `slots` preallocated sequences. Each `step()` makes ONE forwardCached call that
 *   - prefills every request admitted this step (count = its prompt length), and
 *   - advances every running request by one token (count = 1),
 * then samples one token per slot from the returned rows [R, V]. Requests join whenever a
 * slot is free and leave as soon as they finish or are cancelled, so a short reply never
 * waits for a long one and a new request waits at most one step to start.
 *
 * Memory is bounded: the cache is [slots, maxT] per layer, allocated once; a request beyond
 * `slots` waits in `pending` (the caller bounds that queue). Each request keeps its own RNG
 * (seeded like `generate`), stop tokens and strings, so a request decoded alone here gives
 * exactly the tokens of `generate()` with the same options.
 */
import { createCache, forwardCached, resetSlot, type DecodeModel, type KvCache } from "../model/decode.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { defaultStopTokens, Sequence, type GenerateOptions, type Generation } from "./generate.ts";
import { makeRng } from "./rng.ts";
import { checkSampling, prepareRows, sampleToken, topLogprobs, type Sampled } from "./sampling.ts";

/** One sampled token as reported to the caller. */
export interface TokenEvent {
  id: number;
  logprob: number;
  /** The most likely alternatives (only when the request asked for topLogprobs > 0). */
  top?: Sampled[];
}

export interface BatchRequest {
  /** [T] prompt ids, 1 ≤ T < maxT. */
  prompt: readonly number[];
  opts: GenerateOptions;
  /** How many alternatives to report per token (0 = none; OpenAI allows up to 20). */
  topLogprobs?: number;
  /** Called when the request gets a slot (before its prefill). */
  onStart?: () => void;
  /** Text settled since the last call (stop strings held back), and the tokens sampled. */
  onStep?: (text: string, tokens: TokenEvent[]) => void;
  /** The finished generation (after cancel: finish "stop", stoppedBy "cancelled"). */
  onDone?: (g: Generation) => void;
  /** A failure of the forward pass; the request is gone. */
  onError?: (err: Error) => void;
}

interface Running {
  handle: number;
  req: BatchRequest;
  slot: number;
  seq: Sequence;
  /** Ids to feed at the next step: the prompt on admission, then the last sampled token. */
  feed: number[];
  text: string;
  tokens: TokenEvent[];
  cancelled: boolean;
}

export class ContinuousBatcher {
  readonly cache: KvCache;
  private readonly free: number[];
  private readonly pending: { handle: number; req: BatchRequest }[] = [];
  private readonly running = new Map<number, Running>();
  private readonly cancelledPending = new Set<number>();
  private nextHandle = 1;
  private readonly defaultStops: number[];
  /** Called before each forward pass with the number of token rows it feeds (to size threads to it). */
  onForward?: (rows: number) => void;
  /** Steps run (for metrics). */
  steps = 0;
  /** Where step time went (ms, cumulative): the forward pass, and sampling + decoding + callbacks. */
  readonly time = { forwardMs: 0, sampleMs: 0, rows: 0 };

  constructor(readonly model: DecodeModel, readonly tok: Tokenizer, readonly slots: number, readonly maxT = model.config.seqLen) {
    if (!(Number.isInteger(slots) && slots >= 1)) throw new Error(`batcher: slots must be an integer ≥ 1, got ${slots}`);
    this.cache = createCache(model, slots, maxT);
    this.free = Array.from({ length: slots }, (_, i) => slots - 1 - i);
    this.defaultStops = defaultStopTokens(tok);
  }

  /** Queues a request; returns its handle. Throws on invalid options or prompt (nothing queued). */
  add(req: BatchRequest): number {
    checkSampling(req.opts);
    if (!(Number.isInteger(req.opts.maxNewTokens) && req.opts.maxNewTokens >= 1)) throw new Error(`generate: maxNewTokens must be an integer ≥ 1, got ${req.opts.maxNewTokens}`);
    if (req.prompt.length === 0) throw new Error("generate: the prompt is empty (it needs at least one token)");
    if (req.prompt.length >= this.maxT) throw new Error(`generate: the prompt has ${req.prompt.length} tokens, the context window is ${this.maxT}`);
    const handle = this.nextHandle++;
    this.pending.push({ handle, req });
    return handle;
  }

  /** Cancels a request: it leaves before the next forward pass (its onDone reports "cancelled"). */
  cancel(handle: number): void {
    const r = this.running.get(handle);
    if (r) r.cancelled = true;
    else if (this.pending.some((p) => p.handle === handle)) this.cancelledPending.add(handle);
  }

  get activeCount(): number { return this.running.size; }
  get pendingCount(): number { return this.pending.length - this.cancelledPending.size; }
  get busy(): boolean { return this.running.size > 0 || this.pending.length > 0; }

  private finish(r: Running): void {
    this.running.delete(r.handle);
    resetSlot(this.cache, r.slot);
    this.free.push(r.slot);
    if (r.text || r.tokens.length) r.req.onStep?.(r.text, r.tokens);
    r.text = "";
    r.tokens = [];
    r.req.onDone?.(r.seq.result());
  }

  /** One forward pass over every running request (admitting pending ones first). */
  step(): void {
    // Cancelled requests leave before the forward pass.
    for (const r of [...this.running.values()]) {
      if (r.cancelled) {
        r.seq.end("stop", "cancelled");
        this.finish(r);
      }
    }
    while (this.pending.length > 0 && this.free.length > 0) {
      const { handle, req } = this.pending.shift()!;
      if (this.cancelledPending.delete(handle)) {
        req.onDone?.({ ids: [], logprobs: [], text: "", finish: "stop", stoppedBy: "cancelled" });
        continue;
      }
      const slot = this.free.pop()!;
      resetSlot(this.cache, slot);
      const stopIds = new Set(req.opts.stopTokens ?? this.defaultStops);
      const onText = (t: string): void => { run.text += t; };
      const seq = new Sequence(0, [...req.prompt], makeRng(req.opts.seed), this.tok, { ...req.opts, onText }, stopIds);
      const run: Running = { handle, req, slot, seq, feed: [...req.prompt], text: "", tokens: [], cancelled: false };
      this.running.set(handle, run);
      req.onStart?.();
    }
    // Pending requests cancelled while no slot was free are answered too.
    if (this.free.length === 0 && this.cancelledPending.size > 0) {
      for (let i = this.pending.length - 1; i >= 0; i--) {
        const p = this.pending[i];
        if (this.cancelledPending.delete(p.handle)) {
          this.pending.splice(i, 1);
          p.req.onDone?.({ ids: [], logprobs: [], text: "", finish: "stop", stoppedBy: "cancelled" });
        }
      }
    }
    const batch = [...this.running.values()];
    if (batch.length === 0) return;
    const V = this.model.config.vocabSize;
    let logits: Float32Array;
    this.onForward?.(batch.reduce((n, r) => n + r.feed.length, 0));
    const t0 = performance.now();
    try {
      logits = forwardCached(this.model, this.cache, batch.map((r) => r.slot), batch.map((r) => r.feed.length), batch.flatMap((r) => r.feed));
    } catch (err) {
      for (const r of batch) {
        this.running.delete(r.handle);
        resetSlot(this.cache, r.slot);
        this.free.push(r.slot);
        r.req.onError?.(err as Error);
      }
      return;
    }
    this.steps++;
    const t1 = performance.now();
    this.time.forwardMs += t1 - t0;
    this.time.rows += batch.length;
    const lse = prepareRows(this.model.backend, logits, batch.length, V, this.tok.vocabSize);
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i];
      try {
        this.advance(r, logits.subarray(i * V, (i + 1) * V), lse[i]);
      } catch (err) {
        // One request's failure (a sampler or decoder error) ends that request only.
        this.running.delete(r.handle);
        resetSlot(this.cache, r.slot);
        this.free.push(r.slot);
        r.req.onError?.(err as Error);
      }
    }
    this.time.sampleMs += performance.now() - t1;
  }

  /** Samples the next token of one running request from its logits row [V] (log-sum-exp lse). */
  private advance(r: Running, row: Float32Array, lse: number): void {
    const s = r.seq;
    const { id, logprob } = sampleToken(row, r.req.opts, s.rng, s.context, s.ids, lse);
    const k = r.req.topLogprobs ?? 0;
    const before = s.ids.length;
    const live = s.accept(id, logprob);
    // A stop token is not part of the reply (accept does not keep it), so it is not reported.
    if (s.ids.length > before) r.tokens.push(k > 0 ? { id, logprob, top: topLogprobs(row, k, lse) } : { id, logprob });
    let ended = !live;
    if (live && r.req.opts.shouldStop?.(0)) { s.end("stop", "caller"); ended = true; }
    if (live && !ended && this.cache.length[r.slot] + 1 > this.maxT) { s.end("context"); ended = true; }
    if (ended) { this.finish(r); return; }
    r.feed = [id];
    if (r.text || r.tokens.length) {
      r.req.onStep?.(r.text, r.tokens);
      r.text = "";
      r.tokens = [];
    }
  }
}

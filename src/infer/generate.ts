/**
 * The generation engine: prefill the prompt into the KV cache, then sample one token at a
 * time until a stop token, a stop string, max new tokens or the end of the context window.
 * Text is streamed through the tokenizer's stream decoder (never half a UTF-8 character) and
 * held back while it could still be the start of a stop string, so a stop string split over
 * several tokens never reaches the user. Batched generation decodes many prompts together.
 */
import { createCache, forwardCached, type DecodeModel, type KvCache } from "../model/decode.ts";
import type { StreamDecoder, Tokenizer } from "../tokenizer/types.ts";
import { endOfTurnIds, usesOwnTemplate } from "../data/chat-template.ts";
import { makeRng, type Rng } from "./rng.ts";
import { checkSampling, GREEDY, prepareRows, sampleToken, type SamplingOptions } from "./sampling.ts";

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Seed of the sampling RNG (sequence i of a batch uses seed + i). */
  seed: number;
  /** Token ids that end generation (not part of the output). Default: <|im_end|> and <|endoftext|>. */
  stopTokens?: readonly number[];
  /** Strings that end generation (cut from the output), even when split across tokens. */
  stopStrings?: readonly string[];
  /** Streaming: receives each piece of finished text, in order (index = sequence in a batch). */
  onText?: (text: string, index: number) => void;
  /** Asked after each token; true ends that sequence (finish "stop", stoppedBy "caller"), e.g. when screening blocks it. */
  shouldStop?: (index: number) => boolean;
}

export const DEFAULT_GENERATE: GenerateOptions = { ...GREEDY, maxNewTokens: 256, seed: 0 };

export interface Generation {
  /** Generated ids, stop token excluded. */
  ids: number[];
  /** The model's log-probability of each generated id. */
  logprobs: number[];
  /** Generated text, cut before a stop string. */
  text: string;
  /** stop: a stop token or string; length: max new tokens; context: the cache is full. */
  finish: "stop" | "length" | "context";
  /** The stop token (as text) or stop string that ended it. */
  stoppedBy?: string;
}

/**
 * The default stop tokens of a tokenizer: its end-of-turn and end-of-text specials (and, for a
 * model with its own chat template, that family's end-of-turn tokens and its eos).
 */
export function defaultStopTokens(tok: Tokenizer): number[] {
  const ids = ["<|im_end|>", "<|endoftext|>"].map((s) => tok.special.get(s)).filter((x): x is number => x !== undefined);
  return usesOwnTemplate(tok) ? [...new Set([...ids, ...endOfTurnIds(tok)])] : ids;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldBack(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
      if (text.endsWith(s.slice(0, n))) { best = n; break; }
    }
  }
  return best;
}

/** One sequence being generated (also used by the continuous batcher, infer/batcher.ts). */
export class Sequence {
  ids: number[] = [];
  logprobs: number[] = [];
  text = "";
  emitted = 0;
  done = false;
  finish: Generation["finish"] = "length";
  stoppedBy?: string;
  readonly dec: StreamDecoder;
  constructor(readonly index: number, readonly context: number[], readonly rng: Rng, readonly tok: Tokenizer,
              readonly opts: GenerateOptions, readonly stopIds: ReadonlySet<number>) {
    this.dec = tok.streamDecoder();
  }
  private emit(upTo: number): void {
    if (upTo > this.emitted) {
      this.opts.onText?.(this.text.slice(this.emitted, upTo), this.index);
      this.emitted = upTo;
    }
  }
  /** Ends the sequence: flushes the decoder and emits what is left. */
  end(finish: Generation["finish"], by?: string): void {
    if (this.done) return;
    this.done = true;
    this.finish = finish;
    this.stoppedBy = by;
    // Bytes still buffered in the decoder are part of the output (U+FFFD if incomplete).
    this.text += this.dec.flush();
    this.cutAtStopString(false);
    this.emit(this.text.length);
  }
  /** Cuts the text at the first stop string; returns whether one was found. */
  private cutAtStopString(endIt: boolean): boolean {
    const stops = this.opts.stopStrings ?? [];
    let at = -1, which = "";
    for (const s of stops) {
      const i = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (i >= 0 && (at < 0 || i < at)) { at = i; which = s; }
    }
    if (at < 0) return false;
    this.text = this.text.slice(0, at);
    if (endIt) {
      this.done = true;
      this.finish = "stop";
      this.stoppedBy = which;
      this.emit(this.text.length);
    }
    return true;
  }
  /** Takes a sampled token; returns false when the sequence has ended. */
  accept(id: number, logprob: number): boolean {
    if (this.stopIds.has(id)) {
      this.end("stop", this.tok.decode([id]));
      return false;
    }
    this.ids.push(id);
    this.logprobs.push(logprob);
    this.context.push(id);
    this.text += this.dec.push(id);
    if (this.cutAtStopString(true)) return false;
    this.emit(this.text.length - heldBack(this.text, this.opts.stopStrings ?? []));
    if (this.ids.length >= this.opts.maxNewTokens) {
      this.end("length");
      return false;
    }
    return true;
  }
  result(): Generation {
    return { ids: this.ids, logprobs: this.logprobs, text: this.text, finish: this.finish, ...(this.stoppedBy !== undefined ? { stoppedBy: this.stoppedBy } : {}) };
  }
}

/** Checks sampling settings and the length limit (every entry point, cached or not). */
export function checkGenerateOptions(opts: GenerateOptions): void {
  checkSampling(opts);
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 1)) throw new Error(`generate: maxNewTokens must be an integer ≥ 1, got ${opts.maxNewTokens}`);
}

/** A cache kept between calls for one conversation (slot 0), with the ids it holds. */
export interface ReusableCache {
  cache: KvCache;
  ids: number[];
}

/**
 * Generates continuations of a batch of prompts (token ids). The prompts are prefilled in one
 * forward pass, then all unfinished sequences advance together, one token per step.
 */
export function generateBatch(model: DecodeModel, tok: Tokenizer, prompts: readonly (readonly number[])[],
                              opts: GenerateOptions, maxT = model.config.seqLen): Generation[] {
  checkGenerateOptions(opts);
  const B = prompts.length;
  if (B === 0) return [];
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0) throw new Error(`generate: prompt ${i} is empty (it needs at least one token)`);
    if (p.length >= maxT) throw new Error(`generate: prompt ${i} has ${p.length} tokens, the context window is ${maxT}`);
  }
  const cache = createCache(model, B, maxT);
  const logits = forwardCached(model, cache, prompts.map((_, i) => i), prompts.map((p) => p.length), prompts.flat());
  return decodeLoop(model, tok, cache, prompts.map((_, i) => i), logits, prompts.map((p) => [...p]), opts);
}

/**
 * Generates from one prompt. With `reuse`, the cache of an earlier call is kept: only the
 * tokens after the longest common prefix with the cached ids are prefilled (a chat's new turn).
 */
export function generate(model: DecodeModel, tok: Tokenizer, prompt: readonly number[], opts: GenerateOptions,
                         reuse?: ReusableCache): Generation {
  if (!reuse) return generateBatch(model, tok, [prompt], opts)[0];
  const steps = generateSteps(model, tok, prompt, opts, reuse);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * generate() that lets the event loop run every `yieldMs` milliseconds (between tokens), so a
 * key press or signal handler (Ctrl-C in the chat) can set `shouldStop` while it generates.
 * Same tokens as generate().
 */
export async function generateAsync(model: DecodeModel, tok: Tokenizer, prompt: readonly number[], opts: GenerateOptions,
                                    reuse?: ReusableCache, yieldMs = 15): Promise<Generation> {
  const steps = generateSteps(model, tok, prompt, opts, reuse ?? { cache: createCache(model, 1), ids: [] });
  let last = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - last >= yieldMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      last = performance.now();
    }
  }
}

/** One prompt with a kept cache, one token per step (see generate). */
function* generateSteps(model: DecodeModel, tok: Tokenizer, prompt: readonly number[], opts: GenerateOptions,
                        reuse: ReusableCache): Generator<void, Generation> {
  checkGenerateOptions(opts);
  const { cache } = reuse;
  if (prompt.length === 0) throw new Error("generate: the prompt is empty (it needs at least one token)");
  if (prompt.length >= cache.maxT) throw new Error(`generate: prompt has ${prompt.length} tokens, the context window is ${cache.maxT}`);
  let common = 0;
  const held = Math.min(reuse.ids.length, cache.length[0]);
  while (common < held && common < prompt.length - 1 && reuse.ids[common] === prompt[common]) common++;
  cache.length[0] = common;
  const fresh = prompt.slice(common);
  const logits = forwardCached(model, cache, [0], [fresh.length], fresh);
  const context = [...prompt];
  const out = (yield* decodeSteps(model, tok, cache, [0], logits, [context], opts))[0];
  // The cache now holds the prompt and every generated token but the last one sampled.
  reuse.ids = context.slice(0, cache.length[0]);
  return out;
}

function decodeLoop(model: DecodeModel, tok: Tokenizer, cache: KvCache, slots: number[], first: Float32Array,
                    contexts: number[][], opts: GenerateOptions): Generation[] {
  const steps = decodeSteps(model, tok, cache, slots, first, contexts, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** The decoding loop, one step (a token for every active sequence) per `yield`. */
function* decodeSteps(model: DecodeModel, tok: Tokenizer, cache: KvCache, slots: number[], first: Float32Array,
                      contexts: number[][], opts: GenerateOptions): Generator<void, Generation[]> {
  const V = model.config.vocabSize;
  const stopIds = new Set(opts.stopTokens ?? defaultStopTokens(tok));
  const seqs = slots.map((_, i) => new Sequence(i, contexts[i], makeRng(opts.seed + i), tok, opts, stopIds));
  let logits = first;
  let active = seqs.map((_, i) => i);
  while (active.length > 0) {
    const next: number[] = [], feed: number[] = [];
    const lse = prepareRows(model.backend, logits, active.length, V, tok.vocabSize);
    for (let r = 0; r < active.length; r++) {
      const s = seqs[active[r]];
      const row = logits.subarray(r * V, (r + 1) * V);
      const { id, logprob } = sampleToken(row, opts, s.rng, s.context, s.ids, lse[r]);
      if (!s.accept(id, logprob)) continue;
      if (opts.shouldStop?.(active[r])) {
        s.end("stop", "caller");
        continue;
      }
      if (cache.length[slots[active[r]]] + 1 > cache.maxT) {
        s.end("context");
        continue;
      }
      next.push(active[r]);
      feed.push(id);
    }
    active = next;
    if (active.length === 0) break;
    logits = forwardCached(model, cache, active.map((i) => slots[i]), active.map(() => 1), feed);
    yield;
  }
  return seqs.map((s) => s.result());
}

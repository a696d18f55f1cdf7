/**
 * Inference forward with a KV cache: the prompt is prefilled in one pass, then tokens are fed
 * one at a time, each attending to the cached keys and values of everything before it.
 * Same math, same weights (read by Hugging Face name), same Backend ops as the training
 * forward in gpt.ts — so greedy decoding here gives exactly the tokens of full recomputation.
 *
 * Per layer (Llama):  h = rmsnorm(x)·w_in;  q,k,v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ [+ b];  [qk-norm];  rope(q,k)
 *                     x += attn(q, cache k, cache v)·Woᵀ;  h = rmsnorm(x)·w_post;
 *                     x += (silu(h·Wgᵀ) ⊙ h·Wuᵀ)·Wdᵀ
 * then logits = rmsnorm(x)·w_norm · lm_headᵀ (the embedding when tied).
 *
 * The cache holds B independent sequences ("slots"), each with its own length, so a batch of
 * prompts of different lengths decodes together: the matrix products run over all active
 * slots at once (M = number of slots), rope and attention at each slot's own position (one
 * ragged-batch call per layer for decoding rows, see forwardCached).
 * Shapes: C model width, H query heads, Hkv key/value heads, D head size (C/H unless headDim),
 * Q = H·D, F MLP width, V vocab.
 */
import type { Backend } from "../core/backend.ts";
import { ropeTables } from "../core/tensor-utils.ts";
import { ropeInvFreq, type RopeScaling } from "./config.ts";

/** What decoding needs to know about the architecture. */
export interface DecodeConfig {
  nLayer: number;
  nHead: number;
  nKvHead: number;
  nEmbd: number;
  ffnHidden: number;
  vocabSize: number;
  /** Longest context the model was trained for (the cache's default length). */
  seqLen: number;
  ropeTheta: number;
  normEps: number;
  tiedEmbeddings: boolean;
  qkNorm: boolean;
  /** Head size when not nEmbd / nHead (Qwen3). */
  headDim?: number;
  /** q/k/v projections carry biases (Qwen2). */
  qkvBias?: boolean;
  /** RoPE frequency scaling (llama3, linear). */
  ropeScaling?: RopeScaling | null;
}

/** Head size D of a decode config. */
function headSize(c: DecodeConfig): number {
  return c.headDim ?? c.nEmbd / c.nHead;
}

/** A model ready to decode: config, weights by Hugging Face name, and the backend to run on. */
export interface DecodeModel {
  config: DecodeConfig;
  weight(name: string): Float32Array;
  backend: Backend;
  /**
   * Optional: y = x·Wᵀ (+ y when accumulate) for the matrix `name` [N, K], when the model
   * keeps it in another storage (F16, Q8_0: src/infer/weight-dtype.ts); returns false to let
   * the float32 GEMM on weight(name) do it.
   */
  linear?(name: string, M: number, N: number, K: number, x: Float32Array, accumulate: boolean, y: Float32Array): boolean;
}

/** y = x·Wᵀ (+ y): x [M, K], W [N, K] by name, y [M, N]. */
function linear(model: DecodeModel, name: string, M: number, N: number, K: number, x: Float32Array, accumulate: boolean, y: Float32Array): void {
  if (model.linear?.(name, M, N, K, x, accumulate, y)) return;
  model.backend.gemm(false, true, M, N, K, 1, x, model.weight(name), accumulate ? 1 : 0, y);
}

export interface KvCache {
  /** Number of slots (sequences). */
  B: number;
  /** Positions per slot. */
  maxT: number;
  /** Per layer: keys and values [B, maxT, Hkv, D]. */
  k: Float32Array[];
  v: Float32Array[];
  /** Tokens cached so far in each slot [B]. */
  length: Int32Array;
  /** RoPE tables [maxT, D/2]. */
  cos: Float32Array;
  sin: Float32Array;
}

export function createCache(model: DecodeModel, B: number, maxT = model.config.seqLen): KvCache {
  const c = model.config;
  const D = headSize(c);
  const per = B * maxT * c.nKvHead * D;
  const { cos, sin } = ropeTables(maxT, D, c.ropeTheta, ropeInvFreq(D, c.ropeTheta, c.ropeScaling));
  return {
    B, maxT,
    k: Array.from({ length: c.nLayer }, () => new Float32Array(per)),
    v: Array.from({ length: c.nLayer }, () => new Float32Array(per)),
    length: new Int32Array(B),
    cos, sin,
  };
}

/** Forgets a slot's tokens (its cache memory is reused). */
export function resetSlot(cache: KvCache, slot: number): void {
  cache.length[slot] = 0;
}

/**
 * `model.layers.{l}.{suffix}`, built once per (l, suffix): a name made afresh at every call is
 * hashed again by every Map lookup of its weight (~2 % of a small model's decode step).
 */
const layerNameCache: Map<string, string>[] = [];
function layerName(l: number, suffix: string): string {
  const names = (layerNameCache[l] ??= new Map());
  let name = names.get(suffix);
  if (name === undefined) names.set(suffix, (name = `model.layers.${l}.${suffix}`));
  return name;
}

/** A slot fed this many tokens at once attends through attentionCached's tiled prefill; fewer, through attentionDecode. */
const PREFILL_ROWS = 16;

/** Scratch buffers for N rows, kept between calls of the same size. */
interface Scratch {
  N: number;
  x: Float32Array; h: Float32Array; rstd: Float32Array; q: Float32Array; k: Float32Array; v: Float32Array;
  att: Float32Array; g: Float32Array; u: Float32Array; a: Float32Array; qkRstd: Float32Array;
}
const scratchCache = new WeakMap<DecodeModel, Scratch>();
function scratch(model: DecodeModel, N: number): Scratch {
  const s = scratchCache.get(model);
  if (s && s.N >= N) return s;
  const c = model.config;
  const D = headSize(c), kv = c.nKvHead * D, Q = c.nHead * D;
  const made: Scratch = {
    N,
    x: new Float32Array(N * c.nEmbd), h: new Float32Array(N * c.nEmbd), rstd: new Float32Array(N),
    q: new Float32Array(N * Q), k: new Float32Array(N * kv), v: new Float32Array(N * kv),
    att: new Float32Array(N * Q), g: new Float32Array(N * c.ffnHidden), u: new Float32Array(N * c.ffnHidden), a: new Float32Array(N * c.ffnHidden),
    qkRstd: new Float32Array(N * c.nHead),
  };
  scratchCache.set(model, made);
  return made;
}

/**
 * Feeds tokens to the model. Each listed slot gets `counts[i]` new tokens (taken in order
 * from `ids`), placed at positions length[slot] .. length[slot] + counts[i] − 1; the slot's
 * length grows by that. Prefill is counts = [T]; one decode step is counts = [1, 1, …].
 *
 * Returns logits [R, V]: by default one row per slot (its last new token's logits);
 * with allLogits, one row per fed token (R = Σ counts), in order.
 */
export function forwardCached(model: DecodeModel, cache: KvCache, slots: readonly number[], counts: readonly number[],
                              ids: ArrayLike<number>, allLogits = false): Float32Array {
  const c = model.config, be = model.backend;
  const C = c.nEmbd, H = c.nHead, Hkv = c.nKvHead, D = headSize(c), kvW = Hkv * D, Q = H * D, Fh = c.ffnHidden, V = c.vocabSize;
  const N = counts.reduce((a, b) => a + b, 0);
  if (slots.length !== counts.length) throw new Error(`forwardCached: ${slots.length} slots but ${counts.length} counts`);
  if (ids.length !== N) throw new Error(`forwardCached: counts add up to ${N} but ${ids.length} ids were given`);
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i];
    if (!(s >= 0 && s < cache.B)) throw new Error(`forwardCached: slot ${s} is outside the cache's ${cache.B} slots`);
    if (cache.length[s] + counts[i] > cache.maxT)
      throw new Error(`forwardCached: slot ${s} would hold ${cache.length[s] + counts[i]} tokens, more than the cache's ${cache.maxT}`);
  }
  const ids32 = Int32Array.from(ids as ArrayLike<number>);
  for (let i = 0; i < N; i++) if (!(ids32[i] >= 0 && ids32[i] < V)) throw new Error(`forwardCached: token id ${ids32[i]} is outside the vocabulary [0, ${V})`);
  // Rope, the cache write and attention go one of two ways. A slot fed a prefill chunk
  // (PREFILL_ROWS tokens or more) takes ropeForward + attentionCached, whose tiled forward
  // suits many queries (one call per slot, or one for all when the slots are consecutive, at
  // one length, with one count: a batch of prompts started together). Every other row (a
  // decoding step's one token per slot, a short chunk) goes into ONE attentionDecode call per
  // layer with its slot and position, whatever the mix of positions: a per-slot call each
  // was most of a small model's step.
  const uniform = slots.length > 1 && counts[0] >= PREFILL_ROWS &&
    slots.every((sl, i) => sl === slots[0] + i && counts[i] === counts[0] && cache.length[sl] === cache.length[slots[0]]);
  const rowSlot = new Int32Array(N), rowPos = new Int32Array(N);
  let decodeRows = 0;
  for (let i = 0, row = 0; i < slots.length; i++) {
    const chunk = uniform || counts[i] >= PREFILL_ROWS;
    for (let t = 0; t < counts[i]; t++, row++) {
      rowSlot[row] = chunk ? -1 : slots[i];
      rowPos[row] = cache.length[slots[i]] + t;
    }
    if (!chunk) decodeRows += counts[i];
  }
  const S = scratch(model, N);
  const x = S.x.subarray(0, N * C), h = S.h.subarray(0, N * C), rstd = S.rstd.subarray(0, N);
  const q = S.q.subarray(0, N * Q), k = S.k.subarray(0, N * kvW), v = S.v.subarray(0, N * kvW);
  const att = S.att.subarray(0, N * Q), g = S.g.subarray(0, N * Fh), u = S.u.subarray(0, N * Fh);
  const W = (n: string): Float32Array => model.weight(n);

  be.embeddingForward(x, W("model.embed_tokens.weight"), ids32, N, C);
  for (let l = 0; l < c.nLayer; l++) {
    be.rmsnormForward(h, rstd, x, W(layerName(l, "input_layernorm.weight")), N, C, c.normEps);
    linear(model, layerName(l, "self_attn.q_proj.weight"), N, Q, C, h, false, q);
    linear(model, layerName(l, "self_attn.k_proj.weight"), N, kvW, C, h, false, k);
    linear(model, layerName(l, "self_attn.v_proj.weight"), N, kvW, C, h, false, v);
    if (c.qkvBias) {
      // Qwen2: biases on q, k, v (added before rope, as in the training forward)
      for (const [y, b, w] of [[q, "q", Q], [k, "k", kvW], [v, "v", kvW]] as const) {
        const bias = W(layerName(l, `self_attn.${b}_proj.bias`));
        for (let n = 0; n < N; n++) for (let j = 0; j < w; j++) y[n * w + j] += bias[j];
      }
    }
    if (c.qkNorm) {
      // RMSNorm over each head's D values, before rope (Qwen3).
      // (Normalized into scratch and copied back: ops are not promised to work in place.)
      be.rmsnormForward(att, S.qkRstd.subarray(0, N * H), q, W(layerName(l, "self_attn.q_norm.weight")), N * H, D, c.normEps);
      q.set(att);
      const kn = att.subarray(0, N * kvW);
      be.rmsnormForward(kn, S.qkRstd.subarray(0, N * Hkv), k, W(layerName(l, "self_attn.k_norm.weight")), N * Hkv, D, c.normEps);
      k.set(kn);
    }
    if (uniform) {
      be.ropeForward(q, cache.cos, cache.sin, slots.length, counts[0], H, D, cache.length[slots[0]]);
      be.ropeForward(k, cache.cos, cache.sin, slots.length, counts[0], Hkv, D, cache.length[slots[0]]);
    }
    const kc = cache.k[l], vc = cache.v[l];
    if (decodeRows > 0) be.attentionDecode(att, q, k, v, kc, vc, cache.cos, cache.sin, rowSlot, rowPos, N, H, Hkv, D, cache.B, cache.maxT);
    let row = 0;
    for (let i = 0; i < slots.length; i++) {
      // A prefill chunk: write this slot's new keys (roped) and values at its positions (the
      // slot's cache is [maxT, Hkv, D], contiguous, so the new positions go at pos0).
      const s = slots[i], T = counts[i], pos0 = cache.length[s];
      if (!uniform && T < PREFILL_ROWS) { row += T; continue; }
      const ks = k.subarray(row * kvW, (row + T) * kvW);
      if (!uniform) {
        be.ropeForward(q.subarray(row * Q, (row + T) * Q), cache.cos, cache.sin, 1, T, H, D, pos0);
        be.ropeForward(ks, cache.cos, cache.sin, 1, T, Hkv, D, pos0);
      }
      const base = s * cache.maxT * kvW;
      kc.set(ks, base + pos0 * kvW);
      vc.set(v.subarray(row * kvW, (row + T) * kvW), base + pos0 * kvW);
      if (!uniform) {
        be.attentionCached(att.subarray(row * Q, (row + T) * Q), q.subarray(row * Q, (row + T) * Q), kc.subarray(base, base + cache.maxT * kvW),
          vc.subarray(base, base + cache.maxT * kvW), 1, T, H, Hkv, D, pos0, cache.maxT);
      }
      row += T;
    }
    if (uniform) {
      // Consecutive slots at one position with equal counts: one batched call of each op.
      const n = slots.length, T = counts[0], pos0 = cache.length[slots[0]], base = slots[0] * cache.maxT * kvW;
      const span = n * cache.maxT * kvW;
      be.attentionCached(att, q, kc.subarray(base, base + span), vc.subarray(base, base + span), n, T, H, Hkv, D, pos0, cache.maxT);
    }
    linear(model, layerName(l, "self_attn.o_proj.weight"), N, C, Q, att, true, x); // x += att·Woᵀ
    be.rmsnormForward(h, rstd, x, W(layerName(l, "post_attention_layernorm.weight")), N, C, c.normEps);
    linear(model, layerName(l, "mlp.gate_proj.weight"), N, Fh, C, h, false, g);
    linear(model, layerName(l, "mlp.up_proj.weight"), N, Fh, C, h, false, u);
    be.swigluForward(S.a.subarray(0, N * Fh), g, u, N * Fh);
    linear(model, layerName(l, "mlp.down_proj.weight"), N, C, Fh, S.a.subarray(0, N * Fh), true, x); // x += mlp·Wdᵀ
  }
  for (let i = 0; i < slots.length; i++) cache.length[slots[i]] += counts[i];

  // Final norm and logits, only for the rows asked for.
  let R = N, xs = x;
  if (!allLogits) {
    R = slots.length;
    xs = new Float32Array(R * C);
    let row = 0;
    for (let i = 0; i < slots.length; i++) {
      row += counts[i];
      xs.set(x.subarray((row - 1) * C, row * C), i * C);
    }
  }
  const hn = new Float32Array(R * C), r2 = new Float32Array(R);
  be.rmsnormForward(hn, r2, xs, W("model.norm.weight"), R, C, c.normEps);
  const logits = new Float32Array(R * V);
  linear(model, c.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", R, V, C, hn, false, logits);
  return logits;
}

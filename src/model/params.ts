/**
 * All of a model's weights in ONE Float32Array, with a named view per tensor. Names and
 * layouts are Hugging Face's (LlamaForCausalLM / Qwen3ForCausalLM): matrices are [out, in],
 * so a projection is y = x·Wᵀ. One buffer makes the optimizer, gradient zeroing, clipping
 * and checkpointing single loops, and the gradients live in a second buffer of the same layout.
 *
 *   model.embed_tokens.weight                          [V, C]
 *   model.layers.N.input_layernorm.weight              [C]
 *   model.layers.N.self_attn.q_proj.weight             [H·D, C]   (H·D = C unless headDim is set)
 *   model.layers.N.self_attn.q_proj.bias               [H·D]    (qkvBias only)
 *   model.layers.N.self_attn.k_proj.weight             [Hkv·D, C]
 *   model.layers.N.self_attn.k_proj.bias               [Hkv·D]  (qkvBias only)
 *   model.layers.N.self_attn.v_proj.weight             [Hkv·D, C]
 *   model.layers.N.self_attn.v_proj.bias               [Hkv·D]  (qkvBias only)
 *   model.layers.N.self_attn.q_norm.weight             [D]      (qkNorm only)
 *   model.layers.N.self_attn.k_norm.weight             [D]      (qkNorm only)
 *   model.layers.N.self_attn.o_proj.weight             [C, H·D]
 *   model.layers.N.post_attention_layernorm.weight     [C]
 *   model.layers.N.mlp.gate_proj.weight                [F, C]
 *   model.layers.N.mlp.up_proj.weight                  [F, C]
 *   model.layers.N.mlp.down_proj.weight                [C, F]
 *   model.norm.weight                                  [C]
 *   lm_head.weight                                     [V, C]   (absent when tied)
 */
import { headDimOf, type ModelConfig } from "./config.ts";
import { seededRng } from "../core/rng.ts";

/**
 * What a tensor is, for the optimizer: "matrix" = a 2-D hidden projection (Muon may take it),
 * "embedding" = embed_tokens / lm_head, "norm" = a 1-D gain or bias (no weight decay).
 */
export type ParamKind = "matrix" | "embedding" | "norm";

export interface ParamSpec {
  name: string;
  shape: number[];
  kind: ParamKind;
  /** Offset (in floats) into the shared buffer; a multiple of 16 (64-byte alignment). */
  offset: number;
  size: number;
}

/** A buffer of parameters (or of their gradients) with named views. */
export interface ParamSet {
  readonly config: ModelConfig;
  readonly specs: readonly ParamSpec[];
  /** Every value, in layout order (padding between tensors stays zero). */
  readonly data: Float32Array;
  /** The view of one tensor by Hugging Face name; throws for an unknown name. */
  get(name: string): Float32Array;
  has(name: string): boolean;
}

/** One block's tensors (views), in the order the forward uses them. */
export interface LayerViews {
  inNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  /** q/k/v biases (qkvBias), else null. */
  bq: Float32Array | null;
  bk: Float32Array | null;
  bv: Float32Array | null;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  wo: Float32Array;
  postNorm: Float32Array;
  wGate: Float32Array;
  wUp: Float32Array;
  wDown: Float32Array;
}

/**
 * The tensor list of a config, with offsets. The buffer holds the matrices first (embedding,
 * each layer's projections, lm_head) and all norm gains after them, so an optimizer can treat
 * each group as one contiguous range (one call instead of one per tensor).
 */
export function paramSpecs(c: ModelConfig): ParamSpec[] {
  const C = c.nEmbd, V = c.vocabSize, F = c.ffnHidden, D = headDimOf(c), KV = c.nKvHead * D, Q = c.nHead * D;
  const mats: Omit<ParamSpec, "offset" | "size">[] = [], norms: Omit<ParamSpec, "offset" | "size">[] = [];
  mats.push({ name: "model.embed_tokens.weight", shape: [V, C], kind: "embedding" });
  for (let i = 0; i < c.nLayer; i++) {
    const p = `model.layers.${i}.`;
    norms.push({ name: p + "input_layernorm.weight", shape: [C], kind: "norm" });
    mats.push({ name: p + "self_attn.q_proj.weight", shape: [Q, C], kind: "matrix" });
    mats.push({ name: p + "self_attn.k_proj.weight", shape: [KV, C], kind: "matrix" });
    mats.push({ name: p + "self_attn.v_proj.weight", shape: [KV, C], kind: "matrix" });
    if (c.qkvBias) {
      norms.push({ name: p + "self_attn.q_proj.bias", shape: [Q], kind: "norm" });
      norms.push({ name: p + "self_attn.k_proj.bias", shape: [KV], kind: "norm" });
      norms.push({ name: p + "self_attn.v_proj.bias", shape: [KV], kind: "norm" });
    }
    if (c.qkNorm) {
      norms.push({ name: p + "self_attn.q_norm.weight", shape: [D], kind: "norm" });
      norms.push({ name: p + "self_attn.k_norm.weight", shape: [D], kind: "norm" });
    }
    mats.push({ name: p + "self_attn.o_proj.weight", shape: [C, Q], kind: "matrix" });
    norms.push({ name: p + "post_attention_layernorm.weight", shape: [C], kind: "norm" });
    mats.push({ name: p + "mlp.gate_proj.weight", shape: [F, C], kind: "matrix" });
    mats.push({ name: p + "mlp.up_proj.weight", shape: [F, C], kind: "matrix" });
    mats.push({ name: p + "mlp.down_proj.weight", shape: [C, F], kind: "matrix" });
  }
  norms.push({ name: "model.norm.weight", shape: [C], kind: "norm" });
  if (!c.tiedEmbeddings) mats.push({ name: "lm_head.weight", shape: [V, C], kind: "embedding" });
  let offset = 0;
  return [...mats, ...norms].map((t) => {
    const size = t.shape.reduce((a, b) => a * b, 1);
    const spec = { ...t, offset, size };
    offset += Math.ceil(size / 16) * 16;
    return spec;
  });
}

/** Total floats of the shared buffer (padding included). */
export function bufferLength(specs: readonly ParamSpec[]): number {
  const last = specs[specs.length - 1];
  return last ? Math.ceil((last.offset + last.size) / 16) * 16 : 0;
}

/** A zero-filled parameter set (also what a gradient set is). */
export function createParams(c: ModelConfig): ParamSet {
  const specs = paramSpecs(c);
  const data = new Float32Array(bufferLength(specs));
  const views = new Map<string, Float32Array>();
  for (const s of specs) views.set(s.name, data.subarray(s.offset, s.offset + s.size));
  return {
    config: c,
    specs,
    data,
    get(name: string): Float32Array {
      const v = views.get(name);
      if (!v) throw new Error(`model has no parameter "${name}"`);
      return v;
    },
    has: (name) => views.has(name),
  };
}

/** A zeroed set of the same layout (gradients, optimizer moments). */
export function createLike(p: ParamSet): ParamSet {
  return createParams(p.config);
}

/** Views of block i's tensors. */
export function layerViews(p: ParamSet, i: number): LayerViews {
  const g = (n: string): Float32Array => p.get(`model.layers.${i}.${n}`);
  const qk = p.config.qkNorm, bias = p.config.qkvBias === true;
  return {
    inNorm: g("input_layernorm.weight"),
    wq: g("self_attn.q_proj.weight"),
    wk: g("self_attn.k_proj.weight"),
    wv: g("self_attn.v_proj.weight"),
    bq: bias ? g("self_attn.q_proj.bias") : null,
    bk: bias ? g("self_attn.k_proj.bias") : null,
    bv: bias ? g("self_attn.v_proj.bias") : null,
    qNorm: qk ? g("self_attn.q_norm.weight") : null,
    kNorm: qk ? g("self_attn.k_norm.weight") : null,
    wo: g("self_attn.o_proj.weight"),
    postNorm: g("post_attention_layernorm.weight"),
    wGate: g("mlp.gate_proj.weight"),
    wUp: g("mlp.up_proj.weight"),
    wDown: g("mlp.down_proj.weight"),
  };
}

/** The output projection: lm_head, or the embedding when tied. [V, C]. */
export function headWeight(p: ParamSet): Float32Array {
  return p.get(p.config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
}

/**
 * Initial weights, reproducible from the seed: norm gains 1; every matrix normal(0, 0.02)
 * as in GPT-2/Llama and torch_reference.py, except the two projections that write into the
 * residual stream (o_proj, down_proj), scaled by 1/sqrt(2·nLayer) (GPT-2's rule) so the
 * stream's variance does not grow with depth.
 */
export function initParams(p: ParamSet, seed: number): void {
  const rng = seededRng(seed);
  const residScale = 1 / Math.sqrt(2 * p.config.nLayer);
  p.data.fill(0);
  for (const s of p.specs) {
    const v = p.get(s.name);
    if (s.kind === "norm") {
      v.fill(s.name.endsWith(".bias") ? 0 : 1);
      continue;
    }
    const std = /o_proj|down_proj/.test(s.name) ? 0.02 * residScale : 0.02;
    for (let i = 0; i < v.length; i++) v[i] = std * rng.normal();
  }
}

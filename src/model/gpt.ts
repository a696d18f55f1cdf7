/**
 * The GPT: a Llama-shaped decoder-only transformer with forward and backward over the Backend.
 *
 * Architecture choices (as Hugging Face's LlamaForCausalLM; Qwen3 when qkNorm):
 *  - token embedding only (no learned positions); RoPE (rotate_half, θ = ropeTheta) on q and k
 *  - pre-norm blocks with RMSNorm (no biases, except q/k/v biases in Qwen2: qkvBias):
 *      x += o_proj(attention(rope(q), rope(k), v))      with q,k,v = proj(rmsnorm(x)) [+ bias]
 *      x += down_proj(silu(gate_proj(h)) ⊙ up_proj(h))   with h = rmsnorm(x)
 *  - optional QK-norm (Qwen3): RMSNorm over each head's D channels of q and k, before RoPE
 *  - grouped-query attention when nKvHead < nHead; causal; scale 1/sqrt(D); the head size D
 *    is C/H unless headDim says otherwise (Qwen3), then queries are H·D wide and o_proj maps
 *    H·D back to C
 *  - RoPE frequencies optionally scaled (Hugging Face rope_scaling: llama3, linear)
 *  - final RMSNorm, then lm_head (the embedding matrix when tiedEmbeddings)
 *  - loss: mean cross-entropy over targets ≠ −1
 *
 * Memory: activations for N = B·T rows are allocated once (for the largest N seen) and reused;
 * per layer and token 8C + 3F floats are kept for the backward (multi-head; k, v are smaller
 * with grouped heads). The RMSNorm and SwiGLU outputs are kept rather than recomputed: that
 * costs (2C + F) floats per token per layer and saves ~6 % of a step.
 *
 * Recompute (createGPT's `recompute`, `--recompute`): the layers keep only their input
 * (C floats per token) and share one layer's saved values; the backward redoes each block's
 * forward (without its down_proj, whose output is the next block's kept input) before its
 * backward: 21 % more FLOPs per step on the "shakespeare" preset, for (nLayer − 1)·(7C + 3F)
 * fewer floats per token (multi-head, no QK-norm), 3.2 × less activation memory there.
 *
 * Logits: a training forward never holds more than `logitsChunk` floats of logits (16 Mi
 * floats = 64 MiB by default; at least 64 rows). When N·V fits, the cross-entropy replaces
 * the [N, V] logits by their gradient in place and backward() starts with the head, as
 * always. When it does not, the lm_head, the cross-entropy and the head's backward run in
 * chunks of R rows during the forward: per chunk, logits = hF·Headᵀ, the cross-entropy turns
 * them into dlogits, dHead_pending (+)= dlogitsᵀ·hF and dhF = dlogits·Head; backward() adds
 * dHead_pending into grads (so zeroGrad() between forward and backward still works). That
 * costs one [V, C] buffer instead of [N, V] (C ≪ N), and differs from the unchunked path
 * only in the order the sums over rows are taken (float32 rounding; test/memory.test.ts).
 * Whole logits are kept only when asked for (inference, or forward without grad by default).
 *
 * Precision (createGPT's `precision`, `--precision bf16`): every GEMM of the model (the
 * projections, the MLP and the lm_head, forward and backward: NT, NN and TN) runs on
 * Backend.gemmBf16: operands rounded to bfloat16, products summed in float32, outputs float32.
 * Attention's own matmuls (q·kᵀ, P·v and the backward's five) run on attentionForwardBf16 /
 * attentionBackwardBf16 where the backend has them (AMX) and D is a multiple of 32, else in
 * float32. Everything else stays float32: the weights (master copy), gradients, optimizer
 * state, RMSNorm, RoPE, attention's softmax, SwiGLU and the loss. model.backend stays the
 * float32 backend, so the optimizer (Muon's Newton–Schulz included) and generation are float32.
 *
 * Shapes: B batch, T time, N = B·T, C width, H heads, Hkv kv heads, D head size (C/H unless
 * headDim), Q = H·D, KV = Hkv·D, F MLP width, V vocabulary. Every gemm is row-major; weights are [out, in] (y = x·Wᵀ).
 */
import type { Backend } from "../core/backend.ts";
import { headDimOf, ropeInvFreq, type ModelConfig } from "./config.ts";
import { createParams, headWeight, initParams, layerViews, type LayerViews, type ParamSet } from "./params.ts";
import { ropeTables } from "../core/tensor-utils.ts";
import type { DecodeConfig, DecodeModel } from "./decode.ts";

/** Operand precision of the model's GEMMs in training: float32, or bfloat16 with float32 accumulation. */
export type Precision = "fp32" | "bf16";
export const PRECISIONS: readonly Precision[] = ["fp32", "bf16"];

// ---------------------------------------------------------------------------------------------
// Activations

/** Per-layer saved values (views into one buffer per kind). */
interface LayerActs {
  resid: Float32Array;   // [N, C] input of the block (residual stream)
  rstd1: Float32Array;   // [N]
  h1: Float32Array;      // [N, C] rmsnorm(resid)
  qPre: Float32Array;    // [N, Q] q before QK-norm (qkNorm only, else empty)
  kPre: Float32Array;    // [N, KV]
  qRstd: Float32Array;   // [N·H]
  kRstd: Float32Array;   // [N·Hkv]
  q: Float32Array;       // [N, Q]  = [B, T, H, D] after rope
  k: Float32Array;       // [N, KV] = [B, T, Hkv, D] after rope
  v: Float32Array;       // [N, KV]
  att: Float32Array;     // [N, Q] attention output (before o_proj)
  lse: Float32Array;     // [B, H, T]
  mid: Float32Array;     // [N, C] residual after attention
  rstd2: Float32Array;   // [N]
  h2: Float32Array;      // [N, C] rmsnorm(mid)
  gate: Float32Array;    // [N, F]
  up: Float32Array;      // [N, F]
  act: Float32Array;     // [N, F] silu(gate) · up
}

interface Acts {
  N: number;
  layers: LayerActs[];
  out: Float32Array;      // [N, C] residual after the last block
  rstdF: Float32Array;    // [N]
  hF: Float32Array;       // [N, C] final normed
  // scratch for the backward, shared by the layers
  a: Float32Array;        // [N, F] gradient of the SwiGLU output
  dg: Float32Array;       // [N, F]
  du: Float32Array;       // [N, F]
  dh: Float32Array;       // [N, C]
  dres: Float32Array;     // [N, C] gradient of the residual stream
  datt: Float32Array;     // [N, Q] gradient of the attention output (dh itself when Q = C)
  dq: Float32Array;       // [N, Q]
  dk: Float32Array;       // [N, KV]
  dv: Float32Array;       // [N, KV]
  dqPre: Float32Array;    // [N, Q]
  dkPre: Float32Array;    // [N, KV]
}

/** With recompute, the layers share one set of saved values and keep only their own resid. */
function allocActs(c: ModelConfig, B: number, T: number, recompute: boolean): Acts {
  const N = B * T, C = c.nEmbd, D = headDimOf(c), KV = c.nKvHead * D, Q = c.nHead * D, F = c.ffnHidden;
  const f = (n: number): Float32Array => new Float32Array(n);
  const qk = c.qkNorm;
  const layerActs = (resid: Float32Array): LayerActs => ({
    resid, rstd1: f(N), h1: f(N * C),
    qPre: f(qk ? N * Q : 0), kPre: f(qk ? N * KV : 0), qRstd: f(qk ? N * c.nHead : 0), kRstd: f(qk ? N * c.nKvHead : 0),
    q: f(N * Q), k: f(N * KV), v: f(N * KV), att: f(N * Q), lse: f(N * c.nHead),
    mid: f(N * C), rstd2: f(N), h2: f(N * C), gate: f(N * F), up: f(N * F), act: f(N * F),
  });
  const shared = recompute ? layerActs(f(0)) : null;
  const layers: LayerActs[] = [];
  for (let l = 0; l < c.nLayer; l++) layers.push(shared ? { ...shared, resid: f(N * C) } : layerActs(f(N * C)));
  const dh = f(N * C);
  return {
    N, layers, out: f(N * C), rstdF: f(N), hF: f(N * C),
    a: f(N * F), dg: f(N * F), du: f(N * F), dh, dres: f(N * C), datt: Q === C ? dh : f(N * Q),
    dq: f(N * Q), dk: f(N * KV), dv: f(N * KV), dqPre: f(qk ? N * Q : 0), dkPre: f(qk ? N * KV : 0),
  };
}

/**
 * Floats allocActs and the logits chunk hold for N rows (for memory estimates; kept beside
 * allocActs so the two agree): saved values per layer, the backward's scratch, and the
 * logits (R rows of V, plus the [V, C] head gradient buffer when R < N).
 */
export function activationFloats(c: ModelConfig, N: number, recompute: boolean, logitsChunk = 1 << 24):
    { layers: number; scratch: number; logits: number } {
  const C = c.nEmbd, D = headDimOf(c), KV = c.nKvHead * D, Q = c.nHead * D, F = c.ffnHidden, V = c.vocabSize;
  const qk = c.qkNorm ? 1 : 0;
  const saved = N * (2 + 3 * C + qk * (Q + KV + c.nHead + c.nKvHead) + 2 * Q + 2 * KV + c.nHead + 3 * F); // all but resid
  const layers = c.nLayer * N * C + (recompute ? saved : c.nLayer * saved);
  const scratch = N * (1 + 2 * C) + N * (3 * F + 2 * C + (Q === C ? 0 : Q) + Q + 2 * KV + qk * (Q + KV));
  const R = Math.min(N, Math.max(64, Math.floor(logitsChunk / V)));
  return { layers, scratch, logits: R * V + (R < N ? V * C : 0) };
}

// ---------------------------------------------------------------------------------------------
// Layers: each forward beside its backward

interface Ctx {
  be: Backend;
  c: ModelConfig;
  B: number;
  T: number;
  N: number;
  cos: Float32Array;
  sin: Float32Array;
}

/**
 * Attention block: mid = resid + o_proj(attn(rope(norm?(q)), rope(norm?(k)), v)), q,k,v from
 * h = rmsnorm(resid). resid, mid [N, C].
 */
function attentionForward(x: Ctx, w: LayerViews, a: LayerActs): void {
  const { be, c, B, T, N } = x;
  const C = c.nEmbd, H = c.nHead, Hkv = c.nKvHead, D = headDimOf(c), KV = Hkv * D, Q = H * D;
  const h = a.h1;
  be.rmsnormForward(h, a.rstd1, a.resid, w.inNorm, N, C, c.normEps);
  // Projections (+ bias), into q/k directly, or into qPre/kPre when QK-norm follows.
  const q = c.qkNorm ? a.qPre : a.q, k = c.qkNorm ? a.kPre : a.k;
  be.gemm(false, true, N, Q, C, 1, h, w.wq, 0, q);
  be.gemm(false, true, N, KV, C, 1, h, w.wk, 0, k);
  be.gemm(false, true, N, KV, C, 1, h, w.wv, 0, a.v);
  if (w.bq) {
    addBias(q, w.bq, N, Q);
    addBias(k, w.bk!, N, KV);
    addBias(a.v, w.bv!, N, KV);
  }
  if (c.qkNorm) {
    be.rmsnormForward(a.q, a.qRstd, a.qPre, w.qNorm!, N * H, D, c.normEps);
    be.rmsnormForward(a.k, a.kRstd, a.kPre, w.kNorm!, N * Hkv, D, c.normEps);
  }
  be.ropeForward(a.q, x.cos, x.sin, B, T, H, D, 0);
  be.ropeForward(a.k, x.cos, x.sin, B, T, Hkv, D, 0);
  be.attentionForward(a.att, a.lse, a.q, a.k, a.v, B, T, H, Hkv, D);
  a.mid.set(a.resid);
  be.gemm(false, true, N, C, Q, 1, a.att, w.wo, 1, a.mid); // mid += att·Woᵀ
}

/** y[n, :] += b for each of N rows of width W. y [N, W], b [W]. */
function addBias(y: Float32Array, b: Float32Array, N: number, W: number): void {
  for (let n = 0, o = 0; n < N; n++, o += W) for (let j = 0; j < W; j++) y[o + j] += b[j];
}

/** db += Σ_n dy[n, :] (the bias gradient: the bias is added to every row). dy [N, W], db [W]. */
function biasBackward(db: Float32Array, dy: Float32Array, N: number, W: number): void {
  for (let n = 0, o = 0; n < N; n++, o += W) for (let j = 0; j < W; j++) db[j] += dy[o + j];
}

/** Backward of attentionForward: dres [N, C] holds ∂L/∂mid on entry, ∂L/∂resid on exit. */
function attentionBackward(x: Ctx, w: LayerViews, g: LayerViews, a: LayerActs, s: Acts): void {
  const { be, c, B, T, N } = x;
  const C = c.nEmbd, H = c.nHead, Hkv = c.nKvHead, D = headDimOf(c), KV = Hkv * D, Q = H * D;
  const dres = s.dres, h = a.h1, datt = s.datt;
  be.gemm(true, false, C, Q, N, 1, dres, a.att, 1, g.wo);        // dWo += dresᵀ·att
  be.gemm(false, false, N, Q, C, 1, dres, w.wo, 0, datt);        // datt = dres·Wo
  be.attentionBackward(s.dq, s.dk, s.dv, datt, a.q, a.k, a.v, a.att, a.lse, B, T, H, Hkv, D);
  be.ropeBackward(s.dq, x.cos, x.sin, B, T, H, D, 0);
  be.ropeBackward(s.dk, x.cos, x.sin, B, T, Hkv, D, 0);
  let dq = s.dq, dk = s.dk;
  if (c.qkNorm) {
    s.dqPre.fill(0);
    s.dkPre.fill(0);
    be.rmsnormBackward(s.dqPre, g.qNorm!, s.dq, a.qPre, w.qNorm!, a.qRstd, N * H, D);
    be.rmsnormBackward(s.dkPre, g.kNorm!, s.dk, a.kPre, w.kNorm!, a.kRstd, N * Hkv, D);
    dq = s.dqPre;
    dk = s.dkPre;
  }
  if (g.bq) {                                                    // dq, dk, dv: gradients of the projections' outputs
    biasBackward(g.bq, dq, N, Q);
    biasBackward(g.bk!, dk, N, KV);
    biasBackward(g.bv!, s.dv, N, KV);
  }
  be.gemm(true, false, Q, C, N, 1, dq, h, 1, g.wq);              // dWq += dqᵀ·h
  be.gemm(true, false, KV, C, N, 1, dk, h, 1, g.wk);
  be.gemm(true, false, KV, C, N, 1, s.dv, h, 1, g.wv);
  const dh = s.dh;                                               // datt is dead now
  be.gemm(false, false, N, C, Q, 1, dq, w.wq, 0, dh);            // dh = dq·Wq + dk·Wk + dv·Wv
  be.gemm(false, false, N, C, KV, 1, dk, w.wk, 1, dh);
  be.gemm(false, false, N, C, KV, 1, s.dv, w.wv, 1, dh);
  be.rmsnormBackward(dres, g.inNorm, dh, a.resid, w.inNorm, a.rstd1, N, C); // dres += norm backward
}

/**
 * MLP block: out = mid + down_proj(silu(gate_proj(h)) ⊙ up_proj(h)), h = rmsnorm(mid). [N, C].
 * out null: only the values the backward needs (recompute: the block's output is known).
 */
function mlpForward(x: Ctx, w: LayerViews, a: LayerActs, out: Float32Array | null): void {
  const { be, c, N } = x;
  const C = c.nEmbd, F = c.ffnHidden;
  const h = a.h2, act = a.act;
  be.rmsnormForward(h, a.rstd2, a.mid, w.postNorm, N, C, c.normEps);
  be.gemm(false, true, N, F, C, 1, h, w.wGate, 0, a.gate);
  be.gemm(false, true, N, F, C, 1, h, w.wUp, 0, a.up);
  be.swigluForward(act, a.gate, a.up, N * F);
  if (!out) return;
  out.set(a.mid);
  be.gemm(false, true, N, C, F, 1, act, w.wDown, 1, out);        // out += act·Wdᵀ
}

/** Backward of mlpForward: dres holds ∂L/∂out on entry, ∂L/∂mid on exit. */
function mlpBackward(x: Ctx, w: LayerViews, g: LayerViews, a: LayerActs, s: Acts): void {
  const { be, c, N } = x;
  const C = c.nEmbd, F = c.ffnHidden;
  const dres = s.dres, h = a.h2;
  be.gemm(true, false, C, F, N, 1, dres, a.act, 1, g.wDown);     // dWd += dresᵀ·act
  const dact = s.a;
  be.gemm(false, false, N, F, C, 1, dres, w.wDown, 0, dact);     // dact = dres·Wd
  be.swigluBackward(s.dg, s.du, dact, a.gate, a.up, N * F);
  be.gemm(true, false, F, C, N, 1, s.dg, h, 1, g.wGate);         // dWg += dgᵀ·h
  be.gemm(true, false, F, C, N, 1, s.du, h, 1, g.wUp);
  be.gemm(false, false, N, C, F, 1, s.dg, w.wGate, 0, s.dh);     // dh = dg·Wg + du·Wu
  be.gemm(false, false, N, C, F, 1, s.du, w.wUp, 1, s.dh);
  be.rmsnormBackward(dres, g.postNorm, s.dh, a.mid, w.postNorm, a.rstd2, N, C);
}

// ---------------------------------------------------------------------------------------------
// The model

export interface ForwardOptions {
  /**
   * Prepare the backward (default true when targets are given): the cross-entropy then
   * replaces the logits by their gradient, in place. With false, logits() stays valid.
   */
  grad?: boolean;
  /** Receives each position's loss ([B·T], 0 where the target is −1). */
  losses?: Float32Array;
  /**
   * Keep the whole [B·T, V] logits for logits() (default: true unless grad). With false, a
   * forward with targets computes the loss over row chunks of logits (evaluation).
   */
  keepLogits?: boolean;
}

export interface GPT {
  readonly config: ModelConfig;
  readonly params: ParamSet;
  /** Gradients, same layout; backward() adds into them (zeroGrad() clears). */
  readonly grads: ParamSet;
  readonly backend: Backend;
  /**
   * Runs the model on inputs [B·T] (ids). With targets [B·T] (−1 = ignored) returns the mean
   * loss over non-ignored targets (NaN when there are none); without, returns NaN and only
   * computes logits.
   */
  forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, opts?: ForwardOptions): number;
  /**
   * Adds ∂loss/∂θ of the last forward (which must have had targets and grad) into grads.
   * rowScale [B·T] multiplies each position's ∂loss/∂logits first: with the forward's mean over
   * `count` targets, rowScale[i] = count·w_i back-propagates Σ_i w_i·loss_i (DPO weighs each
   * reply token by its pair's ∂L/∂log-prob).
   */
  backward(rowScale?: Float32Array): void;
  /** Logits [B·T, V] of the last forward (kept unless it prepared a backward or keepLogits was false). */
  logits(): Float32Array;
  zeroGrad(): void;
}

/**
 * A model on a backend. Weights come from `params` (e.g. loaded from a checkpoint) or are
 * initialized from `seed` (see initParams).
 */
export function createGPT(config: ModelConfig, backend: Backend,
                          opts: { params?: ParamSet; seed?: number; logitsChunk?: number; recompute?: boolean; precision?: Precision } = {}): GPT {
  const c = config;
  const params = opts.params ?? createParams(c);
  if (!opts.params) initParams(params, opts.seed ?? 1337);
  if (params.config !== c && JSON.stringify(params.config) !== JSON.stringify(c)) {
    throw new Error("createGPT: the parameters were made for a different config");
  }
  const grads = createParams(c);
  const recompute = opts.recompute ?? false;
  const D = headDimOf(c);
  // The backend the model's own ops run on: with bf16, its gemm is gemmBf16 (and attention bf16 where it can be).
  const compute = (opts.precision ?? "fp32") === "bf16" ? withBf16(backend, D) : backend;
  const rope = ropeTables(c.contextLength, D, c.ropeTheta, ropeInvFreq(D, c.ropeTheta, c.ropeScaling));
  const W = Array.from({ length: c.nLayer }, (_, l) => layerViews(params, l));
  const G = Array.from({ length: c.nLayer }, (_, l) => layerViews(grads, l));
  let acts: Acts | null = null;
  // Whole logits [N, V] (only when kept), one chunk of them [R, V] (loss and head backward),
  // and the head's gradient from a chunked forward [V, C] (added into grads by backward).
  let logitsAll: Float32Array | null = null, logitsChunk: Float32Array | null = null, dHeadPending: Float32Array | null = null;
  // The last forward: sizes, views, whether a backward may follow, the kept logits, and
  // dlogits [N, V] when one chunk held them all (else the head's backward already ran).
  let last: { ctx: Ctx; s: Acts; L: LayerActs[]; inputs: Int32Array; targets: Int32Array; ready: boolean; logits: Float32Array | null;
              dlogits: Float32Array | null } | null = null;

  /** Views of the activations for N rows (reallocated only when N grows). */
  function actsFor(B: number, T: number): { s: Acts; L: LayerActs[] } {
    const N = B * T;
    if (!acts || acts.N < N) acts = allocActs(c, B, T, recompute);
    if (acts.N === N) return { s: acts, L: acts.layers };
    const cut = (a: Float32Array, per: number): Float32Array => a.subarray(0, N * per);
    const C = c.nEmbd, KV = c.nKvHead * D, Q = c.nHead * D, F = c.ffnHidden, qk = c.qkNorm ? 1 : 0, H = c.nHead;
    const s0 = acts;
    const dh = cut(s0.dh, C);
    const s: Acts = {
      N, layers: [], out: cut(s0.out, C), rstdF: cut(s0.rstdF, 1), hF: cut(s0.hF, C),
      a: cut(s0.a, F), dg: cut(s0.dg, F), du: cut(s0.du, F), dh, dres: cut(s0.dres, C), datt: Q === C ? dh : cut(s0.datt, Q),
      dq: cut(s0.dq, Q), dk: cut(s0.dk, KV), dv: cut(s0.dv, KV), dqPre: cut(s0.dqPre, Q * qk), dkPre: cut(s0.dkPre, KV * qk),
    };
    const L = s0.layers.map((a) => ({
      resid: cut(a.resid, C), rstd1: cut(a.rstd1, 1), h1: cut(a.h1, C), qPre: cut(a.qPre, Q * qk), kPre: cut(a.kPre, KV * qk),
      qRstd: cut(a.qRstd, H * qk), kRstd: cut(a.kRstd, c.nKvHead * qk), q: cut(a.q, Q), k: cut(a.k, KV), v: cut(a.v, KV),
      att: cut(a.att, Q), lse: cut(a.lse, H), mid: cut(a.mid, C), rstd2: cut(a.rstd2, 1), h2: cut(a.h2, C),
      gate: cut(a.gate, F), up: cut(a.up, F), act: cut(a.act, F),
    }));
    return { s, L };
  }

  function forward(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, o: ForwardOptions = {}): number {
    const N = B * T, C = c.nEmbd, V = c.vocabSize;
    if (!(T >= 1 && T <= c.contextLength)) throw new Error(`forward: sequence length ${T} is outside 1..${c.contextLength} (the model's context)`);
    if (inputs.length !== N) throw new Error(`forward: inputs has ${inputs.length} ids, expected B·T = ${B}·${T} = ${N}`);
    if (targets && targets.length !== N) throw new Error(`forward: targets has ${targets.length} ids, expected ${N}`);
    for (let i = 0; i < N; i++) {
      if (!(inputs[i] >= 0 && inputs[i] < V)) throw new Error(`forward: input id ${inputs[i]} at ${i} is outside the vocabulary [0, ${V})`);
      if (targets && !(targets[i] >= -1 && targets[i] < V)) throw new Error(`forward: target ${targets[i]} at ${i} is outside [-1, ${V})`);
    }
    const { s, L } = actsFor(B, T);
    const ctx: Ctx = { be: compute, c, B, T, N, cos: rope.cos, sin: rope.sin };
    const be = compute;
    be.embeddingForward(L[0]?.resid ?? s.out, params.get("model.embed_tokens.weight"), inputs, N, C);
    for (let l = 0; l < c.nLayer; l++) {
      attentionForward(ctx, W[l], L[l]);
      mlpForward(ctx, W[l], L[l], l + 1 < c.nLayer ? L[l + 1].resid : s.out);
    }
    be.rmsnormForward(s.hF, s.rstdF, s.out, params.get("model.norm.weight"), N, C, c.normEps);
    const grad = targets !== null && (o.grad ?? true);
    const keep = !grad && (o.keepLogits ?? true);
    last = { ctx, s, L, inputs, targets: targets ?? new Int32Array(0), ready: grad, logits: null, dlogits: null };
    if (o.losses && o.losses.length < N) throw new Error(`forward: losses has room for ${o.losses.length} values, need ${N}`);
    if (keep) {
      if (!logitsAll || logitsAll.length < N * V) logitsAll = new Float32Array(N * V);
      const logits = logitsAll.subarray(0, N * V);
      be.gemm(false, true, N, V, C, 1, s.hF, headWeight(params), 0, logits);
      last.logits = logits;
      if (!targets) return NaN;
      const count = countTargets(targets);
      return count > 0 ? be.crossEntropy(null, o.losses ?? null, logits, targets, N, V, 0) / count : NaN;
    }
    if (!targets) return NaN; // logits neither kept nor needed
    return headLoss(s, N, targets, grad, o.losses ?? null);
  }

  /**
   * lm_head + cross-entropy over row chunks of R rows. With grad and one chunk, dlogits [N, V]
   * is left for backward(); with several, the head's backward runs per chunk: dHeadPending
   * (+)= dlogitsᵀ·hF, dhF = dlogits·Head into s.dh. Returns the mean loss over targets ≠ −1.
   * rowScale (backward of weighted rows) scales each row's dlogits before the head's backward.
   */
  function headLoss(s: Acts, N: number, targets: Int32Array, grad: boolean, losses: Float32Array | null, rowScale?: Float32Array): number {
    const be = compute, C = c.nEmbd, V = c.vocabSize;
    const R = Math.min(N, Math.max(64, Math.floor((opts.logitsChunk ?? 1 << 24) / V)));
    if (!logitsChunk || logitsChunk.length < R * V) logitsChunk = new Float32Array(R * V);
    const count = countTargets(targets);
    // Fused: the mean's 1/count goes into the gradient so backward needs no rescaling.
    const scale = count > 0 ? 1 / count : 0;
    const head = headWeight(params);
    if (grad && R < N && !dHeadPending) dHeadPending = new Float32Array(V * C);
    let sum = 0;
    for (let r0 = 0; r0 < N; r0 += R) {
      const n = Math.min(R, N - r0);
      const logits = logitsChunk.subarray(0, n * V), hF = s.hF.subarray(r0 * C, (r0 + n) * C);
      be.gemm(false, true, n, V, C, 1, hF, head, 0, logits);
      sum += be.crossEntropy(grad ? logits : null, losses ? losses.subarray(r0, r0 + n) : null, logits,
                             targets.subarray(r0, r0 + n), n, V, scale);
      if (!grad) continue;
      if (rowScale) for (let i = 0; i < n; i++) if (rowScale[r0 + i] !== 1) be.scale(logits.subarray(i * V, (i + 1) * V), V, rowScale[r0 + i]);
      if (R >= N) {
        last!.dlogits = logits; // one chunk: backward() does the head as the unchunked model did
        break;
      }
      // logits now holds dlogits.
      be.gemm(true, false, V, C, n, 1, logits, hF, r0 === 0 ? 0 : 1, dHeadPending!);          // dHead (+)= dlogitsᵀ·hF
      be.gemm(false, false, n, C, V, 1, logits, head, 0, s.dh.subarray(r0 * C, (r0 + n) * C)); // dhF = dlogits·Head
    }
    return count > 0 ? sum / count : NaN;
  }

  function backward(rowScale?: Float32Array): void {
    if (!last || !last.ready) throw new Error("backward: call forward with targets (and grad not false) first");
    const { ctx, s, L, inputs } = last;
    const be = compute, N = ctx.N, C = c.nEmbd, V = c.vocabSize;
    if (rowScale && rowScale.length !== N) throw new Error(`backward: rowScale has ${rowScale.length} values, expected ${N}`);
    const scaled = rowScale !== undefined && rowScale.some((w) => w !== 1);
    last.ready = false; // dlogits / dhF are consumed
    const dHead = headWeight(grads);
    if (last.dlogits) {
      if (scaled) for (let i = 0; i < N; i++) if (rowScale![i] !== 1) be.scale(last.dlogits.subarray(i * V, (i + 1) * V), V, rowScale![i]);
      // Head: logits = hF·Headᵀ; dlogits [N, V] from the cross-entropy.
      be.gemm(true, false, V, C, N, 1, last.dlogits, s.hF, 1, dHead);         // dHead += dlogitsᵀ·hF
      be.gemm(false, false, N, C, V, 1, last.dlogits, headWeight(params), 0, s.dh); // dhF = dlogits·Head
    } else {
      // The chunked forward ran the head's backward with weight 1 per row; weighted rows (DPO)
      // need it again, chunk by chunk, with each row's dlogits scaled first.
      if (scaled) headLoss(s, N, last.targets, true, null, rowScale);
      // s.dh holds dhF, dHeadPending dHead.
      const p = dHeadPending!;
      for (let i = 0; i < p.length; i++) dHead[i] += p[i];
    }
    s.dres.fill(0);
    be.rmsnormBackward(s.dres, grads.get("model.norm.weight"), s.dh, s.out, params.get("model.norm.weight"), s.rstdF, N, C);
    for (let l = c.nLayer - 1; l >= 0; l--) {
      if (recompute && l < c.nLayer - 1) {
        // The layers share one set of saved values, holding the last layer's after the
        // forward: redo this block's forward from its kept input, with the same kernels on
        // the same inputs, so its values (and the gradients) are bitwise those of a run
        // that kept them. Its output (L[l + 1].resid) is not needed: no down_proj.
        attentionForward(ctx, W[l], L[l]);
        mlpForward(ctx, W[l], L[l], null);
      }
      mlpBackward(ctx, W[l], G[l], L[l], s);
      attentionBackward(ctx, W[l], G[l], L[l], s);
    }
    be.embeddingBackward(grads.get("model.embed_tokens.weight"), s.dres, inputs, N, C);
  }

  return {
    config: c, params, grads, backend,
    forward, backward,
    logits(): Float32Array {
      if (!last) throw new Error("logits: no forward has run");
      if (last.ready) throw new Error("logits: the last forward prepared a backward, so its logits were not kept (pass grad: false)");
      if (!last.logits) throw new Error("logits: the last forward was asked not to keep them (keepLogits: false)");
      return last.logits;
    },
    zeroGrad: () => grads.data.fill(0),
  };
}

/**
 * The backend with gemm replaced by gemmBf16, and attention by its bf16 form when the backend
 * has one and the head size D suits it (every other op, and `this`, unchanged).
 */
function withBf16(be: Backend, D: number): Backend {
  if (!be.gemmBf16) throw new Error(`createGPT: the ${be.name} backend has no bf16 GEMM (gemmBf16); use precision fp32`);
  const attention = bf16Attention(be, D) ? {
    attentionForward: (...a: Parameters<Backend["attentionForward"]>): void => be.attentionForwardBf16!(...a),
    attentionBackward: (...a: Parameters<Backend["attentionBackward"]>): void => be.attentionBackwardBf16!(...a),
  } : {};
  return Object.assign(Object.create(be) as Backend, {
    name: `${be.name}+bf16`,
    gemm: (...a: Parameters<Backend["gemm"]>): void => be.gemmBf16!(...a),
    ...attention,
  });
}

/** Whether `--precision bf16` runs attention's matmuls in bf16 on this backend for head size D. */
export function bf16Attention(be: Backend, D: number): boolean {
  return !!be.attentionForwardBf16 && !!be.attentionBackwardBf16 && D % 32 === 0;
}

function countTargets(targets: Int32Array): number {
  let count = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i] >= 0) count++;
  return count;
}

/** The view the generation engine (decode.ts) reads: same weights, by Hugging Face name. */
export function asDecodeModel(m: Pick<GPT, "config" | "params" | "backend">): DecodeModel {
  const c = m.config;
  const config: DecodeConfig = {
    nLayer: c.nLayer, nHead: c.nHead, nKvHead: c.nKvHead, nEmbd: c.nEmbd, ffnHidden: c.ffnHidden, vocabSize: c.vocabSize,
    seqLen: c.contextLength, ropeTheta: c.ropeTheta, normEps: c.normEps, tiedEmbeddings: c.tiedEmbeddings, qkNorm: c.qkNorm,
    ...(c.headDim !== undefined ? { headDim: c.headDim } : {}),
    ...(c.qkvBias ? { qkvBias: true } : {}),
    ...(c.ropeScaling ? { ropeScaling: c.ropeScaling } : {}),
  };
  return { config, weight: (n) => m.params.get(n), backend: m.backend };
}

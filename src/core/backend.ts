/**
 * The compute backend: every op the model, the optimizers and the generation engine need.
 *
 * Two implementations share this interface:
 *  - `referenceBackend` (src/core/reference.ts): plain TypeScript, float64 accumulation,
 *    written for clarity. It is the ground truth for the native kernels' tests.
 *  - `nativeBackend` (src/core/native.ts): our C kernels (SIMD, multi-threaded) behind Node-API.
 *
 * Conventions
 *  - Tensors are row-major `Float32Array`s (ids and targets `Int32Array`s); shapes are passed
 *    explicitly. A `subarray` view is a tensor too: native code works on its memory in place.
 *  - Shape letters: B batch, T time, C channels (model width), H query heads, Hkv key/value
 *    heads, D head size (C / H), F MLP hidden size, V vocabulary, N rows (= B·T usually).
 *  - Backward ops ADD into weight gradients (dw, dTable) and into `dx` of rmsnormBackward,
 *    so the caller controls zeroing and residual streams accumulate naturally (as in llm.c).
 *    Every other output is overwritten.
 */
export type F32 = Float32Array;
export type I32 = Int32Array;

export interface Backend {
  readonly name: string;

  /**
   * C = alpha · op(A) · op(B) + beta · C, row-major. op(A) is [M, K] (A stored [K, M] when
   * transA), op(B) is [K, N] (B stored [N, K] when transB), C is [M, N].
   * Training uses y = x·Wᵀ (transB), dX = dY·W (none), dW += dYᵀ·X (transA, beta 1).
   * With beta = 0, C's old contents are ignored (NaNs included).
   */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
       A: F32, B: F32, beta: number, C: F32): void;

  /**
   * gemm with bfloat16 operands: each element of A and B is rounded to bf16 (round to nearest
   * even; float32 subnormals become zero), the products are summed in float32, and C stays
   * float32. Mixed-precision training (`--precision bf16`) runs the model's GEMMs on it.
   * |error| against the exact product of the float32 inputs ≤ (2⁻⁷ + K·2⁻²⁴)·Σ_k|a_k·b_k| to first
   * order (bf16's unit roundoff is 2⁻⁸ per operand; test/gemm-bf16.test.ts).
   * Optional: a backend without it cannot train in bf16 (createGPT says so).
   */
  gemmBf16?(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
           A: F32, B: F32, beta: number, C: F32): void;

  /** out[n, :] = table[ids[n], :]. table [V, C], ids [N], out [N, C]. */
  embeddingForward(out: F32, table: F32, ids: I32, N: number, C: number): void;
  /** dTable[ids[n], :] += dOut[n, :]. Ids equal to -1 are skipped. */
  embeddingBackward(dTable: F32, dOut: F32, ids: I32, N: number, C: number): void;

  /**
   * RMSNorm: rstd[n] = 1 / sqrt(mean_c x[n,c]² + eps); out[n,c] = x[n,c] · rstd[n] · w[c].
   * x, out [N, C]; w [C]; rstd [N] (saved for backward). Also used for QK-norm with C = D.
   */
  rmsnormForward(out: F32, rstd: F32, x: F32, w: F32, N: number, C: number, eps: number): void;
  /** dx += ∂L/∂x, dw += ∂L/∂w, given dout [N, C] and the forward's x, w, rstd. */
  rmsnormBackward(dx: F32, dw: F32, dout: F32, x: F32, w: F32, rstd: F32, N: number, C: number): void;

  /**
   * Rotary position embedding, Hugging Face rotate_half convention, in place on
   * x [B, T, H, D]: for i < D/2, with θ = pos · invFreq[i] and pos = pos0 + t,
   *   x'[i] = x[i]·cos θ − x[i + D/2]·sin θ;   x'[i + D/2] = x[i + D/2]·cos θ + x[i]·sin θ.
   * cos, sin: tables [maxT, D/2] (row p holds position p); pos0 + T ≤ maxT.
   */
  ropeForward(x: F32, cos: F32, sin: F32, B: number, T: number, H: number, D: number, pos0: number): void;
  /** The backward of ropeForward, in place on dx [B, T, H, D] (rotation by −θ). */
  ropeBackward(dx: F32, cos: F32, sin: F32, B: number, T: number, H: number, D: number, pos0: number): void;

  /**
   * Causal self-attention with grouped-query heads: query head h reads key/value head
   * h / (H / Hkv). q [B, T, H, D], k and v [B, T, Hkv, D], out [B, T, H, D],
   * lse [B, H, T] = log-sum-exp of each query's scaled scores (saved for backward).
   * Scale 1/sqrt(D). Computed in tiles with an online softmax: O(T) memory per head.
   */
  attentionForward(out: F32, lse: F32, q: F32, k: F32, v: F32,
                   B: number, T: number, H: number, Hkv: number, D: number): void;
  /** Gradients of attentionForward: dq, dk, dv are overwritten. dout [B, T, H, D]. */
  attentionBackward(dq: F32, dk: F32, dv: F32, dout: F32, q: F32, k: F32, v: F32, out: F32, lse: F32,
                    B: number, T: number, H: number, Hkv: number, D: number): void;
  /**
   * attentionForward with bfloat16 matmul operands (mixed-precision training): q, k, v and
   * the unnormalized softmax weights are rounded to bf16 (nearest even) where they enter
   * S = q·kᵀ and out = P·v; the products sum in float32; softmax, lse and out stay float32.
   * Error against float64 attention: test/attention-bf16.test.ts states and checks the bound.
   * Optional, and only where it runs fast (the native backend on a CPU with AMX); D a multiple
   * of 32. Without it, `--precision bf16` keeps attention in float32.
   */
  attentionForwardBf16?(out: F32, lse: F32, q: F32, k: F32, v: F32,
                        B: number, T: number, H: number, Hkv: number, D: number): void;
  /**
   * attentionBackward with bf16 matmul operands: q, k, v, dout rounded where they enter a
   * matmul, P = e^(S − lse) and dS = P∘(dP − Δ)·scale computed in float32 and rounded to bf16
   * for dv += Pᵀ·dout, dk += dSᵀ·q, dq += dS·k; Δ = Σ dout·out and every sum float32.
   */
  attentionBackwardBf16?(dq: F32, dk: F32, dv: F32, dout: F32, q: F32, k: F32, v: F32, out: F32, lse: F32,
                         B: number, T: number, H: number, Hkv: number, D: number): void;
  /**
   * Attention for generation with a KV cache. q [B, Tq, H, D] holds queries at positions
   * pos0 .. pos0+Tq−1; kCache, vCache [B, maxT, Hkv, D] hold keys/values for positions
   * 0 .. pos0+Tq−1 (already written). Query t attends to positions ≤ pos0 + t. out [B, Tq, H, D].
   */
  attentionCached(out: F32, q: F32, kCache: F32, vCache: F32, B: number, Tq: number, H: number,
                  Hkv: number, D: number, pos0: number, maxT: number): void;
  /**
   * One decoding step's attention over a ragged batch, in one call. Row n of q [N, H, D],
   * k, v [N, Hkv, D] is the token at position pos[n] of cache slot slot[n] (slot −1: the row is
   * skipped, out untouched). For each row: rope q[n] and k[n] at pos[n] in place (ropeForward's
   * rotation with the tables cos, sin [maxT, D/2]); write k[n], v[n] into kCache, vCache
   * [S, maxT, Hkv, D] at (slot, pos); then, after every row's write, out[n] [H, D] =
   * attention of q[n] over that slot's positions 0..pos[n] (as attentionCached). So rows of
   * one slot at consecutive positions (a short chunk) see each other's keys.
   */
  attentionDecode(out: F32, q: F32, k: F32, v: F32, kCache: F32, vCache: F32, cos: F32, sin: F32,
                  slot: I32, pos: I32, N: number, H: number, Hkv: number, D: number, S: number, maxT: number): void;

  /** SwiGLU: out = silu(gate) · up, elementwise over n values. silu(x) = x / (1 + e^−x). */
  swigluForward(out: F32, gate: F32, up: F32, n: number): void;
  /** dgate, dup (overwritten) from dout and the forward's gate, up. */
  swigluBackward(dgate: F32, dup: F32, dout: F32, gate: F32, up: F32, n: number): void;

  /**
   * Fused softmax cross-entropy. logits [N, V], targets [N] (−1 = ignored).
   * Returns Σ over non-ignored rows of −log softmax(logits[n])[targets[n]].
   * Writes dlogits[n] = scale · (softmax(logits[n]) − onehot(targets[n])), and 0 for ignored
   * rows. dlogits may be the same array as logits (in place); pass null to skip the gradient.
   * losses (optional, [N]): the per-row loss (0 for ignored rows).
   */
  crossEntropy(dlogits: F32 | null, losses: F32 | null, logits: F32, targets: I32,
               N: number, V: number, scale: number): number;

  /**
   * out[n] = log Σ_j exp(x[n, j]) for R rows of V values (max-shifted). Decoding takes each
   * sampled token's log-probability as z[id] − out[n], one call for the whole batch.
   */
  logSumExp(out: F32, x: F32, R: number, V: number): void;

  /**
   * AdamW step on n values (decoupled weight decay, bias-corrected; step counts from 1):
   *   m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²
   *   p −= lr · ( m/(1−β1^step) / (sqrt(v/(1−β2^step)) + eps) + wd · p )
   */
  adamw(param: F32, grad: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number,
        eps: number, weightDecay: number, step: number): void;

  /**
   * Muon step on a matrix param [rows, cols] (Keller Jordan's Muon):
   *   buf = β buf + g;  u = g + β buf (Nesterov);  O = NewtonSchulz5(u / ‖u‖_F) (nsSteps iterations,
   *   coefficients a=3.4445, b=−4.7750, c=2.0315, on the shorter side);
   *   p −= lr · ( max(1, rows/cols)^0.5 · O + wd · p ).
   */
  muon(param: F32, grad: F32, momentum: F32, rows: number, cols: number, lr: number, beta: number,
       weightDecay: number, nsSteps: number): void;

  /** Σ x[i]², accumulated in float64. */
  sumSquares(x: F32, n: number): number;
  /** x[i] *= s, in place. */
  scale(x: F32, n: number, s: number): void;
}

/**
 * The reference Backend: plain TypeScript, float64 accumulation, written to be read.
 * It is the ground truth the native kernels are tested against (test/ops.test.ts), and its
 * backward ops are themselves checked against finite differences of its forward ops.
 *
 * Shape letters as in backend.ts: B batch, T time, C channels, H query heads, Hkv key/value
 * heads, D head size, V vocabulary, N rows. Speed is not a goal here.
 */
import type { Backend, F32, I32 } from "./backend.ts";
export { ropeTables } from "./tensor-utils.ts";

/** Throws a clear error when a tensor is shorter than its shape says. */
function need(op: string, name: string, a: ArrayLike<number>, n: number): void {
  if (a.length < n) throw new Error(`${op}: ${name} has ${a.length} elements, the shapes need ${n}`);
}

/**
 * C = alpha·op(A)·op(B) + beta·C with float64 sums. A [M, K] ([K, M] if transA),
 * B [K, N] ([N, K] if transB), C [M, N]. beta = 0 ignores C's old contents.
 */
function gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
              A: F32, B: F32, beta: number, C: F32): void {
  need("gemm", "A", A, M * K); need("gemm", "B", B, K * N); need("gemm", "C", C, M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + i] : A[i * K + k];
        const b = transB ? B[j * K + k] : B[k * N + j];
        s += a * b;
      }
      C[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
    }
  }
}

/** x rounded to bfloat16 (nearest even), as a number; float32 subnormals become signed zero, NaN stays NaN. */
export function roundBf16(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer);
  const v = u[0];
  if ((v & 0x7f800000) === 0) u[0] = v & 0x80000000;
  else if ((v & 0x7fffffff) > 0x7f800000) u[0] = (v | 0x400000) & 0xffff0000;
  else u[0] = (((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return f[0];
}

/** gemm on operands rounded to bf16 (float64 sums of the exact products). */
function gemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
                  A: F32, B: F32, beta: number, C: F32): void {
  need("gemmBf16", "A", A, M * K); need("gemmBf16", "B", B, K * N);
  gemm(transA, transB, M, N, K, alpha, A.subarray(0, M * K).map(roundBf16), B.subarray(0, K * N).map(roundBf16), beta, C);
}

// ---------------------------------------------------------------- embedding
// table [V, C], ids [N], out [N, C]

function embeddingForward(out: F32, table: F32, ids: I32, N: number, C: number): void {
  need("embeddingForward", "ids", ids, N); need("embeddingForward", "out", out, N * C);
  const V = Math.floor(table.length / C);
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (id === -1) { out.fill(0, n * C, n * C + C); continue; }
    if (id < 0 || id >= V) throw new Error(`embeddingForward: ids[${n}] = ${id} is outside the table's ${V} rows`);
    out.set(table.subarray(id * C, id * C + C), n * C);
  }
}

function embeddingBackward(dTable: F32, dOut: F32, ids: I32, N: number, C: number): void {
  need("embeddingBackward", "ids", ids, N); need("embeddingBackward", "dOut", dOut, N * C);
  const V = Math.floor(dTable.length / C);
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (id === -1) continue;
    if (id < 0 || id >= V) throw new Error(`embeddingBackward: ids[${n}] = ${id} is outside the table's ${V} rows`);
    for (let c = 0; c < C; c++) dTable[id * C + c] += dOut[n * C + c];
  }
}

// ---------------------------------------------------------------- RMSNorm
// x, out, dout, dx [N, C]; w, dw [C]; rstd [N]

function rmsnormForward(out: F32, rstd: F32, x: F32, w: F32, N: number, C: number, eps: number): void {
  need("rmsnormForward", "x", x, N * C); need("rmsnormForward", "w", w, C);
  need("rmsnormForward", "out", out, N * C); need("rmsnormForward", "rstd", rstd, N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c] * x[n * C + c];
    const r = 1 / Math.sqrt(ss / C + eps);
    rstd[n] = r;
    for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
  }
}

/**
 * With xhat = x·r: out = xhat·w, so dw += Σ_n dout·xhat and
 * dx = r·(dout·w − xhat · mean_c(dout·w·xhat)).
 */
function rmsnormBackward(dx: F32, dw: F32, dout: F32, x: F32, w: F32, rstd: F32, N: number, C: number): void {
  need("rmsnormBackward", "dx", dx, N * C); need("rmsnormBackward", "dw", dw, C);
  need("rmsnormBackward", "dout", dout, N * C); need("rmsnormBackward", "x", x, N * C);
  need("rmsnormBackward", "rstd", rstd, N);
  const dwAcc = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n];
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dout[n * C + c] * w[c] * x[n * C + c] * r;
    const mean = dot / C;
    for (let c = 0; c < C; c++) {
      const xhat = x[n * C + c] * r;
      dwAcc[c] += dout[n * C + c] * xhat;
      dx[n * C + c] += r * (dout[n * C + c] * w[c] - xhat * mean);
    }
  }
  for (let c = 0; c < C; c++) dw[c] += dwAcc[c];
}

// ---------------------------------------------------------------- RoPE
// x [B, T, H, D] in place; cos, sin [maxT, D/2]

function rope(op: string, x: F32, cos: F32, sin: F32, B: number, T: number, H: number, D: number,
              pos0: number, sign: number): void {
  if (D % 2 !== 0) throw new Error(`${op}: head size D=${D} must be even`);
  const half = D / 2;
  need(op, "x", x, B * T * H * D); need(op, "cos", cos, (pos0 + T) * half); need(op, "sin", sin, (pos0 + T) * half);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++)
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D, p = (pos0 + t) * half;
        for (let i = 0; i < half; i++) {
          const c = cos[p + i], s = sign * sin[p + i];
          const x1 = x[o + i], x2 = x[o + i + half];
          x[o + i] = x1 * c - x2 * s;
          x[o + i + half] = x2 * c + x1 * s;
        }
      }
}

// ---------------------------------------------------------------- attention
// q, out [B, T, H, D]; k, v [B, T, Hkv, D]; lse [B, H, T]

function checkHeads(op: string, H: number, Hkv: number): void {
  if (Hkv < 1 || H % Hkv !== 0) throw new Error(`${op}: H=${H} must be a multiple of Hkv=${Hkv}`);
}

/** The softmax weights of one query row over keys 0..last, in float64, and their lse. */
function scoresRow(q: F32, qo: number, k: F32, kBase: number, kStride: number, last: number, D: number,
                   scale: number): { p: Float64Array; lse: number } {
  const p = new Float64Array(last + 1);
  let m = -Infinity;
  for (let j = 0; j <= last; j++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += q[qo + d] * k[kBase + j * kStride + d];
    p[j] = s * scale;
    if (p[j] > m) m = p[j];
  }
  let l = 0;
  for (let j = 0; j <= last; j++) { p[j] = Math.exp(p[j] - m); l += p[j]; }
  for (let j = 0; j <= last; j++) p[j] /= l;
  return { p, lse: m + Math.log(l) };
}

function attentionForward(out: F32, lse: F32, q: F32, k: F32, v: F32,
                          B: number, T: number, H: number, Hkv: number, D: number): void {
  const op = "attentionForward";
  checkHeads(op, H, Hkv);
  need(op, "q", q, B * T * H * D); need(op, "k", k, B * T * Hkv * D); need(op, "v", v, B * T * Hkv * D);
  need(op, "out", out, B * T * H * D); need(op, "lse", lse, B * H * T);
  const scale = 1 / Math.sqrt(D), group = H / Hkv;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kBase = (b * T * Hkv + Math.floor(h / group)) * D, kStride = Hkv * D;
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * D;
        const { p, lse: l } = scoresRow(q, qo, k, kBase, kStride, t, D, scale);
        lse[(b * H + h) * T + t] = l;
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = 0; j <= t; j++) s += p[j] * v[kBase + j * kStride + d];
          out[qo + d] = s;
        }
      }
    }
}

/**
 * With P the softmax weights of one query row: dV_j += P_j·dO, dP_j = dO·V_j,
 * dS_j = P_j·(dP_j − Σ_k P_k dP_k), dQ += scale·Σ_j dS_j K_j, dK_j += scale·dS_j Q.
 * P is recomputed from q and k (out and lse are not needed by this plain version).
 */
function attentionBackward(dq: F32, dk: F32, dv: F32, dout: F32, q: F32, k: F32, v: F32, _out: F32, _lse: F32,
                           B: number, T: number, H: number, Hkv: number, D: number): void {
  const op = "attentionBackward";
  checkHeads(op, H, Hkv);
  need(op, "q", q, B * T * H * D); need(op, "k", k, B * T * Hkv * D); need(op, "v", v, B * T * Hkv * D);
  need(op, "dout", dout, B * T * H * D); need(op, "dq", dq, B * T * H * D);
  need(op, "dk", dk, B * T * Hkv * D); need(op, "dv", dv, B * T * Hkv * D);
  const scale = 1 / Math.sqrt(D), group = H / Hkv;
  const dqA = new Float64Array(B * T * H * D), dkA = new Float64Array(B * T * Hkv * D), dvA = new Float64Array(B * T * Hkv * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kBase = (b * T * Hkv + Math.floor(h / group)) * D, kStride = Hkv * D;
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * D;
        const { p } = scoresRow(q, qo, k, kBase, kStride, t, D, scale);
        const dp = new Float64Array(t + 1);
        let rowDot = 0;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += dout[qo + d] * v[kBase + j * kStride + d];
          dp[j] = s;
          rowDot += p[j] * s;
        }
        for (let j = 0; j <= t; j++) {
          const ko = kBase + j * kStride;
          const ds = p[j] * (dp[j] - rowDot) * scale;
          for (let d = 0; d < D; d++) {
            dvA[ko + d] += p[j] * dout[qo + d];
            dqA[qo + d] += ds * k[ko + d];
            dkA[ko + d] += ds * q[qo + d];
          }
        }
      }
    }
  dq.set(dqA); dk.set(dkA); dv.set(dvA);
}

function attentionCached(out: F32, q: F32, kCache: F32, vCache: F32, B: number, Tq: number, H: number,
                         Hkv: number, D: number, pos0: number, maxT: number): void {
  const op = "attentionCached";
  checkHeads(op, H, Hkv);
  if (pos0 + Tq > maxT) throw new Error(`${op}: pos0 + Tq = ${pos0 + Tq} exceeds the cache length maxT=${maxT}`);
  need(op, "q", q, B * Tq * H * D); need(op, "out", out, B * Tq * H * D);
  need(op, "kCache", kCache, B * maxT * Hkv * D); need(op, "vCache", vCache, B * maxT * Hkv * D);
  const scale = 1 / Math.sqrt(D), group = H / Hkv;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kBase = (b * maxT * Hkv + Math.floor(h / group)) * D, kStride = Hkv * D;
      for (let t = 0; t < Tq; t++) {
        const qo = ((b * Tq + t) * H + h) * D;
        const { p } = scoresRow(q, qo, kCache, kBase, kStride, pos0 + t, D, scale);
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = 0; j <= pos0 + t; j++) s += p[j] * vCache[kBase + j * kStride + d];
          out[qo + d] = s;
        }
      }
    }
}

/** rope + cache write per row, then attentionCached per row (the composition the native op fuses). */
function attentionDecode(out: F32, q: F32, k: F32, v: F32, kCache: F32, vCache: F32, cos: F32, sin: F32,
                         slot: I32, pos: I32, N: number, H: number, Hkv: number, D: number, S: number, maxT: number): void {
  const op = "attentionDecode";
  checkHeads(op, H, Hkv);
  need(op, "q", q, N * H * D); need(op, "out", out, N * H * D); need(op, "k", k, N * Hkv * D); need(op, "v", v, N * Hkv * D);
  need(op, "kCache", kCache, S * maxT * Hkv * D); need(op, "vCache", vCache, S * maxT * Hkv * D);
  need(op, "slot", slot, N); need(op, "pos", pos, N);
  const kvW = Hkv * D, per = maxT * kvW;
  for (let n = 0; n < N; n++) {
    if (slot[n] < 0) continue;
    if (slot[n] >= S || pos[n] < 0 || pos[n] >= maxT)
      throw new Error(`${op}: row ${n}: slot ${slot[n]}, position ${pos[n]} is outside the cache (${S} slots of ${maxT} positions)`);
    rope(op, q.subarray(n * H * D, (n + 1) * H * D), cos, sin, 1, 1, H, D, pos[n], 1);
    rope(op, k.subarray(n * kvW, (n + 1) * kvW), cos, sin, 1, 1, Hkv, D, pos[n], 1);
    kCache.set(k.subarray(n * kvW, (n + 1) * kvW), slot[n] * per + pos[n] * kvW);
    vCache.set(v.subarray(n * kvW, (n + 1) * kvW), slot[n] * per + pos[n] * kvW);
  }
  for (let n = 0; n < N; n++) {
    if (slot[n] < 0) continue;
    const base = slot[n] * per;
    attentionCached(out.subarray(n * H * D, (n + 1) * H * D), q.subarray(n * H * D, (n + 1) * H * D),
      kCache.subarray(base, base + per), vCache.subarray(base, base + per), 1, 1, H, Hkv, D, pos[n], maxT);
  }
}

// ---------------------------------------------------------------- SwiGLU
// gate, up, out, dgate, dup [n]

function swigluForward(out: F32, gate: F32, up: F32, n: number): void {
  for (let i = 0; i < n; i++) out[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
}

/** silu'(g) = σ(g)·(1 + g·(1 − σ(g))). */
function swigluBackward(dgate: F32, dup: F32, dout: F32, gate: F32, up: F32, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i], s = 1 / (1 + Math.exp(-g)), d = dout[i];
    const u = up[i];
    dgate[i] = d * u * s * (1 + g * (1 - s));
    dup[i] = d * g * s;
  }
}

// ---------------------------------------------------------------- cross-entropy
// logits, dlogits [N, V]; targets, losses [N]

function logSumExp(out: F32, x: F32, R: number, V: number): void {
  const op = "logSumExp";
  need(op, "out", out, R); need(op, "x", x, R * V);
  for (let n = 0; n < R; n++) {
    let m = -Infinity, sum = 0;
    for (let j = 0; j < V; j++) m = Math.max(m, x[n * V + j]);
    for (let j = 0; j < V; j++) sum += Math.exp(x[n * V + j] - m);
    out[n] = m + Math.log(sum);
  }
}

function crossEntropy(dlogits: F32 | null, losses: F32 | null, logits: F32, targets: I32,
                      N: number, V: number, scale: number): number {
  const op = "crossEntropy";
  need(op, "logits", logits, N * V); need(op, "targets", targets, N);
  if (dlogits) need(op, "dlogits", dlogits, N * V);
  if (losses) need(op, "losses", losses, N);
  let total = 0;
  const row = new Float64Array(V);
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (t !== -1 && (t < 0 || t >= V)) throw new Error(`${op}: targets[${n}] = ${t} is outside [0, ${V})`);
    if (t === -1) {
      if (dlogits) dlogits.fill(0, n * V, n * V + V);
      if (losses) losses[n] = 0;
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < V; j++) { row[j] = logits[n * V + j]; if (row[j] > m) m = row[j]; }
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(row[j] - m);
    const lse = m + Math.log(sum);
    const loss = lse - row[t];
    total += loss;
    if (losses) losses[n] = loss;
    if (dlogits) for (let j = 0; j < V; j++) dlogits[n * V + j] = scale * (Math.exp(row[j] - lse) - (j === t ? 1 : 0));
  }
  return total;
}

// ---------------------------------------------------------------- optimizers

function adamw(param: F32, grad: F32, m: F32, v: F32, n: number, lr: number, beta1: number, beta2: number,
               eps: number, weightDecay: number, step: number): void {
  if (step < 1) throw new Error(`adamw: step=${step} must count from 1`);
  const bc1 = 1 - Math.pow(beta1, step), bc2 = 1 - Math.pow(beta2, step);
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    param[i] -= lr * ((m[i] / bc1) / (Math.sqrt(v[i] / bc2) + eps) + weightDecay * param[i]);
  }
}

/** Newton–Schulz quintic coefficients of Keller Jordan's Muon. */
export const MUON_NS = { a: 3.4445, b: -4.775, c: 2.0315 } as const;

/**
 * O = NewtonSchulz5(u / (‖u‖_F + 1e-7)) on the shorter side, float64. u [rows, cols];
 * returns O [rows, cols]. Each iteration: A = X·Xᵀ, X = a·X + (b·A + c·A·A)·X.
 */
export function newtonSchulz5(u: ArrayLike<number>, rows: number, cols: number, steps: number): Float64Array {
  const tall = rows > cols, m = tall ? cols : rows, k = tall ? rows : cols; // X [m, k], m ≤ k
  let norm = 0;
  for (let i = 0; i < rows * cols; i++) norm += u[i] * u[i];
  norm = Math.sqrt(norm) + 1e-7;
  let X = new Float64Array(m * k);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) X[tall ? c * k + r : r * k + c] = u[r * cols + c] / norm;
  const { a, b, c } = MUON_NS;
  const A = new Float64Array(m * m), Bm = new Float64Array(m * m);
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        let t = 0;
        for (let l = 0; l < k; l++) t += X[i * k + l] * X[j * k + l];
        A[i * m + j] = t;
      }
    for (let i = 0; i < m; i++)
      for (let j = 0; j < m; j++) {
        let t = 0;
        for (let l = 0; l < m; l++) t += A[i * m + l] * A[l * m + j];
        Bm[i * m + j] = b * A[i * m + j] + c * t;
      }
    const Y = new Float64Array(m * k);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < k; j++) {
        let t = 0;
        for (let l = 0; l < m; l++) t += Bm[i * m + l] * X[l * k + j];
        Y[i * k + j] = a * X[i * k + j] + t;
      }
    X = Y;
  }
  const O = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c2 = 0; c2 < cols; c2++) O[r * cols + c2] = X[tall ? c2 * k + r : r * k + c2];
  return O;
}

function muon(param: F32, grad: F32, momentum: F32, rows: number, cols: number, lr: number, beta: number,
              weightDecay: number, nsSteps: number): void {
  const n = rows * cols;
  need("muon", "param", param, n); need("muon", "grad", grad, n); need("muon", "momentum", momentum, n);
  const u = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    momentum[i] = beta * momentum[i] + grad[i];
    u[i] = grad[i] + beta * momentum[i];
  }
  const O = newtonSchulz5(u, rows, cols, nsSteps);
  const s = Math.sqrt(Math.max(1, rows / cols));
  for (let i = 0; i < n; i++) param[i] -= lr * (s * O[i] + weightDecay * param[i]);
}

function sumSquares(x: F32, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  return s;
}

function scale(x: F32, n: number, s: number): void {
  for (let i = 0; i < n; i++) x[i] *= s;
}

/** The plain TypeScript Backend (float64 accumulation): ground truth for tests, slow. */
export const referenceBackend: Backend = {
  name: "reference",
  gemm,
  gemmBf16,
  embeddingForward,
  embeddingBackward,
  rmsnormForward,
  rmsnormBackward,
  ropeForward: (x, cos, sin, B, T, H, D, pos0) => rope("ropeForward", x, cos, sin, B, T, H, D, pos0, 1),
  ropeBackward: (dx, cos, sin, B, T, H, D, pos0) => rope("ropeBackward", dx, cos, sin, B, T, H, D, pos0, -1),
  attentionForward,
  attentionBackward,
  attentionCached,
  attentionDecode,
  swigluForward,
  swigluBackward,
  crossEntropy,
  logSumExp,
  adamw,
  muon,
  sumSquares,
  scale,
};

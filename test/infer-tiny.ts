/**
 * Test helpers for the generation engine: a plain-loop Backend with just the ops decoding
 * uses, a tiny random Llama in Hugging Face names, and an independent cache-free forward.
 */
import type { Backend } from "../src/core/backend.ts";
import type { DecodeConfig, DecodeModel } from "../src/model/decode.ts";
import { makeRng } from "../src/infer/rng.ts";

// ---- a plain-loop backend with just the ops decoding uses (float64 accumulation) ----------
const notUsed = (): never => { throw new Error("not used by decoding"); };
export const plain: Backend = {
  name: "test-plain",
  gemm(tA, tB, M, N, K, alpha, A, B, beta, C) {
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
      C[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C[i * N + j]);
    }
  },
  embeddingForward(out, table, ids, N, C) { for (let n = 0; n < N; n++) out.set(table.subarray(ids[n] * C, ids[n] * C + C), n * C); },
  rmsnormForward(out, rstd, x, w, N, C, eps) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[n * C + c] ** 2;
      const r = 1 / Math.sqrt(s / C + eps);
      rstd[n] = r;
      for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c];
    }
  },
  ropeForward(x, cos, sin, B, T, H, D, pos0) {
    const h2 = D / 2;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
      const o = ((b * T + t) * H + h) * D, p = (pos0 + t) * h2;
      for (let i = 0; i < h2; i++) {
        const a = x[o + i], bb = x[o + i + h2];
        x[o + i] = a * cos[p + i] - bb * sin[p + i];
        x[o + i + h2] = bb * cos[p + i] + a * sin[p + i];
      }
    }
  },
  attentionDecode(out, q, k, v, kc, vc, cos, sin, slot, pos, N, H, Hkv, D, _S, maxT) {
    // rope and the cache write for every row, then each row's attention: what the op promises
    const kvW = Hkv * D, per = maxT * kvW;
    for (let n = 0; n < N; n++) {
      if (slot[n] < 0) continue;
      plain.ropeForward(q.subarray(n * H * D, (n + 1) * H * D), cos, sin, 1, 1, H, D, pos[n]);
      plain.ropeForward(k.subarray(n * kvW, (n + 1) * kvW), cos, sin, 1, 1, Hkv, D, pos[n]);
      kc.set(k.subarray(n * kvW, (n + 1) * kvW), slot[n] * per + pos[n] * kvW);
      vc.set(v.subarray(n * kvW, (n + 1) * kvW), slot[n] * per + pos[n] * kvW);
    }
    for (let n = 0; n < N; n++) {
      if (slot[n] < 0) continue;
      plain.attentionCached(out.subarray(n * H * D, (n + 1) * H * D), q.subarray(n * H * D, (n + 1) * H * D),
        kc.subarray(slot[n] * per, (slot[n] + 1) * per), vc.subarray(slot[n] * per, (slot[n] + 1) * per), 1, 1, H, Hkv, D, pos[n], maxT);
    }
  },
  attentionCached(out, q, kc, vc, B, Tq, H, Hkv, D, pos0, maxT) {
    for (let b = 0; b < B; b++) for (let t = 0; t < Tq; t++) for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv)), qo = ((b * Tq + t) * H + h) * D;
      const n = pos0 + t + 1, sc = new Float64Array(n);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let s = 0;
        const ko = ((b * maxT + j) * Hkv + g) * D;
        for (let d = 0; d < D; d++) s += q[qo + d] * kc[ko + d];
        sc[j] = s / Math.sqrt(D);
        m = Math.max(m, sc[j]);
      }
      let z = 0;
      for (let j = 0; j < n; j++) z += (sc[j] = Math.exp(sc[j] - m));
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += sc[j] * vc[((b * maxT + j) * Hkv + g) * D + d];
        out[qo + d] = s / z;
      }
    }
  },
  logSumExp(out, x, R, V) {
    for (let n = 0; n < R; n++) {
      let m = -Infinity, s = 0;
      for (let j = 0; j < V; j++) m = Math.max(m, x[n * V + j]);
      for (let j = 0; j < V; j++) s += Math.exp(x[n * V + j] - m);
      out[n] = m + Math.log(s);
    }
  },
  swigluForward(out, g, u, n) { for (let i = 0; i < n; i++) out[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i]; },
  crossEntropy: notUsed, embeddingBackward: notUsed, rmsnormBackward: notUsed, ropeBackward: notUsed,
  attentionForward: notUsed, attentionBackward: notUsed, swigluBackward: notUsed, adamw: notUsed, muon: notUsed,
  sumSquares: notUsed, scale: notUsed,
};

// ---- a tiny random Llama in Hugging Face names --------------------------------------------
export function tinyModel(cfg: Partial<DecodeConfig> = {}, seed = 1, backend: Backend = plain): DecodeModel {
  const c: DecodeConfig = { nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 32, ffnHidden: 48, vocabSize: 40, seqLen: 64,
    ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: true, ...cfg };
  const rng = makeRng(seed);
  const D = c.nEmbd / c.nHead, kv = c.nKvHead * D;
  const w = new Map<string, Float32Array>();
  const rand = (name: string, n: number, scale: number, base = 0): void => {
    w.set(name, Float32Array.from({ length: n }, () => base + scale * (rng.next() * 2 - 1)));
  };
  rand("model.embed_tokens.weight", c.vocabSize * c.nEmbd, 1);
  for (let l = 0; l < c.nLayer; l++) {
    const p = `model.layers.${l}.`;
    rand(p + "input_layernorm.weight", c.nEmbd, 0.2, 1);
    rand(p + "post_attention_layernorm.weight", c.nEmbd, 0.2, 1);
    rand(p + "self_attn.q_proj.weight", c.nEmbd * c.nEmbd, 0.5);
    rand(p + "self_attn.k_proj.weight", kv * c.nEmbd, 0.5);
    rand(p + "self_attn.v_proj.weight", kv * c.nEmbd, 0.5);
    rand(p + "self_attn.o_proj.weight", c.nEmbd * c.nEmbd, 0.3);
    rand(p + "self_attn.q_norm.weight", D, 0.2, 1);
    rand(p + "self_attn.k_norm.weight", D, 0.2, 1);
    rand(p + "mlp.gate_proj.weight", c.ffnHidden * c.nEmbd, 0.4);
    rand(p + "mlp.up_proj.weight", c.ffnHidden * c.nEmbd, 0.4);
    rand(p + "mlp.down_proj.weight", c.nEmbd * c.ffnHidden, 0.3);
  }
  rand("model.norm.weight", c.nEmbd, 0.2, 1);
  rand("lm_head.weight", c.vocabSize * c.nEmbd, 1);
  return { config: c, backend, weight: (n) => { const x = w.get(n); if (!x) throw new Error(`no weight ${n}`); return x; } };
}

// ---- an independent full forward: no cache, causal attention over the whole sequence -------
export function fullForwardLast(m: DecodeModel, ids: number[]): Float64Array {
  const c = m.config, W = m.weight, T = ids.length, C = c.nEmbd, H = c.nHead, Hkv = c.nKvHead, D = C / H;
  const mat = (x: number[][], w: Float32Array, out: number): number[][] =>
    x.map((row) => Array.from({ length: out }, (_, o) => row.reduce((s, v, i) => s + v * w[o * row.length + i], 0)));
  const norm = (row: number[], w: Float32Array): number[] => {
    const r = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / row.length + c.normEps);
    return row.map((v, i) => v * r * w[i]);
  };
  const rope = (vec: number[], pos: number): number[] => {
    const h2 = D / 2, out = vec.slice();
    for (let i = 0; i < h2; i++) {
      const a = pos * Math.pow(c.ropeTheta, (-2 * i) / D), cs = Math.fround(Math.cos(a)), sn = Math.fround(Math.sin(a));
      out[i] = vec[i] * cs - vec[i + h2] * sn;
      out[i + h2] = vec[i + h2] * cs + vec[i] * sn;
    }
    return out;
  };
  let x = ids.map((id) => Array.from(W("model.embed_tokens.weight").subarray(id * C, id * C + C)));
  for (let l = 0; l < c.nLayer; l++) {
    const p = `model.layers.${l}.`;
    const h = x.map((r) => norm(r, W(p + "input_layernorm.weight")));
    const head = (rows: number[][], n: number, wn: string): number[][][] =>
      rows.map((r, t) => Array.from({ length: n }, (_, j) => {
        const hv = r.slice(j * D, j * D + D);
        return rope(c.qkNorm ? norm(hv, W(p + wn)) : hv, t);
      }));
    const q = head(mat(h, W(p + "self_attn.q_proj.weight"), C), H, "self_attn.q_norm.weight");
    const k = head(mat(h, W(p + "self_attn.k_proj.weight"), Hkv * D), Hkv, "self_attn.k_norm.weight");
    const v = mat(h, W(p + "self_attn.v_proj.weight"), Hkv * D);
    const att = q.map((qt, t) => qt.flatMap((qh, hh) => {
      const g = Math.floor(hh / (H / Hkv));
      const s = Array.from({ length: t + 1 }, (_, j) => qh.reduce((a, e, d) => a + e * k[j][g][d], 0) / Math.sqrt(D));
      const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), z = e.reduce((a, b) => a + b, 0);
      return Array.from({ length: D }, (_, d) => e.reduce((a, w, j) => a + w * v[j][g * D + d], 0) / z);
    }));
    const o = mat(att, W(p + "self_attn.o_proj.weight"), C);
    x = x.map((r, t) => r.map((e, i) => e + o[t][i]));
    const h2 = x.map((r) => norm(r, W(p + "post_attention_layernorm.weight")));
    const g = mat(h2, W(p + "mlp.gate_proj.weight"), c.ffnHidden), u = mat(h2, W(p + "mlp.up_proj.weight"), c.ffnHidden);
    const a = g.map((r, t) => r.map((e, i) => (e / (1 + Math.exp(-e))) * u[t][i]));
    const d = mat(a, W(p + "mlp.down_proj.weight"), C);
    x = x.map((r, t) => r.map((e, i) => e + d[t][i]));
  }
  const last = norm(x[T - 1], W("model.norm.weight"));
  return Float64Array.from(mat([last], W(c.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"), c.vocabSize)[0]);
}


/**
 * bf16 attention (attentionForwardBf16 / attentionBackwardBf16, native/attention_amx.h): what
 * `--precision bf16` runs attention's matmuls on where the CPU has AMX tiles.
 *
 * Forward: against float64 attention on the same float32 inputs, every output element within
 * the bound bf16 operands allow (derived below), and the error as a whole of bf16's size.
 * Backward: against a float64 emulation that rounds to bf16 at the same points as the kernel
 * (q, k, v, dout; P and dS after they are computed). The two then differ only by float32 sums
 * and by a P or dS whose float32 value sits so close to a bf16 rounding midpoint that the
 * kernel's float32 error can send it the other way; the tolerance counts both, term by term.
 * Shapes cover GQA groups, T off the 64-key tiles, T under one tile, every D the kernel takes
 * (multiples of 32 up to 256), and the key-range split of the backward (B·Hkv < 8). 1 and 2
 * threads give the same bits.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/core/backend.ts";
import { nativeBackend, setThreads } from "../src/core/native.ts";
import { roundBf16 } from "../src/core/reference.ts";
import { randomF32, uniformSource } from "../src/core/tensor-utils.ts";
import { configFromPreset } from "../src/model/config.ts";
import { bf16Attention, createGPT } from "../src/model/gpt.ts";
import { describePrecision } from "../src/train/pretrain.ts";

const be = nativeBackend();
const skip = be.attentionForwardBf16 ? false
  : "no bf16 attention on this machine (it needs AMX-BF16 tiles, or MYNAH_SIMD_DISABLE names amx): --precision bf16 keeps attention in float32 here";

const u = 2 ** -8;      // bf16 unit roundoff (8 significant bits)
const e32 = 2 ** -24;   // float32 unit roundoff
const EXP = 2 ** -20;   // relative error allowed for the kernels' exp_fast (a degree-6 polynomial: a few float32 ulps)

// B, T, H, Hkv, D
const SHAPES: [number, number, number, number, number][] = [
  [1, 130, 2, 1, 64],   // GQA group of 2, T off the tiles, key range split in 3
  [2, 64, 2, 2, 32],    // exactly one tile
  [1, 40, 3, 1, 128],   // under one tile, group of 3
  [1, 97, 2, 2, 96],
  [1, 33, 1, 1, 256],
  [3, 200, 1, 1, 64],   // B·H below twice the threads: forward query tiles split too
];

interface Inputs { q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array }

function inputs(B: number, T: number, H: number, Hkv: number, D: number, seed: number): Inputs {
  const rng = uniformSource(seed);
  return {
    q: randomF32(B * T * H * D, rng, -1, 1), k: randomF32(B * T * Hkv * D, rng, -1, 1),
    v: randomF32(B * T * Hkv * D, rng, -1, 1), dout: randomF32(B * T * H * D, rng, -1, 1),
  };
}

function withThreads<R>(n: number, fn: () => R): R {
  setThreads(n);
  try {
    return fn();
  } finally {
    setThreads(0);
  }
}

function forward(x: Inputs, B: number, T: number, H: number, Hkv: number, D: number): { out: Float32Array; lse: Float32Array } {
  const out = new Float32Array(B * T * H * D).fill(NaN), lse = new Float32Array(B * H * T).fill(NaN);
  be.attentionForwardBf16!(out, lse, x.q, x.k, x.v, B, T, H, Hkv, D);
  return { out, lse };
}

function backward(x: Inputs, f: { out: Float32Array; lse: Float32Array }, B: number, T: number, H: number, Hkv: number, D: number) {
  const dq = new Float32Array(x.q.length).fill(NaN), dk = new Float32Array(x.k.length).fill(NaN), dv = new Float32Array(x.v.length).fill(NaN);
  be.attentionBackwardBf16!(dq, dk, dv, x.dout, x.q, x.k, x.v, f.out, f.lse, B, T, H, Hkv, D);
  return { dq, dk, dv };
}

test("bf16 attention forward: every output within the bf16 error bound of float64 attention, lse too", { skip }, () => {
  for (const [B, T, H, Hkv, D] of SHAPES) {
    const x = inputs(B, T, H, Hkv, D, 100 + T);
    const { out, lse } = withThreads(2, () => forward(x, B, T, H, Hkv, D));
    const scale = 1 / Math.sqrt(D), group = H / Hkv;
    let worst = 0, sq = 0, ref2 = 0;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++) {
        const kb = (b * T * Hkv + Math.floor(h / group)) * D, ks = Hkv * D;
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * H + h) * D;
          // Exact scores s_j and, for the bound, how far the kernel's exp argument can be off:
          // bf16 q and k move each product by ≤ (2u + u²)|q·k|, the float32 sum of D products by
          // ≤ D·e32·Σ|q·k|, the scale and the subtraction of the running max by ≤ 3·e32·max|s|.
          const s = new Float64Array(t + 1);
          let E = 0, smax = -Infinity, sabs = 0;
          for (let j = 0; j <= t; j++) {
            let dot = 0, abs = 0;
            for (let d = 0; d < D; d++) { dot += x.q[qo + d] * x.k[kb + j * ks + d]; abs += Math.abs(x.q[qo + d] * x.k[kb + j * ks + d]); }
            s[j] = dot * scale;
            smax = Math.max(smax, s[j]);
            sabs = Math.max(sabs, Math.abs(s[j]));
            E = Math.max(E, scale * (2 * u + u * u + D * e32) * abs);
          }
          E += 3 * e32 * sabs + EXP;
          let l = 0;
          for (let j = 0; j <= t; j++) l += Math.exp(s[j] - smax);
          // Perturbing every score by ≤ E moves each softmax weight by a factor within e^{±2E};
          // the weights then enter P·v rounded to bf16 (≤ u), v too (≤ u), and the float32 sums
          // (P·v over ≤ T keys, the running sum l, the rescaling by e^{m_old − m_new}) add
          // ≤ (2T + 16)·e32 + 2·EXP relative. So |out − out*| ≤ Σ_j p_j|v_j| · (that − 1), plus the
          // final division's rounding.
          const factor = Math.exp(2 * E) * (1 + u) ** 2 * (1 + (2 * T + 16) * e32 + 2 * EXP) - 1;
          for (let d = 0; d < D; d++) {
            let o = 0, pv = 0;
            for (let j = 0; j <= t; j++) {
              const p = Math.exp(s[j] - smax) / l, vj = x.v[kb + j * ks + d];
              o += p * vj;
              pv += p * Math.abs(vj);
            }
            const err = Math.abs(out[qo + d] - o), bound = factor * pv + e32 * Math.abs(o);
            assert.ok(err <= bound, `B=${B} T=${T} H=${H} Hkv=${Hkv} D=${D}: out[b=${b}, t=${t}, h=${h}, d=${d}] = ${out[qo + d]}, float64 ${o}: |Δ| ${err.toExponential(3)} > bound ${bound.toExponential(3)}`);
            worst = Math.max(worst, err / bound);
            sq += err * err;
            ref2 += o * o;
          }
          // log-sum-exp is 1-Lipschitz in the max norm: |Δlse| ≤ E, plus the sum's and the log's rounding.
          const lseRef = smax + Math.log(l), lseGot = lse[(b * H + h) * T + t];
          const lb = E + (T + 8) * e32 + EXP + 2 * e32 * Math.abs(lseRef);
          assert.ok(Math.abs(lseGot - lseRef) <= lb, `B=${B} T=${T} D=${D}: lse[b=${b}, h=${h}, t=${t}] ${lseGot} vs ${lseRef} (bound ${lb})`);
        }
      }
    // As a whole the error is bf16's size, not the worst case's: each output averages many
    // independently rounded products (measured 2.5e-3 to 3.2e-3 of the outputs' RMS).
    const rms = Math.sqrt(sq / ref2);
    assert.ok(rms < 2 ** -7, `B=${B} T=${T} D=${D}: RMS relative error ${rms}`);
    assert.ok(rms > 2 ** -12, `B=${B} T=${T} D=${D}: RMS relative error ${rms}: the operands were not rounded to bf16`);
    assert.ok(worst > 0.001, `the bound is ${1 / worst}× the largest error: too loose to catch anything`);
  }
});

/** Whether x and a value within err of it can round to different bf16 values (float32 subnormals flush to 0), and by how much at most. */
function flip(x: number, err: number): number {
  if (err === 0) return 0;
  const ax = Math.abs(x), lo = ax - err, hi = ax + err, top = 2 ** (Math.floor(Math.log2(hi)) - 7);
  if (lo < 2 ** -126 || Math.floor(Math.log2(lo)) !== Math.floor(Math.log2(hi))) return top + err;
  const r = ax / top - Math.floor(ax / top);  // position inside the bf16 interval
  return Math.abs(r - 0.5) * top <= err ? top + err : 0;
}

test("bf16 attention backward: dq, dk, dv = a float64 emulation of its roundings, to float32 sums and rounding flips", { skip }, () => {
  for (const [B, T, H, Hkv, D] of SHAPES) {
    const x = inputs(B, T, H, Hkv, D, 200 + T);
    const f = withThreads(2, () => forward(x, B, T, H, Hkv, D));
    const g = withThreads(2, () => backward(x, f, B, T, H, Hkv, D));
    const scale = 1 / Math.sqrt(D), group = H / Hkv, ks = Hkv * D;
    const r = (a: Float32Array): Float64Array => Float64Array.from(a, roundBf16);
    const qr = r(x.q), kr = r(x.k), vr = r(x.v), dor = r(x.dout);
    const dq = new Float64Array(x.q.length), dk = new Float64Array(x.k.length), dv = new Float64Array(x.v.length);
    const tq = new Float64Array(x.q.length), tk = new Float64Array(x.k.length), tv = new Float64Array(x.v.length);   // tolerances
    const aq = new Float64Array(x.q.length), ak = new Float64Array(x.k.length), av = new Float64Array(x.v.length);   // Σ|terms|
    let values = 0, flipsP = 0, flipsS = 0;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++) {
        const kb = (b * T * Hkv + Math.floor(h / group)) * D;
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * H + h) * D, L = f.lse[(b * H + h) * T + t];
          let delta = 0, deltaAbs = 0;
          for (let d = 0; d < D; d++) { delta += x.dout[qo + d] * f.out[qo + d]; deltaAbs += Math.abs(x.dout[qo + d] * f.out[qo + d]); }
          for (let j = 0; j <= t; j++) {
            const ko = kb + j * ks;
            let S = 0, Sa = 0, dP = 0, dPa = 0;
            for (let d = 0; d < D; d++) {
              S += qr[qo + d] * kr[ko + d]; Sa += Math.abs(qr[qo + d] * kr[ko + d]);
              dP += dor[qo + d] * vr[ko + d]; dPa += Math.abs(dor[qo + d] * vr[ko + d]);
            }
            const P = Math.exp(S * scale - L), dS = P * (dP - delta) * scale;
            // How far the kernel's float32 P and dS can be from these: its float32 sums of D
            // products, the scale, lse's subtraction and exp_fast for P; for dS also its dP and Δ
            // sums, and its three float32 operations.
            const rho = scale * D * e32 * Sa + 2 * e32 * (Math.abs(S * scale) + Math.abs(L)) + EXP;
            const eta = scale * P * (rho * Math.abs(dP - delta) + D * e32 * dPa + (D + 2) * e32 * deltaAbs) + 3 * e32 * Math.abs(dS);
            const Pb = roundBf16(P), dSb = roundBf16(dS), fP = flip(P, rho * P), fS = flip(dS, eta);
            values++;
            if (fP > 0) flipsP++;
            if (fS > 0) flipsS++;
            for (let d = 0; d < D; d++) {
              dv[ko + d] += Pb * dor[qo + d]; av[ko + d] += Math.abs(Pb * dor[qo + d]); tv[ko + d] += fP * Math.abs(dor[qo + d]);
              dk[ko + d] += dSb * qr[qo + d]; ak[ko + d] += Math.abs(dSb * qr[qo + d]); tk[ko + d] += fS * Math.abs(qr[qo + d]);
              dq[qo + d] += dSb * kr[ko + d]; aq[qo + d] += Math.abs(dSb * kr[ko + d]); tq[qo + d] += fS * Math.abs(kr[ko + d]);
            }
          }
        }
      }
    // The tolerance is mostly float32 sums: a P allows a flip where its float32 error (~1e-6
    // relative) reaches a rounding midpoint (measured 0.2-0.8 % of them); a dS more often, as
    // dP − Δ cancels and its error is relative to |dP| + |Δ| (4-25 %, most at D = 256).
    assert.ok(flipsP < values / 50 && flipsS < values / 3, `${flipsP} P and ${flipsS} dS of ${values} values allow a flip`);
    const check = (name: string, got: Float32Array, want: Float64Array, tol: Float64Array, abs: Float64Array): void => {
      for (let i = 0; i < got.length; i++) {
        // float32 sums of ≤ T terms per head, then the group's heads added
        const bound = tol[i] + (T + group + 2) * e32 * abs[i];
        assert.ok(Math.abs(got[i] - want[i]) <= bound,
          `B=${B} T=${T} H=${H} Hkv=${Hkv} D=${D}: ${name}[${i}] = ${got[i]}, emulation ${want[i]}: |Δ| ${Math.abs(got[i] - want[i]).toExponential(3)} > ${bound.toExponential(3)}`);
      }
    };
    check("dq", g.dq, dq, tq, aq);
    check("dk", g.dk, dk, tk, ak);
    check("dv", g.dv, dv, tv, av);
  }
});

test("bf16 attention gives the same bits on 1 and 2 threads", { skip }, () => {
  for (const [B, T, H, Hkv, D] of [[1, 130, 2, 1, 64], [3, 200, 1, 1, 64], [4, 96, 4, 2, 32]] as const) {
    const x = inputs(B, T, H, Hkv, D, 7);
    const run = (n: number) => withThreads(n, () => { const f = forward(x, B, T, H, Hkv, D); return { ...f, ...backward(x, f, B, T, H, Hkv, D) }; });
    const one = run(1), two = run(2);
    for (const k of ["out", "lse", "dq", "dk", "dv"] as const)
      assert.ok(Buffer.from(one[k].buffer).equals(Buffer.from(two[k].buffer)), `B=${B} T=${T} D=${D}: ${k} differs between 1 and 2 threads`);
  }
});

test("--precision bf16 runs attention on the bf16 kernels when D is a multiple of 32, in float32 otherwise, and says which", { skip }, () => {
  const calls: Record<string, number> = {};
  const spy = new Proxy(be, {
    get(target, key: string) {
      const f = (target as unknown as Record<string, unknown>)[key];
      if (typeof f !== "function" || !key.startsWith("attention")) return f;
      return (...a: unknown[]) => { calls[key] = (calls[key] ?? 0) + 1; return (f as (...x: unknown[]) => unknown).apply(target, a); };
    },
  }) as Backend;
  for (const [width, heads, bf16] of [[128, 4, true], [96, 2, false]] as const) {   // D = 32; D = 48
    for (const k of Object.keys(calls)) delete calls[k];
    const c = configFromPreset("small", { vocabSize: 65, contextLength: 32, nLayer: 2, nEmbd: width, nHead: heads, nKvHead: heads });
    assert.equal(bf16Attention(spy, width / heads), bf16);
    assert.match(describePrecision("bf16", be, c), bf16 ? /; bf16 attention matmuls on AMX tiles;/
      : /; float32 attention \(its bf16 kernel needs a head size that is a multiple of 32, this model's is 48\);/);
    const m = createGPT(c, spy, { seed: 1, precision: "bf16" });
    const ids = Int32Array.from({ length: 2 * 32 }, (_, i) => i % 65);
    m.forward(ids, ids, 2, 32);
    m.backward();
    assert.deepEqual(calls, bf16 ? { attentionForwardBf16: 2, attentionBackwardBf16: 2 } : { attentionForward: 2, attentionBackward: 2 });
  }
});

/**
 * Inference weight storage: `f32` (as trained), `f16` (IEEE half, 2 bytes a weight) or `q8_0`
 * (ggml's 8-bit blocks, 34 bytes per 32 weights). Batch-1 decoding reads every weight once
 * per token, so its speed is bound by bytes per weight: F16 halves them, Q8_0 nearly quarters.
 *
 * The projection matrices (q, k, v, o, gate, up, down) and the output head are stored in the
 * chosen dtype; embeddings (a row lookup) and norm gains stay float32. F16: products with
 * M ≤ 8 rows (decoding) run the native on-the-fly kernel (native/gemv_quant.c: gemmF16);
 * larger ones (prefill) decode the matrix into a float32 scratch once and run the float32
 * GEMM. Q8_0: every product runs the native integer kernel (gemmQ8: x rounded to int8 per
 * 32-block as llama.cpp does, int8·int8 dot products, VNNI where the CPU has it; the weights
 * kept in 16-row panels, native/q8_panel.h, which also states the error bound). A matrix whose
 * rows are not a multiple of 32 falls back to F16 under q8_0. Without the native addon the
 * decoded weights multiply float32 x in the backend's GEMM (no activation rounding: within the
 * same bound of the native result, not bit-equal).
 */
import { loadNative } from "../core/native.ts";
import { decodeF16, encodeF16, encodeQ8_0, f16ToF32, Q8_0_BLOCK, Q8_0_BYTES } from "../core/half.ts";
import type { DecodeModel } from "../model/decode.ts";

export type WeightDtype = "f32" | "f16" | "q8_0";
export const WEIGHT_DTYPES: readonly WeightDtype[] = ["f32", "f16", "q8_0"];

/** Checks a --dtype value; `flag` names it in the error. */
export function parseWeightDtype(v: string, flag = "--dtype"): WeightDtype {
  if (!(WEIGHT_DTYPES as readonly string[]).includes(v)) throw new Error(`${flag}: ${JSON.stringify(v)} is not one of ${WEIGHT_DTYPES.join(", ")}`);
  return v as WeightDtype;
}

interface QuantMatrix {
  dtype: "f16" | "q8_0";
  N: number;
  K: number;
  data: Uint16Array | Uint8Array;
}

interface QuantOps {
  gemmF16(M: number, N: number, K: number, x: Float32Array, w: Uint16Array, accumulate: boolean, y: Float32Array): void;
  gemmQ8(M: number, N: number, K: number, x: Float32Array, panels: Uint8Array, accumulate: boolean, y: Float32Array): void;
  f16ToF32(src: Uint16Array, dst: Float32Array, n: number): void;
  q8ToF32(panels: Uint8Array, dst: Float32Array, N: number, K: number): void;
  q8Path(): string;
}

function nativeQuantOps(): QuantOps | null {
  if (process.env.MYNAH_BACKEND === "reference") return null;
  try {
    const a = loadNative() as unknown as Partial<QuantOps>;
    return typeof a.gemmF16 === "function" && typeof a.gemmQ8 === "function" ? (a as QuantOps) : null;
  } catch {
    return null;
  }
}

/** Rows per Q8_0 panel (native/q8_panel.h). */
export const Q8_PANEL_ROWS = 16;

/** Bytes of an [N, K] Q8_0 matrix in panels: 17·K per 16 rows (34 per 32 weights, the last panel padded). */
export function q8PanelBytes(N: number, K: number): number {
  return Math.ceil(N / Q8_PANEL_ROWS) * 17 * K;
}

/**
 * ggml's Q8_0 blocks of an [N, K] matrix (encodeQ8_0) reordered into the panels the native
 * kernel reads (native/q8_panel.h): per 16 rows, the quants q + 128 as [K/32][8][16][4] bytes
 * (4 consecutive weights of 16 rows per 64 bytes), then the F16 scales as [K/32][16]. Padding
 * rows hold zero weights (byte 128) and zero scales. Same numbers, no rounding.
 */
export function packQ8_0Panels(blocks: Uint8Array, N: number, K: number): Uint8Array {
  if (K % Q8_0_BLOCK) throw new Error(`Q8_0 panels: rows of ${K} values are not a multiple of ${Q8_0_BLOCK}`);
  const nb = K / Q8_0_BLOCK, out = new Uint8Array(q8PanelBytes(N, K)).fill(128);
  const P = Math.ceil(N / Q8_PANEL_ROWS);
  for (let p = 0; p < P; p++) out.fill(0, p * 17 * K + 16 * K, (p + 1) * 17 * K);
  for (let j = 0; j < N; j++) {
    const p = Math.floor(j / Q8_PANEL_ROWS), r = j % Q8_PANEL_ROWS, base = p * 17 * K;
    for (let b = 0; b < nb; b++) {
      const src = (j * nb + b) * Q8_0_BYTES;
      out[base + 16 * K + (b * 16 + r) * 2] = blocks[src];
      out[base + 16 * K + (b * 16 + r) * 2 + 1] = blocks[src + 1];
      for (let k = 0; k < Q8_0_BLOCK; k++) out[base + ((b * 8 + (k >> 2)) * 16 + r) * 4 + (k & 3)] = (blocks[src + 2 + k] + 128) & 0xff;
    }
  }
  return out;
}

/** Q8_0 panels → float32 [N, K] (d·q), in TypeScript. */
export function decodeQ8_0Panels(panels: Uint8Array, N: number, K: number): Float32Array {
  const nb = K / Q8_0_BLOCK, out = new Float32Array(N * K);
  for (let j = 0; j < N; j++) {
    const p = Math.floor(j / Q8_PANEL_ROWS), r = j % Q8_PANEL_ROWS, base = p * 17 * K;
    for (let b = 0; b < nb; b++) {
      const d = f16ToF32(panels[base + 16 * K + (b * 16 + r) * 2] | (panels[base + 16 * K + (b * 16 + r) * 2 + 1] << 8));
      for (let k = 0; k < Q8_0_BLOCK; k++) out[j * K + b * 32 + k] = d * (panels[base + ((b * 8 + (k >> 2)) * 16 + r) * 4 + (k & 3)] - 128);
    }
  }
  return out;
}

export function quantizeMatrix(w: Float32Array, N: number, K: number, dtype: "f16" | "q8_0"): QuantMatrix {
  if (dtype === "q8_0" && K % Q8_0_BLOCK === 0) return { dtype, N, K, data: packQ8_0Panels(encodeQ8_0(w, N, K), N, K) };
  return { dtype: "f16", N, K, data: encodeF16(w) };
}

/** The matrix decoded to float32 (what the kernels multiply by). */
export function dequantizeMatrix(q: QuantMatrix, out = new Float32Array(q.N * q.K)): Float32Array {
  const ops = nativeQuantOps();
  if (q.dtype === "f16") {
    if (ops) ops.f16ToF32(q.data as Uint16Array, out, q.N * q.K);
    else out.set(decodeF16(q.data as Uint16Array));
  } else if (ops) ops.q8ToF32(q.data as Uint8Array, out, q.N, q.K);
  else out.set(decodeQ8_0Panels(q.data as Uint8Array, q.N, q.K));
  return out;
}

/** Which Q8_0 dot-product path the native addon runs here (e.g. "avx512-vnni (zmm)"), or null without it. */
export function q8KernelPath(): string | null {
  const ops = nativeQuantOps();
  return ops && typeof ops.q8Path === "function" ? ops.q8Path() : null;
}

/** The names of the matrices stored in the chosen dtype. */
function storedNames(m: DecodeModel): string[] {
  const names: string[] = [];
  for (let l = 0; l < m.config.nLayer; l++) {
    const p = `model.layers.${l}.`;
    for (const n of ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]) names.push(p + n + ".weight");
  }
  names.push(m.config.tiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return names;
}

/** The float32 tensors a model keeps besides its stored matrices: the embedding and the norm gains. */
function keptNames(m: DecodeModel): string[] {
  const names = ["model.embed_tokens.weight", "model.norm.weight"];
  for (let l = 0; l < m.config.nLayer; l++) {
    const p = `model.layers.${l}.`;
    names.push(p + "input_layernorm.weight", p + "post_attention_layernorm.weight");
    if (m.config.qkNorm) names.push(p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight");
  }
  return names;
}

/**
 * The model with its matrices stored in `dtype` (f32 returns it unchanged). With `release`,
 * the returned model copies the float32 tensors it still needs (embedding, norms) and holds no
 * reference to `model`'s weights, so their memory can be freed (the loader passes views of
 * the file it read); weight() of a stored matrix then throws.
 */
export function withWeightDtype(model: DecodeModel, dtype: WeightDtype, opts: { release?: boolean } = {}): DecodeModel & { dtype: WeightDtype } {
  if (dtype === "f32") return { ...model, dtype };
  const ops = nativeQuantOps();
  const mats = new Map<string, QuantMatrix>();
  for (const name of storedNames(model)) {
    const w = model.weight(name);
    // K: the width the matrix reads (MLP width for down_proj, H·D for o_proj: Qwen3's head size can differ from C/H)
    const c = model.config;
    const K = /down_proj/.test(name) ? c.ffnHidden : /o_proj/.test(name) ? c.nHead * (c.headDim ?? c.nEmbd / c.nHead) : c.nEmbd;
    const N = w.length / K;
    mats.set(name, quantizeMatrix(w, N, K, dtype));
  }
  let scratch = new Float32Array(0);
  const linear = (name: string, M: number, N: number, K: number, x: Float32Array, accumulate: boolean, y: Float32Array): boolean => {
    const q = mats.get(name);
    if (!q) return false;
    if (q.N !== N || q.K !== K) throw new Error(`linear ${name}: stored [${q.N}, ${q.K}], asked for [${N}, ${K}]`);
    if (ops && q.dtype === "q8_0") {
      ops.gemmQ8(M, N, K, x, q.data as Uint8Array, accumulate, y);
      return true;
    }
    if (ops && M <= 8) {
      ops.gemmF16(M, N, K, x, q.data as Uint16Array, accumulate, y);
      return true;
    }
    // prefill (or no addon): decode once, then the float32 GEMM of the backend
    if (scratch.length < N * K) scratch = new Float32Array(N * K);
    const w = dequantizeMatrix(q, scratch.subarray(0, N * K));
    model.backend.gemm(false, true, M, N, K, 1, x, w, accumulate ? 1 : 0, y);
    return true;
  };
  if (!opts.release) return { ...model, linear, dtype };
  const kept = new Map(keptNames(model).map((n) => [n, model.weight(n).slice()]));
  const weight = (name: string): Float32Array => {
    const w = kept.get(name);
    if (w) return w;
    throw new Error(mats.has(name) ? `weight "${name}" is stored as ${mats.get(name)!.dtype} (use linear())` : `model has no weight "${name}"`);
  };
  return { config: model.config, backend: model.backend, weight, linear, dtype };
}

/** Bytes of the matrices as stored (what one decoding step reads). */
export function storedMatrixBytes(model: DecodeModel, dtype: WeightDtype): number {
  let n = 0;
  for (const name of storedNames(model)) {
    const len = model.weight(name).length;
    // K: the width the matrix reads (MLP width for down_proj, H·D for o_proj: Qwen3's head size can differ from C/H)
    const c = model.config;
    const K = /down_proj/.test(name) ? c.ffnHidden : /o_proj/.test(name) ? c.nHead * (c.headDim ?? c.nEmbd / c.nHead) : c.nEmbd;
    n += dtype === "f32" ? 4 * len : dtype === "f16" || K % Q8_0_BLOCK ? 2 * len : q8PanelBytes(len / K, K);
  }
  return n;
}

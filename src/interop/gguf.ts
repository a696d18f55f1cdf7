/**
 * GGUF export: a mynah model folder as one file llama.cpp (and Ollama, LM Studio, …) loads.
 *
 * GGUF v3 layout (little-endian), as llama.cpp's gguf.cpp / gguf-py read it:
 *
 *   "GGUF"  u32 version = 3  u64 tensor count  u64 metadata count
 *   metadata: key (u64 length + UTF-8), u32 value type, value
 *             (strings are u64 length + bytes; arrays are u32 element type, u64 count, elements)
 *   tensor infos: name, u32 n_dims, u64 ne[n_dims] (ne[0] = the contiguous dimension),
 *                 u32 ggml type, u64 offset from the start of the data section
 *   padding to `general.alignment` (32), then the tensor data, each tensor 32-aligned.
 *
 * A Hugging Face matrix [out, in] is ne = [in, out] with the same bytes. Names follow
 * llama.cpp's `llama` architecture (`qwen3` when the model has QK-norm):
 *
 *   model.embed_tokens.weight            token_embd.weight
 *   model.layers.N.input_layernorm       blk.N.attn_norm
 *   ….self_attn.{q,k,v,o}_proj           blk.N.attn_{q,k,v,output}      (q, k rows permuted, below)
 *   ….self_attn.{q,k}_norm               blk.N.attn_{q,k}_norm          (qwen3)
 *   ….post_attention_layernorm           blk.N.ffn_norm
 *   ….mlp.{gate,up,down}_proj            blk.N.ffn_{gate,up,down}
 *   model.norm                           output_norm
 *   lm_head                              output                          (absent when tied)
 *
 * RoPE: mynah (like Hugging Face) rotates the pair (i, i + D/2) of each head; llama.cpp's
 * `llama` architecture rotates (2i, 2i+1). Reordering the rows of Wq and Wk per head
 * (new row 2i = old row i, new row 2i+1 = old row D/2 + i) makes llama.cpp compute the same
 * attention scores: q·k is invariant when q and k are permuted alike. `qwen3` uses the
 * (i, i + D/2) layout, so its rows are kept.
 *
 * Weights: `f32`; `f16` (matrices in F16, norms F32); `q8_0` (matrices in Q8_0, rows cut in
 * blocks of 32; a matrix whose rows are not a multiple of 32 falls back to F16; norms F32).
 *
 * Tokenizer: `tokenizer.ggml.model = gpt2` (byte-level BPE): every id's token in GPT-2
 * byte-level characters (special tokens as their text, type CONTROL; ids the tokenizer does
 * not use up to the model's vocabulary as `[PADn]`, type UNUSED), the merges as "a b", the
 * special ids, and `tokenizer.ggml.pre`: the name of the llama.cpp pre-tokenizer, whose split
 * regex is built into llama.cpp (an unknown name makes llama.cpp refuse the file).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "../core/atomic-write.ts";
import { encodeF16, encodeQ8_0, Q8_0_BLOCK } from "../core/half.ts";
import type { ModelConfig } from "../model/config.ts";
import { loadModelFolder } from "../model/weights.ts";
import { bpeTokenizer, bytesToByteLevel, loadTokenizer, loadTokenizerConfig, ranksToMerges, type BpeTokenizer } from "../tokenizer/index.ts";
import { CL100K_PATTERN, GPT2_PATTERN, QWEN2_PATTERN } from "../tokenizer/pattern.ts";
import { CHAT_TEMPLATE, IM_END, IM_START } from "../data/chat-template.ts";

// ---- GGUF constants (gguf-py/gguf/constants.py) ------------------------------------------

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** Metadata value types. */
export const GV = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;

/** ggml tensor types used here. */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8 } as const;
/** llama_ftype, `general.file_type`. */
const FILE_TYPE = { f32: 0, f16: 1, q8_0: 7 } as const;
/** tokenizer.ggml.token_type values. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export type GgufDtype = keyof typeof FILE_TYPE;
export const GGUF_DTYPES: readonly GgufDtype[] = ["f32", "f16", "q8_0"];

/** A metadata value: a scalar of `type`, or an array of `elem` values. */
export type GgufValue =
  | { type: number; value: number | boolean | string; elem?: undefined }
  | { type: typeof GV.ARRAY; elem: number; value: (number | string)[] };

export interface GgufTensor {
  name: string;
  /** ne[0] is the contiguous dimension (a row). */
  ne: number[];
  type: number;
  data: Uint8Array;
}

// ---- writing -----------------------------------------------------------------------------

/** Little-endian byte sink with a growing buffer. */
class Sink {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  n = 0;
  private need(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.n + k) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }
  u8(v: number): void { this.need(1); this.view.setUint8(this.n, v); this.n += 1; }
  i8(v: number): void { this.need(1); this.view.setInt8(this.n, v); this.n += 1; }
  u16(v: number): void { this.need(2); this.view.setUint16(this.n, v, true); this.n += 2; }
  i16(v: number): void { this.need(2); this.view.setInt16(this.n, v, true); this.n += 2; }
  u32(v: number): void { this.need(4); this.view.setUint32(this.n, v, true); this.n += 4; }
  i32(v: number): void { this.need(4); this.view.setInt32(this.n, v, true); this.n += 4; }
  f32(v: number): void { this.need(4); this.view.setFloat32(this.n, v, true); this.n += 4; }
  f64(v: number): void { this.need(8); this.view.setFloat64(this.n, v, true); this.n += 8; }
  u64(v: number): void { this.need(8); this.view.setBigUint64(this.n, BigInt(v), true); this.n += 8; }
  i64(v: number): void { this.need(8); this.view.setBigInt64(this.n, BigInt(v), true); this.n += 8; }
  bytes(b: Uint8Array): void { this.need(b.length); this.buf.set(b, this.n); this.n += b.length; }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.bytes(b);
  }
  pad(align: number): void {
    const k = (align - (this.n % align)) % align;
    this.need(k);
    this.buf.fill(0, this.n, this.n + k);
    this.n += k;
  }
  done(): Uint8Array { return this.buf.subarray(0, this.n); }
}

function writeScalar(s: Sink, type: number, v: number | boolean | string): void {
  switch (type) {
    case GV.U8: return s.u8(v as number);
    case GV.I8: return s.i8(v as number);
    case GV.U16: return s.u16(v as number);
    case GV.I16: return s.i16(v as number);
    case GV.U32: return s.u32(v as number);
    case GV.I32: return s.i32(v as number);
    case GV.F32: return s.f32(v as number);
    case GV.U64: return s.u64(v as number);
    case GV.I64: return s.i64(v as number);
    case GV.F64: return s.f64(v as number);
    case GV.BOOL: return s.u8(v ? 1 : 0);
    case GV.STRING: return s.str(v as string);
    default: throw new Error(`GGUF: cannot write a scalar of type ${type}`);
  }
}

/**
 * Encodes a GGUF file: header and metadata in one buffer, then each tensor's bytes (the
 * chunks are written as they are, so tensors are not copied).
 */
export function encodeGguf(kv: [string, GgufValue][], tensors: GgufTensor[]): Uint8Array[] {
  const s = new Sink();
  s.u32(GGUF_MAGIC);
  s.u32(GGUF_VERSION);
  s.u64(tensors.length);
  s.u64(kv.length);
  for (const [key, v] of kv) {
    s.str(key);
    s.u32(v.type);
    if (v.elem !== undefined) {
      s.u32(v.elem);
      s.u64(v.value.length);
      for (const x of v.value) writeScalar(s, v.elem, x);
    } else writeScalar(s, v.type, v.value);
  }
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const t of tensors) {
    s.str(t.name);
    s.u32(t.ne.length);
    for (const d of t.ne) s.u64(d);
    s.u32(t.type);
    s.u64(offset);
    offset += t.data.length;
    offset += (GGUF_ALIGNMENT - (offset % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
  }
  s.pad(GGUF_ALIGNMENT);
  chunks.push(s.done());
  const zeros = new Uint8Array(GGUF_ALIGNMENT);
  for (const t of tensors) {
    chunks.push(t.data);
    const k = (GGUF_ALIGNMENT - (t.data.length % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
    if (k) chunks.push(zeros.subarray(0, k));
  }
  return chunks;
}

// ---- reading (header, metadata and tensor table; for checks and tests) --------------------

export interface GgufFile {
  version: number;
  kv: Map<string, unknown>;
  tensors: { name: string; ne: number[]; type: number; offset: number }[];
  /** Byte offset of the data section. */
  dataStart: number;
}

/** Parses a GGUF file's header, metadata and tensor table; errors name the file. */
export function parseGguf(buf: Uint8Array, file: string): GgufFile {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = 0;
  const fail = (why: string): never => {
    throw new Error(`${file}: ${why} (at byte ${p})`);
  };
  const need = (k: number): void => {
    if (p + k > buf.length) fail("truncated GGUF file");
  };
  const u32 = (): number => (need(4), (p += 4), view.getUint32(p - 4, true));
  const u64 = (): number => (need(8), (p += 8), Number(view.getBigUint64(p - 8, true)));
  const str = (): string => {
    const n = u64();
    need(n);
    p += n;
    return Buffer.from(buf.buffer, buf.byteOffset + p - n, n).toString("utf8");
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case GV.U8: need(1); return view.getUint8(p++);
      case GV.I8: need(1); return view.getInt8(p++);
      case GV.U16: need(2); p += 2; return view.getUint16(p - 2, true);
      case GV.I16: need(2); p += 2; return view.getInt16(p - 2, true);
      case GV.U32: return u32();
      case GV.I32: need(4); p += 4; return view.getInt32(p - 4, true);
      case GV.F32: need(4); p += 4; return view.getFloat32(p - 4, true);
      case GV.BOOL: need(1); return view.getUint8(p++) !== 0;
      case GV.STRING: return str();
      case GV.U64: return u64();
      case GV.I64: need(8); p += 8; return Number(view.getBigInt64(p - 8, true));
      case GV.F64: need(8); p += 8; return view.getFloat64(p - 8, true);
      default: return fail(`unknown metadata value type ${t}`);
    }
  };
  if (u32() !== GGUF_MAGIC) fail("not a GGUF file (bad magic)");
  const version = u32();
  if (version < 2 || version > 3) fail(`GGUF version ${version} is not supported`);
  const nt = u64(), nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const key = str();
    const t = u32();
    if (t === GV.ARRAY) {
      const et = u32(), n = u64();
      const arr: unknown[] = new Array(n);
      for (let j = 0; j < n; j++) arr[j] = scalar(et);
      kv.set(key, arr);
    } else kv.set(key, scalar(t));
  }
  const tensors: GgufFile["tensors"] = [];
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const ne = Array.from({ length: nd }, () => u64());
    tensors.push({ name, ne, type: u32(), offset: u64() });
  }
  const align = (kv.get("general.alignment") as number | undefined) ?? GGUF_ALIGNMENT;
  const dataStart = p + ((align - (p % align)) % align);
  return { version, kv, tensors, dataStart };
}

// ---- the tokenizer's pre-split, as a llama.cpp pre-tokenizer -------------------------------

/**
 * llama.cpp pre-tokenizers whose split regex equals one of mynah's patterns (llama.cpp's
 * src/llama-vocab.cpp; `llama-bpe` also sets ignore_merges, which is `wholePieces`).
 */
export const LLAMA_CPP_PRE = [
  { pre: "dbrx", pattern: CL100K_PATTERN, wholePieces: false, preset: "cl100k" },
  { pre: "llama-bpe", pattern: CL100K_PATTERN, wholePieces: true, preset: "llama3" },
  { pre: "qwen2", pattern: QWEN2_PATTERN, wholePieces: false, preset: "qwen2" },
  { pre: "gpt-2", pattern: GPT2_PATTERN, wholePieces: false, preset: "gpt2" },
] as const;
export type LlamaCppPre = (typeof LLAMA_CPP_PRE)[number]["pre"];

/**
 * The llama.cpp pre-tokenizer for a tokenizer: the one with the same regex and whole-piece
 * rule when there is one (exact), else the closest: for mynah's pattern (GPT-4's plus Chinese
 * runs split from Latin letters) the GPT-4 regex, which differs only where Han characters
 * touch letters; for any other pattern the GPT-4 regex too.
 */
export function choosePreTokenizer(tok: BpeTokenizer, override?: string): { pre: LlamaCppPre; exact: boolean } {
  const whole = tok.spec.wholePieces ?? tok.spec.mode === "ranks";
  if (override !== undefined) {
    const e = LLAMA_CPP_PRE.find((x) => x.pre === override);
    if (!e) throw new Error(`--pre: ${JSON.stringify(override)} is not one of ${LLAMA_CPP_PRE.map((x) => x.pre).join(", ")}`);
    return { pre: e.pre, exact: e.pattern === tok.spec.pattern && e.wholePieces === whole };
  }
  const exact = LLAMA_CPP_PRE.find((x) => x.pattern === tok.spec.pattern && x.wholePieces === whole);
  if (exact) return { pre: exact.pre, exact: true };
  return { pre: whole ? "llama-bpe" : "dbrx", exact: false };
}

/** The same vocabulary with the split (and whole-piece rule) of a llama.cpp pre-tokenizer. */
export function asLlamaCppSplits(tok: BpeTokenizer, pre: LlamaCppPre): BpeTokenizer {
  const e = LLAMA_CPP_PRE.find((x) => x.pre === pre)!;
  const merged = ranksToMerges(tok);
  return bpeTokenizer({ ...merged.spec, pattern: e.pattern, wholePieces: e.wholePieces });
}

/**
 * How often llama.cpp's tokenization (this vocabulary under the pre-tokenizer's regex and
 * whole-piece rule) differs from mynah's, over the non-empty lines of `texts`: the lines whose
 * ids differ, and the token counts of both.
 */
export function preMismatch(tok: BpeTokenizer, pre: LlamaCppPre, texts: Iterable<string>): { lines: number; differ: number; tokens: number; tokensLlama: number } {
  const other = asLlamaCppSplits(tok, pre);
  let lines = 0, differ = 0, tokens = 0, tokensLlama = 0;
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      lines++;
      const a = tok.encodeOrdinary(line), b = other.encodeOrdinary(line);
      tokens += a.length;
      tokensLlama += b.length;
      if (a.length !== b.length || a.some((x, i) => x !== b[i])) differ++;
    }
  }
  return { lines, differ, tokens, tokensLlama };
}

// ---- the model ---------------------------------------------------------------------------

/** Rows of a [H·D, C] projection reordered per head from (i, i + D/2) pairs to (2i, 2i+1). */
export function permuteRopeRows(w: Float32Array, heads: number, D: number, C: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = D / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      out.set(w.subarray((h * D + i) * C, (h * D + i + 1) * C), (h * D + 2 * i) * C);
      out.set(w.subarray((h * D + half + i) * C, (h * D + half + i + 1) * C), (h * D + 2 * i + 1) * C);
    }
  }
  return out;
}

const HF_TO_GGUF: [RegExp, string][] = [
  [/^model\.embed_tokens\.weight$/, "token_embd.weight"],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, "blk.$1.attn_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.weight$/, "blk.$1.attn_q.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.weight$/, "blk.$1.attn_k.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.weight$/, "blk.$1.attn_v.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.q_norm\.weight$/, "blk.$1.attn_q_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.k_norm\.weight$/, "blk.$1.attn_k_norm.weight"],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, "blk.$1.attn_output.weight"],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, "blk.$1.ffn_norm.weight"],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, "blk.$1.ffn_gate.weight"],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, "blk.$1.ffn_up.weight"],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, "blk.$1.ffn_down.weight"],
  [/^model\.norm\.weight$/, "output_norm.weight"],
  [/^lm_head\.weight$/, "output.weight"],
];

/** The GGUF tensor name of a Hugging Face one. */
export function ggufTensorName(hf: string): string {
  for (const [re, to] of HF_TO_GGUF) if (re.test(hf)) return hf.replace(re, to);
  throw new Error(`GGUF: no llama.cpp name for tensor "${hf}"`);
}

function tensorBytes(data: Float32Array, shape: number[], dtype: GgufDtype): { type: number; data: Uint8Array } {
  const asBytes = (a: Float32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (shape.length === 1 || dtype === "f32") return { type: GGML_TYPE.F32, data: asBytes(data) };
  const [rows, cols] = shape;
  if (dtype === "q8_0" && cols % Q8_0_BLOCK === 0) return { type: GGML_TYPE.Q8_0, data: encodeQ8_0(data, rows, cols) };
  return { type: GGML_TYPE.F16, data: asBytes(encodeF16(data)) };
}

export interface GgufExportOptions {
  /** Model folder (config.json, model.safetensors, tokenizer.json). */
  model: string;
  out: string;
  dtype: GgufDtype;
  /** `general.name` (default: the folder's name). */
  name?: string;
  /** llama.cpp pre-tokenizer name, overriding the automatic choice. */
  pre?: string;
}

export interface GgufExportResult {
  file: string;
  bytes: number;
  tensors: number;
  arch: "llama" | "qwen3";
  pre: LlamaCppPre;
  /** The tokenizer's split equals the pre-tokenizer's: llama.cpp tokenizes exactly as mynah. */
  preExact: boolean;
  tokenizer: BpeTokenizer;
  /** Types of the matrices written (F16 fallbacks show up here). */
  types: Record<string, number>;
  chatTemplate: string | undefined;
  special: { bos?: number; eos?: number; eot?: number; pad?: number };
  contextLength: number;
}

/** The metadata and tensors of a model folder as GGUF. */
export function buildGguf(opts: GgufExportOptions): { kv: [string, GgufValue][]; tensors: GgufTensor[]; info: Omit<GgufExportResult, "file" | "bytes"> } {
  if (!GGUF_DTYPES.includes(opts.dtype)) throw new Error(`--dtype: ${JSON.stringify(opts.dtype)} is not one of ${GGUF_DTYPES.join(", ")}`);
  const { config: c, params } = loadModelFolder(opts.model);
  const tok = loadTokenizer(opts.model);
  const tcfg = loadTokenizerConfig(opts.model);
  if (tok.vocabSize > c.vocabSize) throw new Error(`${opts.model}: the tokenizer has ${tok.vocabSize} ids but the model only ${c.vocabSize}`);
  const arch = c.qkNorm ? "qwen3" : "llama";
  const { pre, exact } = choosePreTokenizer(tok, opts.pre);
  const D = c.nEmbd / c.nHead;
  const u32 = (value: number): GgufValue => ({ type: GV.U32, value });
  const f32 = (value: number): GgufValue => ({ type: GV.F32, value });
  const str = (value: string): GgufValue => ({ type: GV.STRING, value });
  const kv: [string, GgufValue][] = [
    ["general.architecture", str(arch)],
    ["general.name", str(opts.name ?? (opts.model.replace(/\/+$/, "").split("/").pop() || "mynah"))],
    ["general.file_type", u32(FILE_TYPE[opts.dtype])],
    ["general.quantization_version", u32(2)],
    ["general.alignment", u32(GGUF_ALIGNMENT)],
    [`${arch}.vocab_size`, u32(c.vocabSize)],
    [`${arch}.context_length`, u32(c.contextLength)],
    [`${arch}.embedding_length`, u32(c.nEmbd)],
    [`${arch}.block_count`, u32(c.nLayer)],
    [`${arch}.feed_forward_length`, u32(c.ffnHidden)],
    [`${arch}.attention.head_count`, u32(c.nHead)],
    [`${arch}.attention.head_count_kv`, u32(c.nKvHead)],
    [`${arch}.attention.key_length`, u32(D)],
    [`${arch}.attention.value_length`, u32(D)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(c.normEps)],
    [`${arch}.rope.freq_base`, f32(c.ropeTheta)],
    [`${arch}.rope.dimension_count`, u32(D)],
    ...tokenizerKv(tok, c, pre, tcfg),
  ];
  const special = specialIds(tok, tcfg);
  const chatTemplate = tcfg.chatTemplate ?? (tok.special.has(IM_START) && tok.special.has(IM_END) ? CHAT_TEMPLATE : undefined);
  if (chatTemplate !== undefined) kv.push(["tokenizer.chat_template", str(chatTemplate)]);

  const tensors: GgufTensor[] = [];
  const types: Record<string, number> = {};
  for (const s of params.specs) {
    let data = params.get(s.name);
    if (arch === "llama" && /self_attn\.q_proj/.test(s.name)) data = permuteRopeRows(data, c.nHead, D, c.nEmbd);
    if (arch === "llama" && /self_attn\.k_proj/.test(s.name)) data = permuteRopeRows(data, c.nKvHead, D, c.nEmbd);
    const t = tensorBytes(data, s.shape, opts.dtype);
    const name = ggufTensorName(s.name);
    tensors.push({ name, ne: [...s.shape].reverse(), type: t.type, data: t.data });
    if (s.shape.length === 2) types[name] = t.type;
  }
  return { kv, tensors, info: { tensors: tensors.length, arch, pre, preExact: exact, tokenizer: tok, types, chatTemplate, special, contextLength: c.contextLength } };
}

function specialIds(tok: BpeTokenizer, tcfg: { bosToken?: string; eosToken?: string; padToken?: string }): GgufExportResult["special"] {
  const id = (t: string | undefined): number | undefined => (t === undefined ? undefined : tok.special.get(t));
  return {
    bos: id(tcfg.bosToken ?? "<|endoftext|>"),
    eos: id(tcfg.eosToken ?? IM_END) ?? id("<|endoftext|>"),
    eot: id(IM_END),
    pad: id(tcfg.padToken ?? "<|pad|>"),
  };
}

function tokenizerKv(tok: BpeTokenizer, c: ModelConfig, pre: LlamaCppPre, tcfg: { bosToken?: string; eosToken?: string; padToken?: string }): [string, GgufValue][] {
  const merged = ranksToMerges(tok).spec;
  const specialOf = new Map<number, string>();
  for (const [text, id] of tok.special) specialOf.set(id, text);
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < c.vocabSize; id++) {
    const sp = specialOf.get(id);
    const t = merged.tokens[id];
    if (sp !== undefined) {
      tokens.push(sp);
      types.push(TOKEN_TYPE.CONTROL);
    } else if (t) {
      tokens.push(bytesToByteLevel(t));
      types.push(TOKEN_TYPE.NORMAL);
    } else {
      tokens.push(`[PAD${id}]`);
      types.push(TOKEN_TYPE.UNUSED);
    }
  }
  const bl = (id: number): string => bytesToByteLevel(merged.tokens[id]!);
  const merges = merged.merges.map(([a, b]) => `${bl(a)} ${bl(b)}`);
  const sp = specialIds(tok, tcfg);
  const out: [string, GgufValue][] = [
    ["tokenizer.ggml.model", { type: GV.STRING, value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: GV.STRING, value: pre }],
    ["tokenizer.ggml.tokens", { type: GV.ARRAY, elem: GV.STRING, value: tokens }],
    ["tokenizer.ggml.token_type", { type: GV.ARRAY, elem: GV.I32, value: types }],
    ["tokenizer.ggml.merges", { type: GV.ARRAY, elem: GV.STRING, value: merges }],
  ];
  if (sp.bos !== undefined) out.push(["tokenizer.ggml.bos_token_id", { type: GV.U32, value: sp.bos }]);
  if (sp.eos !== undefined) out.push(["tokenizer.ggml.eos_token_id", { type: GV.U32, value: sp.eos }]);
  if (sp.eot !== undefined) out.push(["tokenizer.ggml.eot_token_id", { type: GV.U32, value: sp.eot }]);
  if (sp.pad !== undefined) out.push(["tokenizer.ggml.padding_token_id", { type: GV.U32, value: sp.pad }]);
  // mynah renders prompts itself (the chat template has no BOS); llama-bpe would add one by default
  out.push(["tokenizer.ggml.add_bos_token", { type: GV.BOOL, value: false }]);
  out.push(["tokenizer.ggml.add_eos_token", { type: GV.BOOL, value: false }]);
  return out;
}

/**
 * The Ollama Modelfile for a GGUF exported from a mynah model: FROM the file, the ChatML
 * TEMPLATE equivalent to mynah's chat template (Ollama's Go template over .Messages), stop
 * at <|im_end|> and <|endoftext|>, the context length, and mynah chat's sampling defaults.
 * With a custom chat template (not mynah's), no TEMPLATE is written: Ollama then falls back
 * to the GGUF's own tokenizer.chat_template detection, and a note says so.
 */
export function ollamaModelfile(ggufName: string, info: { chatTemplate: string | undefined; contextLength: number; stops: string[] }): string {
  const lines = [`# Ollama Modelfile written by mynah export: ollama create NAME -f Modelfile`, `FROM ./${ggufName}`, ""];
  if (info.chatTemplate === CHAT_TEMPLATE) {
    lines.push(
      "# mynah's chat template (ChatML): each message as <|im_start|>role\\ncontent<|im_end|>\\n,",
      "# then <|im_start|>assistant\\n for the reply",
      'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}',
      "{{ .Content }}<|im_end|>",
      '{{ end }}<|im_start|>assistant',
      '"""',
      "",
    );
  } else {
    lines.push("# the model's chat template is not mynah's ChatML: no TEMPLATE written (add one by hand)", "");
  }
  for (const s of info.stops) lines.push(`PARAMETER stop "${s}"`);
  lines.push(`PARAMETER num_ctx ${info.contextLength}`, "PARAMETER temperature 0.7", "PARAMETER top_k 40", "PARAMETER top_p 0.95", "");
  return lines.join("\n");
}

/**
 * Writes the GGUF (atomically) and an Ollama `Modelfile` beside it (`<out dir>/Modelfile`,
 * or `<name>.Modelfile` when a Modelfile for another GGUF is already there).
 */
export function exportGguf(opts: GgufExportOptions): GgufExportResult & { modelfile: string } {
  const { kv, tensors, info } = buildGguf(opts);
  const chunks = encodeGguf(kv, tensors);
  writeAtomic(opts.out, ...chunks);
  const bytes = chunks.reduce((n, ch) => n + ch.length, 0);
  const dir = join(opts.out, "..");
  const base = opts.out.split("/").pop()!;
  let modelfile = join(dir, "Modelfile");
  try {
    const existing = readFileSync(modelfile, "utf8");
    if (!existing.includes(`FROM ./${base}\n`)) modelfile = join(dir, `${base.replace(/\.gguf$/i, "")}.Modelfile`);
  } catch {
    // none yet
  }
  const stops = [IM_END, "<|endoftext|>"].filter((s) => info.tokenizer.special.has(s));
  writeAtomic(modelfile, ollamaModelfile(base, { chatTemplate: info.chatTemplate, contextLength: info.contextLength, stops }));
  return { ...info, file: opts.out, bytes, modelfile };
}

/**
 * Loading a model folder for inference: config.json (Hugging Face Llama/Qwen3 fields),
 * model.safetensors (float32 weights by Hugging Face name) and the tokenizer
 * (tokenizer.json). This is the layout of Hugging Face checkpoints and of the PyTorch
 * reference's fixtures, so a model made elsewhere in that shape loads too.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.ts";
import { loadNative, nativeBackend, setThreads } from "../core/native.ts";
import type { DecodeConfig, DecodeModel } from "../model/decode.ts";
import { loadTokenizer } from "../tokenizer/index.ts";
import type { Tokenizer } from "../tokenizer/types.ts";

export interface Tensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

/** Reads a safetensors file (little-endian u64 header length, JSON header, raw data); F32 and I32. */
export function readSafetensors(path: string): Map<string, Tensor> {
  const buf = readFileSync(path);
  if (buf.length < 8) throw new Error(`${path}: too short to be a safetensors file`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) throw new Error(`${path}: header length ${n} runs past the end of the file`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  } catch (err) {
    throw new Error(`${path}: the header is not valid JSON (${(err as Error).message})`);
  }
  const base = 8 + n;
  const out = new Map<string, Tensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32" && t.dtype !== "I32") throw new Error(`${path}: tensor ${name} is ${t.dtype}; only F32 and I32 are supported`);
    const [a, b] = t.data_offsets;
    const count = t.shape.reduce((x, y) => x * y, 1);
    if (b - a !== count * 4 || base + b > buf.length) throw new Error(`${path}: tensor ${name} has offsets [${a}, ${b}] that do not fit shape [${t.shape}]`);
    // Copy into an aligned array (the file buffer's offset need not be a multiple of 4).
    const data = t.dtype === "F32" ? new Float32Array(count) : new Int32Array(count);
    new Uint8Array(data.buffer).set(buf.subarray(base + a, base + b));
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** DecodeConfig from a Hugging Face config.json object. */
export function decodeConfigFromHf(j: Record<string, unknown>, file: string): DecodeConfig {
  const num = (k: string, dflt?: number): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${file}: field "${k}" must be a number, got ${JSON.stringify(j[k])}`);
    return v;
  };
  const nHead = num("num_attention_heads");
  const nEmbd = num("hidden_size");
  if (j.head_dim !== undefined && j.head_dim !== nEmbd / nHead) throw new Error(`${file}: head_dim ${j.head_dim} ≠ hidden_size / num_attention_heads; mynah needs them equal`);
  const arch = String((j.architectures as string[] | undefined)?.[0] ?? j.model_type ?? "");
  return {
    nLayer: num("num_hidden_layers"),
    nHead,
    nKvHead: num("num_key_value_heads", nHead),
    nEmbd,
    ffnHidden: num("intermediate_size"),
    vocabSize: num("vocab_size"),
    seqLen: num("max_position_embeddings"),
    ropeTheta: num("rope_theta", 10000),
    normEps: num("rms_norm_eps", 1e-6),
    tiedEmbeddings: Boolean(j.tie_word_embeddings ?? false),
    qkNorm: /qwen3/i.test(arch),
  };
}

const DECODE_OPS = ["gemm", "embeddingForward", "rmsnormForward", "ropeForward", "attentionCached", "swigluForward", "crossEntropy"] as const;

/**
 * The backend for generation: the native kernels. Throws, naming the missing ones, when the
 * native addon lacks an op that decoding needs.
 */
export function inferenceBackend(): Backend {
  const addon = loadNative() as unknown as Record<string, unknown>;
  const missing = DECODE_OPS.filter((k) => typeof addon[k] !== "function");
  if (missing.length) throw new Error(`the native addon lacks ${missing.join(", ")} (rebuild with npm install)`);
  return nativeBackend();
}

/** Loads config.json + model.safetensors from a folder. */
export function loadDecodeModel(dir: string, backend: Backend = inferenceBackend()): DecodeModel {
  const cfgPath = join(dir, "config.json"), wPath = join(dir, "model.safetensors");
  for (const p of [cfgPath, wPath]) if (!existsSync(p)) throw new Error(`model folder ${dir}: ${p} is missing`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(cfgPath, "utf8"));
  } catch (err) {
    throw new Error(`${cfgPath}: not valid JSON (${(err as Error).message})`);
  }
  const config = decodeConfigFromHf(raw, cfgPath);
  const tensors = readSafetensors(wPath);
  return {
    config,
    backend,
    weight(name: string): Float32Array {
      const t = tensors.get(name);
      if (!t) throw new Error(`${wPath}: no tensor named ${name}`);
      if (!(t.data instanceof Float32Array)) throw new Error(`${wPath}: tensor ${name} is not F32`);
      return t.data;
    },
  };
}

/** A model folder with its tokenizer, ready to chat. */
export function loadChatModel(dir: string, opts: { threads?: number; backend?: Backend } = {}): { model: DecodeModel; tokenizer: Tokenizer } {
  if (opts.threads !== undefined) setThreads(opts.threads);
  const model = loadDecodeModel(dir, opts.backend);
  const tokenizer = loadTokenizer(dir);
  if (tokenizer.vocabSize > model.config.vocabSize)
    throw new Error(`model folder ${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize}`);
  return { model, tokenizer };
}

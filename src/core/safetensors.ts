/**
 * safetensors files (Hugging Face's format): an 8-byte little-endian header length n, n bytes
 * of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}},
 * then the raw little-endian tensor data (offsets relative to its start).
 *
 * mynah writes F32 and I32. It reads F32, I32, and the half formats Hugging Face checkpoints
 * ship (F16, BF16), widened to float32 as they are read. Files are read by offset, tensor by
 * tensor, in bounded chunks (positional reads, never one read of the whole file), so a file of
 * any size (a 0.6B model in float32 is 2.4 GB, past Node's 2 GiB readFileSync limit) opens with
 * only the header in memory until a tensor is asked for.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { writeAtomic } from "./atomic-write.ts";

export type TensorData = Float32Array | Int32Array;

/** The element types mynah reads. */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I32";
const DTYPE_BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4 };

export interface StoredTensor {
  dtype: "F32" | "I32";
  shape: number[];
  data: TensorData;
}

/** A malformed file; the message starts with the file's path. */
export class SafetensorsError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = "SafetensorsError";
  }
}

export interface SafetensorsFile {
  tensors: Map<string, StoredTensor>;
  metadata: Record<string, string>;
}

/** Where one tensor lies in its file (absolute byte offsets). */
export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Number of elements. */
  count: number;
  /** Absolute offset of the first byte in the file. */
  offset: number;
  bytes: number;
}

/** A safetensors file whose header has been read and checked; tensors are read on demand. */
export interface SafetensorsIndex {
  path: string;
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

/**
 * Checks a parsed header against the data section's length; returns the entries.
 * `allowed` lists the dtypes the caller reads (others are refused naming the tensor).
 */
function headerEntries(header: unknown, base: number, dataLen: number, path: string,
                       allowed: readonly SafetensorsDtype[]): { entries: Map<string, TensorEntry>; metadata: Record<string, string> } {
  const fail = (m: string): never => {
    throw new SafetensorsError(path, m);
  };
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("the header is not a JSON object");
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, t] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = t as Record<string, string>;
      continue;
    }
    const e = t as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!allowed.includes(e.dtype as SafetensorsDtype)) fail(`tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; only ${allowed.join(", ")} are supported`);
    const dtype = e.dtype as SafetensorsDtype;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}" has a bad shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}" has bad data_offsets ${JSON.stringify(off)}`);
    const [a, b] = off as [number, number];
    const count = (e.shape as number[]).reduce((x, y) => x * y, 1);
    const need = count * DTYPE_BYTES[dtype];
    if (b < a || b - a !== need) fail(`tensor "${name}": data_offsets [${a}, ${b}] hold ${b - a} bytes but shape [${e.shape}] needs ${need}`);
    if (b > dataLen) fail(`truncated: tensor "${name}" ends at byte ${b} of the data but the data section has ${dataLen} bytes`);
    entries.set(name, { name, dtype, shape: e.shape as number[], count, offset: base + a, bytes: need });
  }
  return { entries, metadata };
}

function parseHeaderJson(bytes: Uint8Array, path: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new SafetensorsError(path, `the header is not valid JSON (${(err as Error).message})`);
  }
}

/** Opens a safetensors file: reads and checks only its header. Accepts F32, F16, BF16, I32. */
export function openSafetensors(path: string): SafetensorsIndex {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new SafetensorsError(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(path, `truncated: ${size} bytes, too short for the 8-byte header length`);
    const len = new Uint8Array(8);
    readFully(fd, len, 0, path);
    const n = Number(new DataView(len.buffer).getBigUint64(0, true));
    if (8 + n > size) throw new SafetensorsError(path, `truncated: the header says it is ${n} bytes long but the file has only ${size - 8} after the length`);
    if (n > 100 * 1024 * 1024) throw new SafetensorsError(path, `the header says it is ${n} bytes long (over 100 MiB; not a safetensors file?)`);
    const head = new Uint8Array(n);
    readFully(fd, head, 8, path);
    const { entries, metadata } = headerEntries(parseHeaderJson(head, path), 8 + n, size - 8 - n, path, ["F32", "F16", "BF16", "I32"]);
    return { path, entries, metadata };
  } finally {
    closeSync(fd);
  }
}

/** Fills `dst` from file offset `pos` (positional reads of at most 256 MiB each). */
function readFully(fd: number, dst: Uint8Array, pos: number, path: string): void {
  const MAX = 256 * 1024 * 1024;
  for (let o = 0; o < dst.length; ) {
    const got = readSync(fd, dst, o, Math.min(MAX, dst.length - o), pos + o);
    if (got <= 0) throw new SafetensorsError(path, `truncated: read ended at byte ${pos + o}`);
    o += got;
  }
}

/** float16 bits → float32 value, for all 65536 patterns (subnormals, ±inf, NaN included). */
let halfTable: Float32Array | null = null;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    t[h] = exp === 0 ? sign * frac * 2 ** -24            // subnormal: frac · 2^-14 / 1024
      : exp === 31 ? (frac ? NaN : sign * Infinity)
      : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return (halfTable = t);
}

/**
 * Reads one tensor as float32 into `dst` (allocated when absent), widening F16 and BF16
 * (BF16 is the top half of a float32, so widening is a 16-bit shift and exact; F16 through a
 * 65536-entry table, also exact). F32 data goes straight into dst's memory.
 */
export function readTensorF32(index: SafetensorsIndex, name: string, dst?: Float32Array): Float32Array {
  const e = index.entries.get(name);
  if (!e) throw new SafetensorsError(index.path, `tensor "${name}" is missing`);
  if (e.dtype === "I32") throw new SafetensorsError(index.path, `tensor "${name}" is I32, expected a float tensor`);
  const out = dst ?? new Float32Array(e.count);
  if (out.length !== e.count) throw new SafetensorsError(index.path, `tensor "${name}" has ${e.count} values, the destination ${out.length}`);
  const fd = openSync(index.path, "r");
  try {
    if (e.dtype === "F32") {
      readFully(fd, new Uint8Array(out.buffer, out.byteOffset, e.bytes), e.offset, index.path);
      return out;
    }
    // Half formats: read 2-byte values a chunk at a time, widen into out.
    const CHUNK = 1 << 22; // values per chunk (8 MiB of input)
    const buf = new Uint16Array(Math.min(CHUNK, e.count));
    const bytes = new Uint8Array(buf.buffer);
    const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
    const table = e.dtype === "F16" ? halfToFloatTable() : null;
    for (let i = 0; i < e.count; i += CHUNK) {
      const n = Math.min(CHUNK, e.count - i);
      readFully(fd, bytes.subarray(0, 2 * n), e.offset + 2 * i, index.path);
      if (table) for (let j = 0; j < n; j++) out[i + j] = table[buf[j]];
      else for (let j = 0; j < n; j++) bits[i + j] = buf[j] << 16;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Reads one I32 tensor. */
function readTensorI32(index: SafetensorsIndex, e: TensorEntry): Int32Array {
  const out = new Int32Array(e.count);
  const fd = openSync(index.path, "r");
  try {
    readFully(fd, new Uint8Array(out.buffer), e.offset, index.path);
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Parses a safetensors buffer (F32 and I32 only); `path` names it in errors. Tensors are copied into aligned arrays. */
export function parseSafetensors(buf: Uint8Array, path: string): SafetensorsFile {
  if (buf.length < 8) throw new SafetensorsError(path, `truncated: ${buf.length} bytes, too short for the 8-byte header length`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (8 + n > buf.length) throw new SafetensorsError(path, `truncated: the header says it is ${n} bytes long but the file has only ${buf.length - 8} after the length`);
  const { entries, metadata } = headerEntries(parseHeaderJson(buf.subarray(8, 8 + n), path), 8 + n, buf.length - 8 - n, path, ["F32", "I32"]);
  const tensors = new Map<string, StoredTensor>();
  for (const e of entries.values()) {
    const data = e.dtype === "F32" ? new Float32Array(e.count) : new Int32Array(e.count);
    new Uint8Array(data.buffer).set(buf.subarray(e.offset, e.offset + e.bytes));
    tensors.set(e.name, { dtype: e.dtype as "F32" | "I32", shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Reads a whole safetensors file of F32/I32 tensors (mynah's checkpoints and optimizer
 * states, test fixtures), tensor by tensor by offset, so files over 2 GiB read too.
 */
export function readSafetensors(path: string): SafetensorsFile {
  const index = openSafetensors(path);
  const tensors = new Map<string, StoredTensor>();
  for (const e of index.entries.values()) {
    if (e.dtype !== "F32" && e.dtype !== "I32") throw new SafetensorsError(path, `tensor "${e.name}" has dtype "${e.dtype}"; only F32 and I32 are supported`);
    const data = e.dtype === "F32" ? readTensorF32(index, e.name) : readTensorI32(index, e);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata: index.metadata };
}

/** A tensor to write: float32 or int32 data, or 16-bit patterns with their dtype. */
export interface WritableTensor {
  shape: number[];
  data: TensorData | Uint16Array;
  /** Required for Uint16Array data. */
  dtype?: "F16" | "BF16";
}

/** float32 → bfloat16 bits, rounding to nearest even (as torch's .to(torch.bfloat16)); NaN stays NaN. */
export function toBf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40; // quiet NaN
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** float32 → IEEE float16 bits, round to nearest even; overflow → ±inf, tiny → subnormal or ±0. */
export function toF16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i], sign = (b >>> 16) & 0x8000, exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      // subnormal half: shift the (implicit-1) mantissa right, rounding to nearest even
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = mant >>> shift, rest = mant & ((1 << shift) - 1), mid = 1 << (shift - 1);
      out[i] = sign | (half + (rest > mid || (rest === mid && (half & 1)) ? 1 : 0));
      continue;
    }
    const rest = mant & 0x1fff;
    let h = (e << 10) | (mant >>> 13);
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++; // may carry into the exponent: still right (up to inf)
    out[i] = sign | h;
  }
  return out;
}

/** Serializes tensors (in the given order) with optional string metadata. */
export function encodeSafetensors(tensors: Iterable<[string, WritableTensor]>,
                                  metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((x, y) => x * y, 1);
    if (count !== t.data.length) throw new Error(`safetensors: tensor "${name}" has ${t.data.length} values but shape [${t.shape}]`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const dtype = t.data instanceof Float32Array ? "F32" : t.data instanceof Int32Array ? "I32" : t.dtype;
    if (!dtype) throw new Error(`safetensors: tensor "${name}" holds 16-bit values but names no dtype (F16 or BF16)`);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data starts 8-aligned
  const head = Buffer.from(json, "utf8");
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(head.length), true);
  return [len, head, ...blobs];
}

/** Writes a safetensors file atomically. */
export function writeSafetensors(path: string, tensors: Iterable<[string, WritableTensor]>,
                                 metadata?: Record<string, string>): void {
  writeAtomic(path, ...encodeSafetensors(tensors, metadata));
}

/**
 * safetensors files (Hugging Face's format): an 8-byte little-endian header length n, n bytes
 * of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}},
 * then the raw little-endian tensor data (offsets relative to its start).
 * Only F32 and I32 are read and written, which is all mynah stores.
 */
import { readFileSync } from "node:fs";
import { writeAtomic } from "./atomic-write.ts";

export type TensorData = Float32Array | Int32Array;

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

/** Parses a safetensors buffer; `path` names it in errors. Tensors are copied into aligned arrays. */
export function parseSafetensors(buf: Uint8Array, path: string): SafetensorsFile {
  const fail = (m: string): never => {
    throw new SafetensorsError(path, m);
  };
  if (buf.length < 8) fail(`truncated: ${buf.length} bytes, too short for the 8-byte header length`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (8 + n > buf.length) fail(`truncated: the header says it is ${n} bytes long but the file has only ${buf.length - 8} after the length`);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString("utf8"));
  } catch (err) {
    fail(`the header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("the header is not a JSON object");
  const base = 8 + n, dataLen = buf.length - base;
  const tensors = new Map<string, StoredTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, t] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = t as Record<string, string>;
      continue;
    }
    const e = t as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e.dtype !== "F32" && e.dtype !== "I32") fail(`tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; only F32 and I32 are supported`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}" has a bad shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor "${name}" has bad data_offsets ${JSON.stringify(off)}`);
    const [a, b] = off as [number, number];
    const count = (e.shape as number[]).reduce((x, y) => x * y, 1);
    if (b < a || b - a !== count * 4) fail(`tensor "${name}": data_offsets [${a}, ${b}] hold ${b - a} bytes but shape [${e.shape}] needs ${count * 4}`);
    if (b > dataLen) fail(`truncated: tensor "${name}" ends at byte ${b} of the data but the data section has ${dataLen} bytes`);
    const data = e.dtype === "F32" ? new Float32Array(count) : new Int32Array(count);
    new Uint8Array(data.buffer).set(buf.subarray(base + a, base + b));
    tensors.set(name, { dtype: e.dtype as "F32" | "I32", shape: e.shape as number[], data });
  }
  return { tensors, metadata };
}

/** Reads and parses a safetensors file. */
export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new SafetensorsError(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseSafetensors(buf, path);
}

/** Serializes tensors (in the given order) with optional string metadata. */
export function encodeSafetensors(tensors: Iterable<[string, { shape: number[]; data: TensorData }]>,
                                  metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((x, y) => x * y, 1);
    if (count !== t.data.length) throw new Error(`safetensors: tensor "${name}" has ${t.data.length} values but shape [${t.shape}]`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.data instanceof Float32Array ? "F32" : "I32", shape: t.shape, data_offsets: [offset, offset + bytes.length] };
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
export function writeSafetensors(path: string, tensors: Iterable<[string, { shape: number[]; data: TensorData }]>,
                                 metadata?: Record<string, string>): void {
  writeAtomic(path, ...encodeSafetensors(tensors, metadata));
}

/**
 * Token shards: the binary files `mynah data prepare` writes and the loader reads.
 *
 *   offset            size      field
 *        0               8      magic "MYNAHTOK"
 *        8               4      format version (2), uint32 LE
 *       12               4      bytes per token: 2 (uint16, when the vocabulary fits) or 4 (uint32)
 *       16               8      token count N, uint64 LE
 *       24               4      document count D, uint32 LE
 *       28               4      reserved (0)
 *       32         N·bytes      tokens, little-endian
 *  32+N·bytes          8·D      document index: where each document starts (token offset), uint64 LE
 *
 * Every document starts with <|endoftext|> (so the model sees a clean boundary before each
 * document). A shard holds whole documents. The index is written at prepare time, so opening
 * a split reads D offsets per shard, not every token. Shards are written to a temp file,
 * fsynced, then renamed (and the folder fsynced): a crash leaves no half shard.
 * Version 1 (no index) is refused with a message saying to prepare the folder again.
 */
import { closeSync, fsyncSync, fstatSync, openSync, readSync, renameSync, writeSync, unlinkSync, existsSync } from "node:fs";
import { dirname } from "node:path";
import { fsyncDir } from "../core/atomic-write.ts";

export const SHARD_MAGIC = "MYNAHTOK";
export const SHARD_VERSION = 2;
export const HEADER_BYTES = 32;

export interface ShardHeader {
  bytesPerToken: 2 | 4;
  tokens: number;
  docs: number;
}

/** Bytes per token for a vocabulary: uint16 when every id fits. */
export function bytesPerTokenFor(vocabSize: number): 2 | 4 {
  return vocabSize <= 65536 ? 2 : 4;
}

function encodeHeader(h: ShardHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(SHARD_MAGIC, 0, "latin1");
  b.writeUInt32LE(SHARD_VERSION, 8);
  b.writeUInt32LE(h.bytesPerToken, 12);
  b.writeBigUInt64LE(BigInt(h.tokens), 16);
  b.writeUInt32LE(h.docs, 24);
  return b;
}

/** Bytes a complete shard with this header has on disk. */
export function shardBytes(h: ShardHeader): number {
  return HEADER_BYTES + h.tokens * h.bytesPerToken + 8 * h.docs;
}

/** Reads and checks a shard's header (and that the file has exactly the size it implies). */
export function readShardHeader(path: string): ShardHeader {
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, b, 0, HEADER_BYTES, 0);
    if (n < HEADER_BYTES || b.toString("latin1", 0, 8) !== SHARD_MAGIC) throw new Error(`${path}: not a mynah token shard (bad magic)`);
    const version = b.readUInt32LE(8);
    if (version === 1) throw new Error(`${path}: shard format version 1 (an older mynah, without a document index); prepare the folder again with \`mynah data prepare ... --force\``);
    if (version !== SHARD_VERSION) throw new Error(`${path}: shard format version ${version}, this mynah reads ${SHARD_VERSION}`);
    const bpt = b.readUInt32LE(12);
    if (bpt !== 2 && bpt !== 4) throw new Error(`${path}: bad bytes per token ${bpt}`);
    const h: ShardHeader = { bytesPerToken: bpt, tokens: Number(b.readBigUInt64LE(16)), docs: b.readUInt32LE(24) };
    const size = fstatSync(fd).size;
    if (size !== shardBytes(h)) throw new Error(`${path}: ${size} bytes, but ${h.tokens} tokens and ${h.docs} documents take ${shardBytes(h)} (truncated or damaged shard)`);
    return h;
  } finally {
    closeSync(fd);
  }
}

/**
 * The document index of a shard: each document's first token offset. Checked: the first
 * document starts at 0, offsets increase strictly and stay inside the shard. Shape `[docs]`.
 */
export function readShardIndex(path: string, h: ShardHeader, fd?: number): Float64Array {
  const own = fd === undefined;
  const f = fd ?? openSync(path, "r");
  try {
    const b = Buffer.alloc(8 * h.docs);
    for (let got = 0; got < b.length; ) {
      const n = readSync(f, b, got, b.length - got, HEADER_BYTES + h.tokens * h.bytesPerToken + got);
      if (n === 0) throw new Error(`${path}: file ends inside the document index (truncated shard)`);
      got += n;
    }
    const starts = new Float64Array(h.docs);
    for (let d = 0; d < h.docs; d++) {
      const o = Number(b.readBigUInt64LE(8 * d));
      const ok = d === 0 ? o === 0 : o > starts[d - 1] && o < h.tokens;
      if (!ok) throw new Error(`${path}: document index entry ${d} is ${o}, ${d === 0 ? "expected 0" : `not between ${starts[d - 1]} and ${h.tokens}`} (damaged shard)`);
      starts[d] = o;
    }
    if (h.tokens > 0 && h.docs === 0) throw new Error(`${path}: ${h.tokens} tokens but no documents in the index (damaged shard)`);
    return starts;
  } finally {
    if (own) closeSync(f);
  }
}

/** Reads tokens [start, start + count) of a shard. Shape `[count]`. */
export function readShardTokens(path: string, header: ShardHeader, start: number, count: number, fd?: number): Uint32Array {
  if (start < 0 || start + count > header.tokens) throw new Error(`${path}: tokens ${start}..${start + count} are outside 0..${header.tokens}`);
  const own = fd === undefined;
  const f = fd ?? openSync(path, "r");
  try {
    const bytes = Buffer.alloc(count * header.bytesPerToken);
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(f, bytes, got, bytes.length - got, HEADER_BYTES + start * header.bytesPerToken + got);
      if (n === 0) throw new Error(`${path}: file ends before token ${start + count} (truncated shard)`);
      got += n;
    }
    const out = new Uint32Array(count);
    if (header.bytesPerToken === 2) for (let i = 0; i < count; i++) out[i] = bytes.readUInt16LE(2 * i);
    else for (let i = 0; i < count; i++) out[i] = bytes.readUInt32LE(4 * i);
    return out;
  } finally {
    if (own) closeSync(f);
  }
}

/** Writes one shard: append documents, then commit() (atomic) or abort(). */
export class ShardWriter {
  private fd: number;
  private readonly tmp: string;
  private buf = Buffer.alloc(1 << 20);
  private used = 0;
  private written = HEADER_BYTES;
  tokens = 0;
  docs = 0;
  /** Where each document starts (the index written after the tokens). */
  private starts: number[] = [];
  constructor(readonly path: string, readonly bytesPerToken: 2 | 4) {
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, "w");
    writeSync(this.fd, Buffer.alloc(HEADER_BYTES), 0, HEADER_BYTES, 0);
  }
  /** Appends one document's ids (its leading <|endoftext|> included). Shape `[n]`. */
  append(ids: ArrayLike<number>): void {
    const need = ids.length * this.bytesPerToken;
    if (this.used + need > this.buf.length) this.flush();
    if (need > this.buf.length) this.buf = Buffer.alloc(need);
    const b = this.buf;
    let o = this.used;
    if (this.bytesPerToken === 2) for (let i = 0; i < ids.length; i++, o += 2) b.writeUInt16LE(ids[i], o);
    else for (let i = 0; i < ids.length; i++, o += 4) b.writeUInt32LE(ids[i], o);
    this.used = o;
    this.starts.push(this.tokens);
    this.tokens += ids.length;
    this.docs++;
  }
  /** Writes the buffered tokens (one write per MiB, not per document). */
  private flush(): void {
    if (this.used === 0) return;
    writeSync(this.fd, this.buf, 0, this.used, this.written);
    this.written += this.used;
    this.used = 0;
  }
  commit(): ShardHeader {
    this.flush();
    const index = Buffer.alloc(8 * this.starts.length);
    this.starts.forEach((o, d) => index.writeBigUInt64LE(BigInt(o), 8 * d));
    for (let o = 0; o < index.length; ) o += writeSync(this.fd, index, o, index.length - o, this.written + o);
    const h: ShardHeader = { bytesPerToken: this.bytesPerToken, tokens: this.tokens, docs: this.docs };
    writeSync(this.fd, encodeHeader(h), 0, HEADER_BYTES, 0);
    fsyncSync(this.fd);
    closeSync(this.fd);
    renameSync(this.tmp, this.path);
    fsyncDir(dirname(this.path));
    return h;
  }
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    if (existsSync(this.tmp)) unlinkSync(this.tmp);
  }
}

/** Cuts a shard's tokens into documents at each <|endoftext|> (the leading one dropped). */
export function splitDocs(tokens: ArrayLike<number>, eot: number): number[][] {
  const docs: number[][] = [];
  let cur: number[] | null = null;
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === eot) {
      if (cur) docs.push(cur);
      cur = [];
    } else (cur ??= []).push(tokens[i]);
  }
  if (cur) docs.push(cur);
  return docs;
}

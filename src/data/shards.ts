/**
 * Token shards: the binary files `mynah data prepare` writes and the loader reads.
 *
 *   offset  size  field
 *        0     8  magic "MYNAHTOK"
 *        8     4  format version (1), uint32 LE
 *       12     4  bytes per token: 2 (uint16, when the vocabulary fits) or 4 (uint32)
 *       16     8  token count, uint64 LE
 *       24     4  document count, uint32 LE
 *       28     4  reserved (0)
 *       32     …  tokens, little-endian
 *
 * Every document starts with <|endoftext|> (so the model sees a clean boundary before each
 * document, and a shard splits into documents at that id). A shard holds whole documents.
 * Shards are written to a temp file, fsynced, then renamed: a crash leaves no half shard.
 */
import { closeSync, fsyncSync, openSync, readSync, renameSync, writeSync, unlinkSync, existsSync } from "node:fs";
import { dirname } from "node:path";
import { fsyncDir } from "../core/atomic-write.ts";

export const SHARD_MAGIC = "MYNAHTOK";
export const SHARD_VERSION = 1;
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

export function readShardHeader(path: string): ShardHeader {
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(HEADER_BYTES);
    const n = readSync(fd, b, 0, HEADER_BYTES, 0);
    if (n < HEADER_BYTES || b.toString("latin1", 0, 8) !== SHARD_MAGIC) throw new Error(`${path}: not a mynah token shard (bad magic)`);
    const version = b.readUInt32LE(8);
    if (version !== SHARD_VERSION) throw new Error(`${path}: shard format version ${version}, this mynah reads ${SHARD_VERSION}`);
    const bpt = b.readUInt32LE(12);
    if (bpt !== 2 && bpt !== 4) throw new Error(`${path}: bad bytes per token ${bpt}`);
    return { bytesPerToken: bpt, tokens: Number(b.readBigUInt64LE(16)), docs: b.readUInt32LE(24) };
  } finally {
    closeSync(fd);
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

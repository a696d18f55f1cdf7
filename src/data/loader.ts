/**
 * The training loader over prepared shards: documents (each opening with <|endoftext|>) are
 * taken in a seeded random order, a fresh permutation per epoch, and packed end to end into
 * one token stream; a batch is the next B·T + 1 tokens of that stream, cut into B rows of T
 * inputs with the targets shifted by one. The position (epoch, document, offset) is exact,
 * so a resumed run sees the same tokens as an uninterrupted one.
 *
 *   const src = openShardSource("data/prepared", "train", 1337);
 *   const { inputs, targets } = src.nextBatch(8, 256);   // [8·256] each
 *   const pos = src.state();  ... later: src.restore(pos);
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Batch, BatchSource } from "./types.ts";
import { readManifest } from "./prepare.ts";
import { readShardHeader, readShardIndex, readShardTokens, type ShardHeader } from "./shards.ts";
import { uniformSource } from "../core/rng.ts";

/** Shards smaller than this in total are read into memory at open; larger are read per document. */
const RESIDENT_BYTES = 1 << 30;

/** Position of a ShardSource: JSON-serializable, saved in checkpoints. */
export interface ShardSourceState {
  kind: "shards";
  split: string;
  seed: number;
  /** Documents in the split (checked on restore). */
  docs: number;
  epoch: number;
  /** Index into this epoch's permutation. */
  doc: number;
  /** Tokens of that document already consumed. */
  offset: number;
}

export interface ShardSource extends BatchSource {
  readonly docs: number;
  readonly tokens: number;
  readonly eot: number;
  readonly vocabSize: number;
  state(): ShardSourceState;
  /** Closes the shard files. */
  close(): void;
}

/** The document order of one epoch: a Fisher–Yates shuffle seeded by (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const rnd = uniformSource((Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) + epoch * 0x632be5ab) >>> 0);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/**
 * Opens the `split` ("train" or "val") of a folder made by `mynah data prepare` as a
 * BatchSource. Document starts come from each shard's index (written at prepare time), so
 * opening reads no tokens. Splits up to `residentBytes` (default 1 GiB on disk) are held in
 * memory, each shard read whole the first time a batch needs it; larger ones are read from
 * the files document by document.
 */
export function openShardSource(dir: string, split: string, seed: number, opts: { residentBytes?: number } = {}): ShardSource {
  const m = readManifest(dir);
  const sp = m.splits[split as "train" | "val"];
  if (!sp) throw new Error(`${dir}: no split ${JSON.stringify(split)} (have ${Object.keys(m.splits).join(", ")})`);
  if (sp.tokens === 0) throw new Error(`${dir}: the ${split} split is empty (prepare with --val-fraction > 0 for a val split)`);
  const eot = m.tokenizer.eot;
  const paths = sp.shards.map((s) => join(dir, s.file));
  const headers: ShardHeader[] = paths.map((p, i) => {
    const h = readShardHeader(p);
    if (h.tokens !== sp.shards[i].tokens || h.docs !== sp.shards[i].docs)
      throw new Error(`${p}: holds ${h.tokens} tokens in ${h.docs} documents, the manifest says ${sp.shards[i].tokens} in ${sp.shards[i].docs}`);
    return h;
  });
  const total = headers.reduce((n, h) => n + h.tokens, 0);
  const nDocs = headers.reduce((n, h) => n + h.docs, 0);
  const resident = total * m.bytesPerToken <= (opts.residentBytes ?? RESIDENT_BYTES);
  const fds = paths.map((p) => openSync(p, "r"));
  // Global token offset where each shard begins.
  const base = new Float64Array(paths.length + 1);
  headers.forEach((h, i) => (base[i + 1] = base[i] + h.tokens));
  // Document d spans [docStart[d], docEnd[d]) in the global token numbering; docShard[d] is its shard.
  const docStart = new Float64Array(nDocs);
  const docEnd = new Float64Array(nDocs);
  const docShard = new Uint32Array(nDocs);
  let d0 = 0;
  headers.forEach((h, i) => {
    const starts = readShardIndex(paths[i], h, fds[i]);
    for (let k = 0; k < h.docs; k++) {
      docStart[d0 + k] = base[i] + starts[k];
      docEnd[d0 + k] = base[i] + (k + 1 < h.docs ? starts[k + 1] : h.tokens);
      docShard[d0 + k] = i;
    }
    d0 += h.docs;
  });
  // Resident tokens keep their stored width (uint16 stays 2 bytes a token in memory).
  const data: (Uint16Array | Uint32Array | null)[] = headers.map(() => null);
  const read = (s: number, g: number, n: number): Uint16Array | Uint32Array => {
    const local = g - base[s];
    if (!resident) return readShardTokens(paths[s], headers[s], local, n, fds[s]);
    if (!data[s]) {
      const h = headers[s];
      const all = readShardTokens(paths[s], h, 0, h.tokens, fds[s]);
      data[s] = h.bytesPerToken === 2 ? Uint16Array.from(all) : all;
    }
    return data[s]!.subarray(local, local + n);
  };

  let epoch = 0;
  let order = epochOrder(nDocs, seed, 0);
  let doc = 0;
  let offset = 0;

  return {
    docs: nDocs,
    tokens: total,
    eot,
    vocabSize: m.tokenizer.vocabSize,
    nextBatch(B: number, T: number): Batch {
      if (!(Number.isInteger(B) && B > 0 && Number.isInteger(T) && T > 0)) throw new Error(`nextBatch: B and T must be positive integers, got B=${B} T=${T}`);
      const n = B * T + 1;
      const buf = new Int32Array(n);
      let got = 0;
      // Position after B·T tokens: the last target is the next batch's first input.
      let next = { epoch, doc, offset, order };
      let e = epoch;
      let d = doc;
      let off = offset;
      let ord = order;
      while (got < n) {
        if (got === n - 1) next = { epoch: e, doc: d, offset: off, order: ord };
        const id = ord[d];
        const len = docEnd[id] - docStart[id];
        const take = Math.min(len - off, got < n - 1 ? n - 1 - got : 1);
        const part = read(docShard[id], docStart[id] + off, take);
        // The index and the tokens must agree: every document opens with <|endoftext|>.
        if (off === 0 && part[0] !== eot)
          throw new Error(`${paths[docShard[id]]}: document at token ${docStart[id] - base[docShard[id]]} starts with id ${part[0]}, not <|endoftext|> (${eot}): damaged shard`);
        buf.set(part, got);
        got += take;
        off += take;
        if (off >= len) {
          off = 0;
          if (++d >= nDocs) {
            d = 0;
            ord = epochOrder(nDocs, seed, ++e);
          }
        }
      }
      ({ epoch, doc, offset, order } = next);
      return { inputs: buf.slice(0, n - 1), targets: buf.slice(1, n) };
    },
    state(): ShardSourceState {
      return { kind: "shards", split, seed, docs: nDocs, epoch, doc, offset };
    },
    restore(s: unknown): void {
      const st = s as Partial<ShardSourceState>;
      if (!st || st.kind !== "shards") throw new Error(`restore: not a shard loader position: ${JSON.stringify(s)}`);
      if (st.docs !== nDocs || st.seed !== seed || st.split !== split)
        throw new Error(`restore: the position is for ${st.split} with ${st.docs} documents and seed ${st.seed}; this source is ${split} with ${nDocs} documents and seed ${seed}`);
      const { epoch: e, doc: d, offset: off } = st;
      if (!(Number.isInteger(e) && e! >= 0 && Number.isInteger(d) && d! >= 0 && d! < nDocs && Number.isInteger(off) && off! >= 0))
        throw new Error(`restore: bad position ${JSON.stringify(s)} (need epoch ≥ 0, 0 ≤ doc < ${nDocs}, offset ≥ 0)`);
      const ord = e === epoch ? order : epochOrder(nDocs, seed, e!);
      const len = docEnd[ord[d!]] - docStart[ord[d!]];
      if (off! >= len) throw new Error(`restore: offset ${off} is past the end of document ${d} of epoch ${e} (${len} tokens)`);
      order = ord;
      epoch = st.epoch!;
      doc = st.doc!;
      offset = st.offset!;
    },
    close(): void {
      for (const fd of fds) closeSync(fd);
    },
  };
}

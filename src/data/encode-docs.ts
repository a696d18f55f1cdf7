/**
 * Documents → token ids, as they go into shards: <|endoftext|> then the text's ids, or the
 * conversation rendered by the chat template. Shared by the in-process path and the workers.
 */
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat } from "./chat-template.ts";
import type { DocBody } from "./records.ts";
import { cleanOne } from "./clean.ts";

export const EOT = "<|endoftext|>";

export function eotId(tok: Tokenizer): number {
  const id = tok.special.get(EOT);
  if (id === undefined) throw new Error(`the tokenizer has no ${EOT} special token (needed between documents)`);
  return id;
}

/** Token ids appended to a Uint32Array that doubles as it fills. */
class IdBuffer {
  ids = new Uint32Array(1 << 16);
  length = 0;
  push(eot: number, body: readonly number[]): void {
    const need = this.length + 1 + body.length;
    if (need > this.ids.length) {
      const grown = new Uint32Array(Math.max(need, 2 * this.ids.length));
      grown.set(this.ids.subarray(0, this.length));
      this.ids = grown;
    }
    this.ids[this.length++] = eot;
    this.ids.set(body, this.length);
    this.length += body.length;
  }
  /** The ids in a buffer of their own size (it is transferred to another thread whole). */
  take(): Uint32Array {
    return this.length === this.ids.length ? this.ids : this.ids.slice(0, this.length);
  }
}

/** One document's ids as they go into a shard, without the leading <|endoftext|>. */
function docIds(tok: Tokenizer, d: DocBody): number[] {
  // Special-token text inside a document stays ordinary text: data cannot forge a boundary.
  if (d.kind === "preference") throw new Error("encodeDocs: preference pairs are not pretraining documents");
  return d.kind === "text" ? tok.encode(d.text) : renderChat(tok, d.messages).ids;
}

/** Ids of documents, concatenated (`ids`), with each document's length (`lens`). */
export function encodeDocs(tok: Tokenizer, docs: readonly DocBody[]): { ids: Uint32Array; lens: Uint32Array } {
  const eot = eotId(tok);
  const out = new IdBuffer();
  const lens = new Uint32Array(docs.length);
  docs.forEach((d, i) => {
    const body = docIds(tok, d);
    out.push(eot, body);
    lens[i] = body.length + 1;
  });
  return { ids: out.take(), lens };
}

/** What a tokenizing worker returns for a batch: per document, cleaning's verdict, and its ids. */
export interface CleanEncoded {
  /** 0 kept, 1 too short, 2 bad conversation (see problems). Shape `[n]`. */
  status: Uint8Array;
  /** The reason of each bad document, by index. */
  problems: Record<number, string>;
  /** First 12 bytes of each kept document's content digest (the dedup key). Shape `[n·12]`. */
  digests: Uint8Array;
  /** Characters of each kept document after cleaning. Shape `[n]`. */
  chars: Float64Array;
  /** With tokenize: the kept documents' ids, concatenated, and each document's length (0 when not kept). */
  ids?: Uint32Array;
  lens?: Uint32Array;
}

const STATUS = { ok: 0, short: 1, bad: 2 } as const;
export const STATUS_NAMES = ["ok", "short", "bad"] as const;

/**
 * Cleans a batch (cleanOne: NFC, control characters, conversation check, --min-chars, digest)
 * and, with `tokenize`, encodes what is kept: the per-document work of `data prepare`, done
 * where the threads are. Deduplication and the split stay with the caller (they need order).
 */
export function cleanEncode(tok: Tokenizer, docs: readonly DocBody[], minChars: number, tokenize: boolean): CleanEncoded {
  const n = docs.length;
  const status = new Uint8Array(n), digests = new Uint8Array(12 * n), chars = new Float64Array(n);
  const problems: Record<number, string> = {};
  const eot = tokenize ? eotId(tok) : 0;
  const out = new IdBuffer();
  const lens = new Uint32Array(n);
  // One document at a time, cleaned then encoded, so its cleaned text and ids die young
  // (a batch's worth of them kept until the end would outlive garbage collections and be
  // copied to the old generation).
  docs.forEach((d, i) => {
    const c = cleanOne(d, minChars);
    status[i] = STATUS[c.status];
    if (c.status === "bad") problems[i] = c.problem;
    if (c.status !== "ok") return;
    digests.set(c.digest.subarray(0, 12), 12 * i);
    chars[i] = c.chars;
    if (!tokenize) return;
    const body = docIds(tok, c.body);
    out.push(eot, body);
    lens[i] = body.length + 1;
  });
  if (!tokenize) return { status, problems, digests, chars };
  return { status, problems, digests, chars, ids: out.take(), lens };
}

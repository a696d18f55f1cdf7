/**
 * Cleaning between reading and tokenizing: Unicode NFC, control characters stripped (tab and
 * newline kept; "\r" goes, so CRLF becomes LF), exact duplicates dropped by content hash, an
 * optional minimum length, conversations checked (role order, no empty message), and a
 * seeded, document-level train/val split: a document's side depends only on its content and
 * the seed, so duplicates can never straddle the split and reruns agree.
 */
import { createHash } from "node:crypto";
import { conversationProblem, preferencePairProblem, type ChatMessage, type PreferencePair } from "./chat.ts";
import { DataError, reportBad, type OnBad } from "./errors.ts";
import { HashSet96 } from "./hash-set.ts";
import type { Doc } from "./readers.ts";
import type { DocBody } from "./records.ts";

export type Split = "train" | "val";

export interface CleanOptions {
  /** Documents with fewer characters (chat: all contents together) are dropped (default 1). */
  minChars?: number;
  /** Fraction of documents sent to the val split (default 0). */
  valFraction?: number;
  /** Seed of the split (default 0). */
  seed?: number;
  /** Drop exact duplicates (default true). */
  dedup?: boolean;
  onBad?: OnBad;
}

/** What happened to the records of one input file. */
export interface SourceStats {
  file: string;
  /** Records read (documents for text files), bad ones included. */
  records: number;
  bad: number;
  duplicates: number;
  /** Shorter than minChars after cleaning (empty included). */
  tooShort: number;
  docs: Record<Split, number>;
  /** Characters of cleaned text kept, per split. */
  chars: Record<Split, number>;
}

export type CleanDoc = Doc & { split: Split; hash: string };

// C0 controls except \t (09) and \n (0A), DEL, and C1 controls.
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g;

/** NFC, control characters removed (tab and newline kept). */
export function cleanText(s: string): string {
  return s.normalize("NFC").replace(CONTROL, "");
}

export function emptyStats(file: string): SourceStats {
  return { file, records: 0, bad: 0, duplicates: 0, tooShort: 0, docs: { train: 0, val: 0 }, chars: { train: 0, val: 0 } };
}

/** 32-bit integer mix (murmur3 finalizer). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Which side a document with this content hash (hex) falls on. */
export function splitOf(hashHex: string, valFraction: number, seed: number): Split {
  return splitOfWord(parseInt(hashHex.slice(0, 8), 16), valFraction, seed);
}

/** splitOf for a digest's bytes (its first 4, big-endian, as the hex form's first 8 digits). */
export function splitOfDigest(digest: Uint8Array, valFraction: number, seed: number): Split {
  return splitOfWord(((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0, valFraction, seed);
}

function splitOfWord(h: number, valFraction: number, seed: number): Split {
  if (valFraction <= 0) return "train";
  const u = fmix32((h ^ fmix32(seed >>> 0 ^ 0x9e3779b9)) >>> 0) / 2 ** 32;
  return u < valFraction ? "val" : "train";
}

/** SHA-1 of a cleaned document's content (20 bytes; the first 12 are the dedup key). */
export function docDigest(d: DocBody): Buffer {
  const h = createHash("sha1");
  const msgs = (ms: ChatMessage[]): string => JSON.stringify(ms.map((m) => [m.role, m.content]));
  if (d.kind === "text") h.update("t\0").update(d.text);
  else if (d.kind === "chat") h.update("c\0").update(msgs(d.messages));
  else h.update("p\0").update(msgs(d.prompt)).update("\0").update(msgs(d.chosen)).update("\0").update(msgs(d.rejected));
  return h.digest();
}

/** The content hash of a cleaned document as hex (24 digits: the dedup key). */
export function docHash(d: DocBody): string {
  return docDigest(d).toString("hex", 0, 12);
}

/** One document after cleaning: kept (with its content digest), too short, or a bad conversation. */
export type Cleaned =
  | { status: "ok"; body: DocBody; chars: number; digest: Buffer; splitKey: Buffer }
  | { status: "short" }
  | { status: "bad"; problem: string };

/**
 * The stateless part of cleaning, one document at a time (the tokenizing workers run it):
 * NFC and control characters, the conversation check, the minimum length, the content digest.
 */
export function cleanOne(d: DocBody, minChars: number): Cleaned {
  let body: DocBody;
  let chars: number;
  if (d.kind === "text") {
    const text = cleanText(d.text);
    if (text.trim() === "") return { status: "short" };
    body = { kind: "text", text };
    chars = text.length;
  } else if (d.kind === "preference") {
    const c = (ms: ChatMessage[]): ChatMessage[] => ms.map((m) => ({ role: m.role, content: cleanText(m.content) }));
    const pair = { prompt: c(d.prompt), chosen: c(d.chosen), rejected: c(d.rejected) };
    const problem = preferencePairProblem(pair);
    if (problem) return { status: "bad", problem };
    body = { kind: "preference", ...pair };
    chars = [...pair.prompt, ...pair.chosen, ...pair.rejected].reduce((n, m) => n + m.content.length, 0);
  } else {
    const messages = d.messages.map((m) => ({ role: m.role, content: cleanText(m.content) }));
    const problem = conversationProblem(messages);
    if (problem) return { status: "bad", problem };
    body = { kind: "chat", messages };
    chars = messages.reduce((n, m) => n + m.content.length, 0);
  }
  if (chars < minChars) return { status: "short" };
  const digest = docDigest(body);
  // Pairs split by their prompt: every pair on one prompt lands on the same side.
  const splitKey = body.kind === "preference" ? docDigest({ kind: "chat", messages: body.prompt }) : digest;
  return { status: "ok", body, chars, digest, splitKey };
}

/**
 * The stateful part, in input order (the main thread runs it): per-file statistics, exact
 * duplicates (a compact 96-bit set: 17–34 bytes a distinct document), the train/val side.
 */
export class DocSorter {
  private readonly seen = new HashSet96();
  private readonly valFraction: number;
  constructor(private readonly opts: CleanOptions, private readonly stats: Map<string, SourceStats>) {
    this.valFraction = opts.valFraction ?? 0;
    if (!(this.valFraction >= 0 && this.valFraction < 1)) throw new Error(`val fraction must be in [0, 1), got ${this.valFraction}`);
  }
  private statsOf(f: string): SourceStats {
    let s = this.stats.get(f);
    if (!s) this.stats.set(f, (s = emptyStats(f)));
    return s;
  }
  /**
   * Counts a cleaned document of `where.file`; returns its split, or null when it is dropped
   * (too short, duplicate, or bad: a DataError thrown, or passed to onBad with --skip-bad).
   */
  accept(where: { file: string; line: number; unit: "line" | "row" }, status: Cleaned["status"], problem: string | undefined, digest: Uint8Array, chars: number,
    splitKey: Uint8Array = digest): Split | null {
    const st = this.statsOf(where.file);
    st.records++;
    if (status === "bad") {
      st.bad++;
      reportBad(new DataError(where.file, where.line, problem ?? "bad record", where.unit), this.opts.onBad);
      return null;
    }
    if (status === "short") {
      st.tooShort++;
      return null;
    }
    if (this.opts.dedup !== false && !this.seen.add(digest)) {
      st.duplicates++;
      return null;
    }
    const split = splitOfDigest(splitKey, this.valFraction, this.opts.seed ?? 0);
    st.docs[split]++;
    st.chars[split] += chars;
    return split;
  }
}

/**
 * Cleans a stream of documents (cleanOne, then DocSorter). `stats` gets one entry per file
 * (created on first sight). Bad conversations are DataErrors (thrown, or counted with onBad).
 */
export async function* cleanDocs(docs: AsyncIterable<Doc>, opts: CleanOptions, stats: Map<string, SourceStats>): AsyncGenerator<CleanDoc> {
  const minChars = opts.minChars ?? 1;
  const sorter = new DocSorter(opts, stats);
  for await (const d of docs) {
    const c = cleanOne(d, minChars);
    const split = sorter.accept(d, c.status, c.status === "bad" ? c.problem : undefined, c.status === "ok" ? c.digest : EMPTY, c.status === "ok" ? c.chars : 0,
      c.status === "ok" ? c.splitKey : undefined);
    if (split === null || c.status !== "ok") continue;
    yield { ...d, ...c.body, split, hash: c.digest.toString("hex", 0, 12) } as CleanDoc;
  }
}
const EMPTY = new Uint8Array(12);

/**
 * A reader onBad that records bad records in `stats` (and passes them to `then`, which
 * throws when not skipping). Give it to the readers so their bad records are counted too.
 */
export function countingOnBad(stats: Map<string, SourceStats>, then: OnBad): (err: DataError) => void {
  return (err) => {
    let s = stats.get(err.file);
    if (!s) stats.set(err.file, (s = emptyStats(err.file)));
    s.bad++;
    s.records++;
    reportBad(err, then);
  };
}

/** Why a run produced no document, input by input (flags as the user types them). */
export function noDocumentsMessage(head: string, files: readonly string[], stats: Map<string, SourceStats>, clean: { minChars: number; dedup: boolean }): string {
  const why = files.map((f) => {
    const st = stats.get(f);
    if (!st || st.records === 0) return `${f}: empty (no documents or records)`;
    const parts: string[] = [];
    if (st.tooShort) parts.push(`${st.tooShort} shorter than --min-chars ${clean.minChars} after cleaning (empty ones included)`);
    if (st.duplicates) parts.push(`${st.duplicates} duplicate${st.duplicates === 1 ? "" : "s"} of earlier documents (--no-dedup keeps them)`);
    if (st.bad) parts.push(`${st.bad} bad (skipped by --skip-bad)`);
    return `${f}: all ${st.records} record${st.records === 1 ? "" : "s"} dropped: ${parts.join(", ")}`;
  });
  return `${head}:\n  ${why.join("\n  ")}`;
}

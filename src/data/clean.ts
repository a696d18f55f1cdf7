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
import type { Doc } from "./readers.ts";

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
  if (valFraction <= 0) return "train";
  const h = parseInt(hashHex.slice(0, 8), 16);
  const u = fmix32((h ^ fmix32(seed >>> 0 ^ 0x9e3779b9)) >>> 0) / 2 ** 32;
  return u < valFraction ? "val" : "train";
}

/** The content hash of a cleaned document (the dedup key). */
export function docHash(d: { kind: "text"; text: string } | { kind: "chat"; messages: ChatMessage[] } | ({ kind: "preference" } & PreferencePair)): string {
  const h = createHash("sha1");
  const msgs = (ms: ChatMessage[]): string => JSON.stringify(ms.map((m) => [m.role, m.content]));
  if (d.kind === "text") h.update("t\0").update(d.text);
  else if (d.kind === "chat") h.update("c\0").update(msgs(d.messages));
  else h.update("p\0").update(msgs(d.prompt)).update("\0").update(msgs(d.chosen)).update("\0").update(msgs(d.rejected));
  return h.digest("hex").slice(0, 24);
}

/**
 * Cleans a stream of documents. `stats` gets one entry per file (created on first sight).
 * Bad conversations are DataErrors (thrown, or counted with onBad). Memory: one hash
 * (24 hex chars) per distinct document kept, for deduplication.
 */
export async function* cleanDocs(docs: AsyncIterable<Doc>, opts: CleanOptions, stats: Map<string, SourceStats>): AsyncGenerator<CleanDoc> {
  const minChars = opts.minChars ?? 1;
  const valFraction = opts.valFraction ?? 0;
  if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`val fraction must be in [0, 1), got ${valFraction}`);
  const seed = opts.seed ?? 0;
  const seen = new Set<string>();
  const statsOf = (f: string): SourceStats => {
    let s = stats.get(f);
    if (!s) stats.set(f, (s = emptyStats(f)));
    return s;
  };
  const onBad: OnBad = (err) => {
    statsOf(err.file).bad++;
    reportBad(err, opts.onBad);
  };
  // Bad records seen by the readers are counted through the same path: the readers get onBad.
  for await (const d of docs) {
    const st = statsOf(d.file);
    st.records++;
    let clean: CleanDoc;
    let chars: number;
    if (d.kind === "text") {
      const text = cleanText(d.text);
      chars = text.length;
      clean = { ...d, text, split: "train", hash: "" };
    } else if (d.kind === "preference") {
      const c = (ms: ChatMessage[]): ChatMessage[] => ms.map((m) => ({ role: m.role, content: cleanText(m.content) }));
      const pair = { prompt: c(d.prompt), chosen: c(d.chosen), rejected: c(d.rejected) };
      const problem = preferencePairProblem(pair);
      if (problem) {
        onBad(new DataError(d.file, d.line, problem, d.unit));
        continue;
      }
      chars = [...pair.prompt, ...pair.chosen, ...pair.rejected].reduce((n, m) => n + m.content.length, 0);
      clean = { ...d, ...pair, split: "train", hash: "" };
    } else {
      const messages = d.messages.map((m) => ({ role: m.role, content: cleanText(m.content) }));
      const problem = conversationProblem(messages);
      if (problem) {
        onBad(new DataError(d.file, d.line, problem, d.unit));
        continue;
      }
      chars = messages.reduce((n, m) => n + m.content.length, 0);
      clean = { ...d, messages, split: "train", hash: "" };
    }
    if (chars < minChars || (clean.kind === "text" && clean.text.trim() === "")) {
      st.tooShort++;
      continue;
    }
    clean.hash = docHash(clean);
    if (opts.dedup !== false) {
      if (seen.has(clean.hash)) {
        st.duplicates++;
        continue;
      }
      seen.add(clean.hash);
    }
    // Pairs split by their prompt: every pair on one prompt lands on the same side.
    const splitKey = clean.kind === "preference" ? docHash({ kind: "chat", messages: clean.prompt }) : clean.hash;
    clean.split = splitOf(splitKey, valFraction, seed);
    st.docs[clean.split]++;
    st.chars[clean.split] += chars;
    yield clean;
  }
}

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

/**
 * Byte-level BPE encoder/decoder over pre-split pieces, shared by every vocabulary mynah
 * reads: its own trained tokenizers, Hugging Face tokenizer.json files, and tiktoken ranks.
 *
 * A piece (one regex match) is turned into UTF-8 bytes, one id per byte, then the adjacent
 * pair with the lowest merge rank is merged until no mergeable pair is left (ties: leftmost).
 * Two ways to rank a pair (a, b) exist:
 *  - "merges" (Hugging Face, mynah): the index of (a, b) in the merges list;
 *  - "ranks" (tiktoken): the rank of the token whose bytes are bytes(a)+bytes(b). tiktoken
 *    also emits a whole piece directly when it is itself a token.
 * Short pieces use a simple array scan; long ones a heap over a linked list (O(n log n)), so a
 * piece of 100 k spaces costs milliseconds, not minutes. Frequent pieces are cached.
 */
import { bytesKey, completeUtf8Prefix } from "./bytes.ts";
import { compilePattern, forEachPiece } from "./pattern.ts";
import type { StreamDecoder, Tokenizer } from "./types.ts";
import { PairMap } from "./pairmap.ts";

/** Everything that defines a byte-level BPE vocabulary (plain data: it crosses to workers). */
export interface BpeSpec {
  /** id → token bytes; null for ids that are special tokens or unused. */
  tokens: (Uint8Array | null)[];
  /** "merges": `merges[i] = [a, b]` has rank i; "ranks": rank of a pair = id of its concatenation. */
  mode: "merges" | "ranks";
  /** Merge list as id pairs (mode "merges"; for "ranks" unused and empty). */
  merges: [number, number][];
  /** Special tokens, text → id. */
  special: Record<string, number>;
  /** Pre-split pattern in Rust/Oniguruma syntax (see pattern.ts). */
  pattern: string;
  /**
   * Emit a piece that is itself a token whole, before any merging (tiktoken always does;
   * tokenizer.json says so with `ignore_merges: true`). Default: true for "ranks", else false.
   */
  wholePieces?: boolean;
  /**
   * Unicode normalization of ordinary text before pre-splitting (tokenizer.json's
   * `normalizer: {"type": "NFC"}`, as Qwen2/3 ship). Special-token text is matched first,
   * unnormalized, as Hugging Face does with added tokens.
   */
  normalize?: "NFC";
}

export interface BpeTokenizer extends Tokenizer {
  readonly spec: BpeSpec;
  /** Text → ids with no special-token handling at all (fastest path). */
  encodeOrdinary(text: string): number[];
  /**
   * Raw bytes → ids, lossless for any byte sequence: valid UTF-8 runs are encoded as text,
   * each byte of an invalid sequence becomes its own byte token.
   */
  encodeBytes(bytes: Uint8Array): number[];
  /** Bytes of one id (special tokens: their UTF-8 text). */
  tokenBytes(id: number): Uint8Array;
  /** Number of merges (trained vocabularies) or ordinary tokens. */
  readonly numMerges: number;
}

/** Ids must stay below this: packed values rank·2^21 + id stay exact doubles. */
const ID_LIMIT = 1 << 21;
/** Pieces up to this many bytes use the array scan; longer ones the heap. */
const SCAN_LIMIT = 128;
/** Pieces longer than this (in UTF-16 units) are not cached: rare, and would bloat the cache. */
const CACHE_PIECE_MAX = 64;
const CACHE_ENTRIES = 1 << 17;

/** Builds a tokenizer from its spec; throws on inconsistent specs (naming what is wrong). */
export function bpeTokenizer(spec: BpeSpec): BpeTokenizer {
  const { tokens, mode } = spec;
  const wholePieces = spec.wholePieces ?? mode === "ranks";
  if (tokens.length >= ID_LIMIT) throw new Error(`BPE: vocabulary of ${tokens.length} ids is larger than ${ID_LIMIT}`);
  // --- byte → id (every byte must be a token for lossless round trips)
  const byteIds = new Int32Array(256).fill(-1);
  const byKey = new Map<string, number>();
  /** Tokens that are whole UTF-8 text, by that text ("ranks" mode: whole-piece lookups). */
  const byText = new Map<string, number>();
  const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  tokens.forEach((t, id) => {
    if (!t) return;
    if (t.length === 1 && byteIds[t[0]] < 0) byteIds[t[0]] = id;
    if (wholePieces && (t.length === 1 ? t[0] < 0x80 : utf8SeqLength(t, 0) > 0)) {
      try {
        byText.set(strictUtf8.decode(t), id);
      } catch {
        // not whole characters: never equal to a piece
      }
    }
    if (mode === "ranks") byKey.set(bytesKey(t), id);
  });
  for (let b = 0; b < 256; b++) if (byteIds[b] < 0) throw new Error(`BPE: byte 0x${b.toString(16).padStart(2, "0")} has no token, so some text could not be encoded`);

  // --- pair table: (a, b) → rank·2^21 + merged id, −1 for no merge. Packing the rank in the
  // high part lets one comparison pick the lowest rank.
  const pairs = new PairMap(mode === "merges" ? spec.merges.length : 1 << 16);
  if (mode === "merges") {
    const idOf = new Map<string, number>();
    tokens.forEach((t, id) => t && !idOf.has(bytesKey(t)) && idOf.set(bytesKey(t), id));
    spec.merges.forEach(([a, b], rank) => {
      const ta = tokens[a], tb = tokens[b];
      if (!ta || !tb) throw new Error(`BPE: merge ${rank} (${a}, ${b}) uses an id that is not an ordinary token`);
      const joined = new Uint8Array(ta.length + tb.length);
      joined.set(ta);
      joined.set(tb, ta.length);
      const id = idOf.get(bytesKey(joined));
      if (id === undefined) throw new Error(`BPE: merge ${rank} (${a}, ${b}) produces a token that is not in the vocabulary`);
      if (pairs.get(a, b, -2) === -2) pairs.set(a, b, rank * ID_LIMIT + id);
    });
  }
  /** Packed rank·2^21+id of merging a then b, or −1. Lazily memoized in "ranks" mode. */
  const pairValue = (a: number, b: number): number => {
    const v = pairs.get(a, b, -2);
    if (v !== -2) return v;
    if (mode === "merges") return -1;
    const id = byKey.get(bytesKey(tokens[a]!) + bytesKey(tokens[b]!));
    const packed = id === undefined ? -1 : id * ID_LIMIT + id;
    pairs.set(a, b, packed);
    return packed;
  };

  // --- special tokens
  const special = new Map<string, number>(Object.entries(spec.special));
  const specialBytes = new Map<number, Uint8Array>();
  const utf8 = new TextEncoder();
  for (const [text, id] of special) specialBytes.set(id, utf8.encode(text));
  const vocabSize = Math.max(tokens.length, ...[...special.values()].map((id) => id + 1));

  const re = compilePattern(spec.pattern);
  const scratch = { buf: new Uint8Array(1024) };
  const cache = new Map<string, number[]>();

  /** BPE of bytes buf[0, n) appended to out. */
  const mergeBytes = (buf: Uint8Array, n: number, out: number[]): void => {
    if (n === 1) {
      out.push(byteIds[buf[0]]);
      return;
    }
    if (n <= SCAN_LIMIT) scanMerge(buf, n, out);
    else heapMerge(buf, n, out);
  };

  /** O(n²) merge for short pieces: ids[] and the packed value of each adjacent pair. */
  const scanIds = new Int32Array(SCAN_LIMIT);
  const scanVals = new Float64Array(SCAN_LIMIT);
  const scanMerge = (buf: Uint8Array, n: number, out: number[]): void => {
    const ids = scanIds, vals = scanVals;
    for (let i = 0; i < n; i++) ids[i] = byteIds[buf[i]];
    for (let i = 0; i + 1 < n; i++) vals[i] = pairValue(ids[i], ids[i + 1]);
    let len = n;
    for (;;) {
      let best = -1, bestVal = Infinity;
      for (let i = 0; i + 1 < len; i++) {
        const v = vals[i];
        if (v >= 0 && v < bestVal) (bestVal = v), (best = i);
      }
      if (best < 0) break;
      ids[best] = bestVal % ID_LIMIT;
      for (let i = best + 1; i + 1 < len; i++) ids[i] = ids[i + 1];
      for (let i = best + 1; i + 2 < len; i++) vals[i] = vals[i + 1];
      len--;
      if (best > 0) vals[best - 1] = pairValue(ids[best - 1], ids[best]);
      if (best + 1 < len) vals[best] = pairValue(ids[best], ids[best + 1]);
    }
    for (let i = 0; i < len; i++) out.push(ids[i]);
  };

  /**
   * O(n log n) merge for long pieces: a doubly linked list of parts and a min-heap of
   * (pair value, left position); stale heap entries are skipped when popped.
   */
  const heapMerge = (buf: Uint8Array, n: number, out: number[]): void => {
    const ids = new Int32Array(n), prev = new Int32Array(n), next = new Int32Array(n);
    for (let i = 0; i < n; i++) (ids[i] = byteIds[buf[i]]), (prev[i] = i - 1), (next[i] = i + 1 < n ? i + 1 : -1);
    const alive = new Uint8Array(n).fill(1);
    // heap of (value, pos); value ties resolve by position, i.e. leftmost first
    let hv = new Float64Array(n), hp = new Int32Array(n), size = 0;
    const less = (i: number, j: number): boolean => hv[i] < hv[j] || (hv[i] === hv[j] && hp[i] < hp[j]);
    const swap = (i: number, j: number): void => {
      const v = hv[i]; hv[i] = hv[j]; hv[j] = v;
      const p = hp[i]; hp[i] = hp[j]; hp[j] = p;
    };
    const push = (v: number, p: number): void => {
      if (size === hv.length) {
        const nv = new Float64Array(size * 2), np = new Int32Array(size * 2);
        nv.set(hv), np.set(hp), (hv = nv), (hp = np);
      }
      hv[size] = v, hp[size] = p;
      for (let i = size++; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!less(i, parent)) break;
        swap(i, parent), (i = parent);
      }
    };
    const pop = (): void => {
      swap(0, --size);
      for (let i = 0; ; ) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < size && less(l, m)) m = l;
        if (r < size && less(r, m)) m = r;
        if (m === i) break;
        swap(i, m), (i = m);
      }
    };
    const pairAt = new Float64Array(n); // current value of the pair starting at part i
    for (let i = 0; i + 1 < n; i++) {
      pairAt[i] = pairValue(ids[i], ids[i + 1]);
      if (pairAt[i] >= 0) push(pairAt[i], i);
    }
    while (size > 0) {
      const v = hv[0], p = hp[0];
      pop();
      if (!alive[p] || pairAt[p] !== v || next[p] < 0) continue; // stale
      const q = next[p];
      ids[p] = v % ID_LIMIT;
      alive[q] = 0;
      next[p] = next[q];
      if (next[q] >= 0) prev[next[q]] = p;
      const l = prev[p];
      if (l >= 0) {
        pairAt[l] = pairValue(ids[l], ids[p]);
        if (pairAt[l] >= 0) push(pairAt[l], l);
      }
      if (next[p] >= 0) {
        pairAt[p] = pairValue(ids[p], ids[next[p]]);
        if (pairAt[p] >= 0) push(pairAt[p], p);
      } else pairAt[p] = -1;
    }
    for (let i = 0; i >= 0; i = next[i]) out.push(ids[i]);
  };

  /** One piece → ids appended to out (with the cache for short pieces). */
  const encodePiece = (piece: string, out: number[]): void => {
    if (wholePieces) {
      // tiktoken's rule (and ignore_merges): a piece that is itself a token is emitted whole
      const whole = byText.get(piece);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    const short = piece.length <= CACHE_PIECE_MAX;
    if (short) {
      const hit = cache.get(piece);
      if (hit !== undefined) {
        for (let i = 0; i < hit.length; i++) out.push(hit[i]);
        return;
      }
    }
    // UTF-8 bytes of the piece: ASCII fast path, else TextEncoder
    let n = piece.length;
    if (scratch.buf.length < n * 3) scratch.buf = new Uint8Array(n * 3 + 16);
    const buf = scratch.buf;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      const c = piece.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
      buf[i] = c;
    }
    if (!ascii) n = utf8.encodeInto(piece, buf).written;
    if (!short) {
      mergeBytes(buf, n, out);
      return;
    }
    const start = out.length;
    mergeBytes(buf, n, out);
    if (cache.size >= CACHE_ENTRIES) cache.clear();
    cache.set(piece, out.slice(start));
  };

  const encodeOrdinary = (text: string): number[] => {
    // Lone surrogates cannot be UTF-8: encode them as U+FFFD, as TextEncoder (and tiktoken) do.
    const wf = text as unknown as { isWellFormed(): boolean; toWellFormed(): string }; // ES2024, in Node 20
    if (!wf.isWellFormed()) text = wf.toWellFormed();
    if (spec.normalize === "NFC") text = text.normalize("NFC");
    const out: number[] = [];
    forEachPiece(re, text, (piece) => encodePiece(piece, out));
    return out;
  };

  const encodeBytes = (bytes: Uint8Array): number[] => {
    const out: number[] = [];
    const dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    let start = 0;
    const flushValid = (end: number): void => {
      if (end > start) for (const id of encodeOrdinary(dec.decode(bytes.subarray(start, end)))) out.push(id);
    };
    for (let i = 0; i < bytes.length; ) {
      const n = utf8SeqLength(bytes, i);
      if (n > 0) {
        i += n;
        continue;
      }
      flushValid(i);
      out.push(byteIds[bytes[i]]);
      start = ++i;
    }
    flushValid(bytes.length);
    return out;
  };

  const specialSplitters = new Map<string, RegExp>();
  const splitterFor = (allowed: string[]): RegExp => {
    const key = allowed.join("\u0000");
    let r = specialSplitters.get(key);
    if (!r) {
      // longest first, so a special token that is a prefix of another never wins
      const alts = [...allowed].sort((x, y) => y.length - x.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      r = new RegExp(alts.join("|"), "g");
      specialSplitters.set(key, r);
    }
    return r;
  };

  const encode: Tokenizer["encode"] = (text, opts) => {
    const allowedOpt = opts?.allowedSpecial;
    const allowed = allowedOpt === "all" ? [...special.keys()] : allowedOpt ? [...allowedOpt].filter((s) => special.has(s)).sort() : [];
    if (allowed.length === 0) return encodeOrdinary(text);
    const splitter = splitterFor(allowed);
    const out: number[] = [];
    let last = 0;
    splitter.lastIndex = 0;
    for (let m = splitter.exec(text); m !== null; m = splitter.exec(text)) {
      if (m.index > last) for (const id of encodeOrdinary(text.slice(last, m.index))) out.push(id);
      out.push(special.get(m[0])!);
      last = m.index + m[0].length;
    }
    if (last < text.length) for (const id of encodeOrdinary(text.slice(last))) out.push(id);
    return out;
  };

  const tokenBytes = (id: number): Uint8Array => {
    const t = tokens[id] ?? specialBytes.get(id);
    if (!t) throw new Error(`BPE decode: id ${id} is not in the vocabulary (size ${vocabSize})`);
    return t;
  };

  const decodeBytes = (ids: ArrayLike<number>): Uint8Array => {
    let n = 0;
    for (let i = 0; i < ids.length; i++) n += tokenBytes(ids[i]).length;
    const out = new Uint8Array(n);
    for (let i = 0, o = 0; i < ids.length; i++) {
      const t = tokenBytes(ids[i]);
      out.set(t, o);
      o += t.length;
    }
    return out;
  };
  const textDecoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  const decode = (ids: ArrayLike<number>): string => textDecoder.decode(decodeBytes(ids));

  const streamDecoder = (): StreamDecoder => {
    let pending = new Uint8Array(16);
    let len = 0;
    const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
    return {
      push(id: number): string {
        const t = tokenBytes(id);
        if (len + t.length > pending.length) {
          const bigger = new Uint8Array(Math.max(pending.length * 2, len + t.length));
          bigger.set(pending.subarray(0, len));
          pending = bigger;
        }
        pending.set(t, len);
        len += t.length;
        const cut = completeUtf8Prefix(pending, len);
        if (cut === 0) return "";
        const text = dec.decode(pending.subarray(0, cut));
        pending.copyWithin(0, cut, len);
        len -= cut;
        return text;
      },
      flush(): string {
        const text = len ? dec.decode(pending.subarray(0, len)) : "";
        len = 0;
        return text;
      },
    };
  };

  return {
    spec,
    vocabSize,
    special,
    numMerges: mode === "merges" ? spec.merges.length : tokens.length,
    encode,
    encodeOrdinary,
    encodeBytes,
    decode,
    decodeBytes,
    tokenBytes,
    streamDecoder,
  };
}

/** Length of the valid UTF-8 sequence starting at buf[i] (1–4), or 0 if none starts there. */
function utf8SeqLength(buf: Uint8Array, i: number): number {
  const b = buf[i];
  if (b < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => i + k < buf.length && buf[i + k] >= lo && buf[i + k] <= hi;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const lo = b === 0xe0 ? 0xa0 : 0x80, hi = b === 0xed ? 0x9f : 0xbf; // no overlongs, no surrogates
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const lo = b === 0xf0 ? 0x90 : 0x80, hi = b === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

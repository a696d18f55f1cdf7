/**
 * Byte-level BPE training.
 *
 * 1. Count pieces: every text is cut by the pre-split pattern and each distinct piece is
 *    counted (streamed; the count table is pruned of rare pieces if it outgrows `maxPieces`).
 * 2. Merge: each distinct piece is a "word", a sequence of ids starting as its UTF-8 bytes
 *    (ids 0..255 = byte values). Pair counts (weighted by word counts) live in an open-
 *    addressing hash table, together with the list of words each pair occurs in. A max-heap
 *    picks the most frequent pair; merging it rewrites only the words that contain it and
 *    updates the pair counts of those words (no full recount per merge).
 *
 * Determinism: the most frequent pair wins; ties go to the smaller (left id, right id) pair.
 * Merge k creates id 256 + k. Special tokens follow the merges, in the order given.
 */
import { bpeTokenizer, type BpeTokenizer } from "./bpe.ts";
import { compilePattern, forEachPiece, MYNAH_PATTERN } from "./pattern.ts";

/** mynah's special tokens, in id order, placed right after the merges. */
export const DEFAULT_SPECIAL_TOKENS: readonly string[] = [
  "<|endoftext|>",
  "<|im_start|>",
  "<|im_end|>",
  "<|pad|>",
  "<|tool_call|>",
  "<|tool_result|>",
  "<|reserved_0|>",
  "<|reserved_1|>",
];

export interface TrainProgress {
  phase: "count" | "merge";
  /** count: input read so far (bytes of files; characters of in-memory texts); merge: merges done. */
  done: number;
  /** count: total bytes when known (else 0); merge: merges wanted. */
  total: number;
}

export interface TrainOptions {
  /** Final vocabulary size: 256 bytes + merges + special tokens. */
  vocabSize: number;
  /** Special tokens (default DEFAULT_SPECIAL_TOKENS), given ids after the merges. */
  specialTokens?: readonly string[];
  /** Pre-split pattern (default MYNAH_PATTERN). */
  pattern?: string;
  /**
   * Encode a piece that is itself a token whole (Llama 3's `ignore_merges`); training is the
   * same either way, only encoding differs. Default false.
   */
  wholePieces?: boolean;
  /** Pieces seen fewer times than this are dropped before merging (default 1 = keep all). */
  minPieceCount?: number;
  /** Bound on distinct pieces kept while counting; rare ones are pruned past it (default 4 M). */
  maxPieces?: number;
  onProgress?: (p: TrainProgress) => void;
}

/** Streaming piece counter: feed texts, then hand the counts to the merger. */
export class PieceCounter {
  readonly counts = new Map<string, number>();
  private readonly re: RegExp;
  private pruneBelow = 2;
  /** Characters added so far. */
  charsSeen = 0;
  constructor(pattern: string, private readonly maxPieces = 4_000_000) {
    this.re = compilePattern(pattern);
  }
  add(text: string): void {
    const counts = this.counts;
    forEachPiece(this.re, text, (p) => counts.set(p, (counts.get(p) ?? 0) + 1));
    this.charsSeen += text.length;
    if (counts.size > this.maxPieces) this.prune();
  }
  /** Drops the rarest pieces (bounded memory); the threshold doubles each time it is needed. */
  private prune(): void {
    while (this.counts.size > this.maxPieces * 0.75) {
      for (const [p, c] of this.counts) if (c < this.pruneBelow) this.counts.delete(p);
      this.pruneBelow *= 2;
    }
  }
}

/** Trains from an iterable of texts (documents). */
export function trainBpe(texts: Iterable<string>, opts: TrainOptions): BpeTokenizer {
  const counter = new PieceCounter(opts.pattern ?? MYNAH_PATTERN, opts.maxPieces);
  for (const t of texts) {
    counter.add(t);
    opts.onProgress?.({ phase: "count", done: counter.charsSeen, total: 0 });
  }
  return trainBpeFromCounts(counter.counts, opts);
}

/**
 * Trains from a stream of texts (e.g. documents read from files). Count progress is the
 * caller's to report (it knows the input size); merge progress goes to opts.onProgress.
 */
export async function trainBpeAsync(texts: AsyncIterable<string> | Iterable<string>, opts: TrainOptions): Promise<BpeTokenizer> {
  mergesWanted(opts); // fail on a bad vocabulary size before reading anything
  const counter = new PieceCounter(opts.pattern ?? MYNAH_PATTERN, opts.maxPieces);
  for await (const t of texts) counter.add(t);
  if (counter.counts.size === 0) throw new Error("train: the corpus is empty (no text to learn merges from)");
  return trainBpeFromCounts(counter.counts, opts);
}

/** Checks the options and returns the number of merges wanted. */
export function mergesWanted(opts: TrainOptions): number {
  const specials = opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  if (new Set(specials).size !== specials.length) throw new Error(`train: special tokens repeat: ${specials.join(", ")}`);
  for (const s of specials) if (s.length === 0) throw new Error("train: a special token is the empty string");
  const min = 256 + specials.length;
  if (!Number.isInteger(opts.vocabSize)) throw new Error(`train: vocabulary size must be an integer, got ${opts.vocabSize}`);
  if (opts.vocabSize < min)
    throw new Error(`train: vocabulary size ${opts.vocabSize} is smaller than 256 bytes + ${specials.length} special tokens = ${min}`);
  return opts.vocabSize - min;
}

/** Merges from piece counts (see file header). */
export function trainBpeFromCounts(pieceCounts: Map<string, number>, opts: TrainOptions): BpeTokenizer {
  const wanted = mergesWanted(opts);
  const specials = opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const pattern = opts.pattern ?? MYNAH_PATTERN;
  const minCount = opts.minPieceCount ?? 1;
  if (pieceCounts.size === 0) throw new Error("train: the corpus is empty (no text to learn merges from)");

  // --- words: one flat symbol array; word w is sym[start[w], start[w] + wlen[w])
  let total = 0, nWords = 0;
  for (const [piece, c] of pieceCounts) {
    if (c < minCount) continue;
    const n = Buffer.byteLength(piece);
    if (n < 2) continue; // a single byte never takes part in a pair
    total += n;
    nWords++;
  }
  const sym = new Int32Array(total);
  const start = new Int32Array(nWords);
  const wlen = new Int32Array(nWords);
  const wcount = new Float64Array(nWords);
  {
    const utf8 = new TextEncoder();
    let scratch = new Uint8Array(1024);
    let w = 0, o = 0;
    for (const [piece, c] of pieceCounts) {
      if (c < minCount) continue;
      if (scratch.length < piece.length * 3) scratch = new Uint8Array(piece.length * 3);
      const n = utf8.encodeInto(piece, scratch).written;
      if (n < 2) continue;
      for (let i = 0; i < n; i++) sym[o + i] = scratch[i];
      start[w] = o, wlen[w] = n, wcount[w] = c;
      o += n;
      w++;
    }
  }

  const pt = new PairTable();
  // initial pair counts and occurrence lists
  for (let w = 0; w < nWords; w++) {
    const s0 = start[w], c = wcount[w];
    for (let i = s0; i + 1 < s0 + wlen[w]; i++) pt.add(sym[i], sym[i + 1], c, w);
  }
  const heap = new PairHeap(pt);
  for (let p = 0; p < pt.size; p++) if (pt.count[p] > 0) heap.push(p, pt.count[p]);

  const merges: [number, number][] = [];
  const tokens: Uint8Array[] = [];
  for (let b = 0; b < 256; b++) tokens.push(Uint8Array.of(b));
  const seen = new Int32Array(nWords).fill(-1); // last merge that visited each word
  const touched: number[] = [];
  const tick = Math.max(1, Math.floor(wanted / 200));

  while (merges.length < wanted) {
    // pop the best pair, refreshing stale entries (counts only fall for existing pairs)
    let best = -1;
    while (heap.size > 0) {
      const p = heap.top(), stored = heap.topCount();
      heap.pop();
      const now = pt.count[p];
      if (now === stored) {
        best = p;
        break;
      }
      if (now > 0) heap.push(p, now);
    }
    if (best < 0 || pt.count[best] <= 0) break; // nothing left to merge
    const a = pt.a[best], b = pt.b[best];
    const z = 256 + merges.length;
    merges.push([a, b]);
    const ta = tokens[a], tb = tokens[b];
    const tz = new Uint8Array(ta.length + tb.length);
    tz.set(ta), tz.set(tb, ta.length);
    tokens.push(tz);

    touched.length = 0;
    const mergeNo = merges.length;
    for (let node = pt.takeWords(best); node >= 0; node = pt.nodeNext[node]) {
      const w = pt.nodeWord[node];
      if (seen[w] === mergeNo) continue;
      seen[w] = mergeNo;
      const s0 = start[w];
      let end = s0 + wlen[w];
      let found = false;
      for (let i = s0; i + 1 < end; i++) if (sym[i] === a && sym[i + 1] === b) { found = true; break; }
      if (!found) continue; // stale entry: the pair left this word in an earlier merge
      const c = wcount[w];
      for (let i = s0; i + 1 < end; i++) pt.sub(sym[i], sym[i + 1], c);
      let o = s0;
      for (let i = s0; i < end; ) {
        if (i + 1 < end && sym[i] === a && sym[i + 1] === b) (sym[o++] = z), (i += 2);
        else sym[o++] = sym[i++];
      }
      wlen[w] = o - s0;
      end = o;
      for (let i = s0; i + 1 < end; i++) {
        const x = sym[i], y = sym[i + 1];
        if (x === z || y === z) touched.push(pt.add(x, y, c, w));
        else pt.add(x, y, c, -1);
      }
    }
    // new pairs (all contain z) enter the heap once, with their final counts
    for (const p of touched) if (heap.pos(p) === false && pt.count[p] > 0) heap.markAndPush(p, pt.count[p]);
    heap.clearMarks(touched);
    if (opts.onProgress && (merges.length % tick === 0 || merges.length === wanted))
      opts.onProgress({ phase: "merge", done: merges.length, total: wanted });
  }
  if (merges.length === 0 && wanted > 0) throw new Error("train: the corpus has no two adjacent bytes inside any piece; nothing to merge");

  const all: (Uint8Array | null)[] = tokens.slice();
  const special: Record<string, number> = {};
  specials.forEach((s, i) => {
    special[s] = all.length;
    all.push(null);
  });
  return bpeTokenizer({ tokens: all, mode: "merges", merges, special, pattern, wholePieces: opts.wholePieces === true });
}

/**
 * (left id, right id) → pair index, with per-pair weighted count and the words it occurs in.
 * Open addressing over typed arrays, and the word lists as linked nodes in one pool (newest
 * first): far less memory and allocation than a Map of number keys and an array per pair.
 */
class PairTable {
  size = 0;
  a = new Int32Array(1 << 16);
  b = new Int32Array(1 << 16);
  count = new Float64Array(1 << 16);
  /** First node of each pair's word list (−1: none). */
  head = new Int32Array(1 << 16);
  nodeWord = new Int32Array(1 << 20);
  nodeNext = new Int32Array(1 << 20);
  private nodes = 0;
  private slots = new Int32Array(1 << 17).fill(-1);
  private mask = (1 << 17) - 1;

  private static hash(x: number, y: number): number {
    return (Math.imul(x, 0x9e3779b1) ^ Math.imul(y + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  }
  /** Index of (x, y), created if absent. */
  index(x: number, y: number): number {
    let h = PairTable.hash(x, y) & this.mask;
    for (;;) {
      const p = this.slots[h];
      if (p < 0) break;
      if (this.a[p] === x && this.b[p] === y) return p;
      h = (h + 1) & this.mask;
    }
    const p = this.size++;
    if (p === this.a.length) this.growArrays();
    this.a[p] = x, this.b[p] = y, this.count[p] = 0, this.head[p] = -1;
    this.slots[h] = p;
    if (this.size * 2 > this.mask) this.rehash();
    return p;
  }
  /** Adds c to the count of (x, y); w ≥ 0 also records word w in its list. Returns the index. */
  add(x: number, y: number, c: number, w: number): number {
    const p = this.index(x, y);
    this.count[p] += c;
    if (w >= 0) {
      const h = this.head[p];
      if (h < 0 || this.nodeWord[h] !== w) {
        if (this.nodes === this.nodeWord.length) this.growNodes();
        const n = this.nodes++;
        this.nodeWord[n] = w, this.nodeNext[n] = h, this.head[p] = n;
      }
    }
    return p;
  }
  /** Detaches pair p's word list and returns its first node (may hold stale or repeated words). */
  takeWords(p: number): number {
    const h = this.head[p];
    this.head[p] = -1;
    return h;
  }
  private growNodes(): void {
    const n = this.nodeWord.length * 2;
    const w = new Int32Array(n), x = new Int32Array(n);
    w.set(this.nodeWord), x.set(this.nodeNext);
    this.nodeWord = w, this.nodeNext = x;
  }
  sub(x: number, y: number, c: number): void {
    this.count[this.index(x, y)] -= c;
  }
  private growArrays(): void {
    const n = this.a.length * 2;
    const a = new Int32Array(n), b = new Int32Array(n), c = new Float64Array(n), h = new Int32Array(n);
    a.set(this.a), b.set(this.b), c.set(this.count), h.set(this.head);
    this.a = a, this.b = b, this.count = c, this.head = h;
  }
  private rehash(): void {
    const n = (this.mask + 1) * 2;
    this.slots = new Int32Array(n).fill(-1);
    this.mask = n - 1;
    for (let p = 0; p < this.size; p++) {
      let h = PairTable.hash(this.a[p], this.b[p]) & this.mask;
      while (this.slots[h] >= 0) h = (h + 1) & this.mask;
      this.slots[h] = p;
    }
  }
}

/** Max-heap of pair indices by (count desc, left id asc, right id asc). */
class PairHeap {
  size = 0;
  private ids = new Int32Array(1 << 16);
  private counts = new Float64Array(1 << 16);
  private marks = new Uint8Array(1 << 16);
  constructor(private readonly pt: PairTable) {}
  top(): number { return this.ids[0]; }
  topCount(): number { return this.counts[0]; }
  pos(p: number): boolean { return p < this.marks.length && this.marks[p] === 1; }
  markAndPush(p: number, c: number): void {
    if (p >= this.marks.length) {
      const m = new Uint8Array(Math.max(p + 1, this.marks.length * 2));
      m.set(this.marks);
      this.marks = m;
    }
    this.marks[p] = 1;
    this.push(p, c);
  }
  clearMarks(ps: number[]): void {
    for (const p of ps) if (p < this.marks.length) this.marks[p] = 0;
  }
  private before(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    if (ci !== cj) return ci > cj;
    const pi = this.ids[i], pj = this.ids[j], pt = this.pt;
    if (pt.a[pi] !== pt.a[pj]) return pt.a[pi] < pt.a[pj];
    return pt.b[pi] < pt.b[pj];
  }
  private swap(i: number, j: number): void {
    const t = this.ids[i]; this.ids[i] = this.ids[j]; this.ids[j] = t;
    const c = this.counts[i]; this.counts[i] = this.counts[j]; this.counts[j] = c;
  }
  push(p: number, c: number): void {
    if (this.size === this.ids.length) {
      const ids = new Int32Array(this.size * 2), counts = new Float64Array(this.size * 2);
      ids.set(this.ids), counts.set(this.counts);
      this.ids = ids, this.counts = counts;
    }
    let i = this.size++;
    this.ids[i] = p, this.counts[i] = c;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }
  pop(): void {
    this.swap(0, --this.size);
    for (let i = 0; ; ) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < this.size && this.before(l, m)) m = l;
      if (r < this.size && this.before(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}

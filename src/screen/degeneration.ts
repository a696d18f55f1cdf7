/**
 * Degeneration: the failure modes of small models left to generate on their own —
 * a loop ("the the the …", a sentence said over and over) and runaway length.
 */

export interface LoopFinding {
  /** Where the repeated unit first starts (UTF-16 offset). */
  start: number;
  /** Length of the repeated unit in characters. */
  period: number;
  /** How many whole consecutive copies of the unit there are. */
  copies: number;
  /** Where the text is cut: after the first copy of the unit. */
  cutAt: number;
}

export interface LoopOptions {
  /** Longest repeated unit looked for, in characters. */
  maxPeriod: number;
  /** Fewest consecutive copies that count as a loop. */
  minCopies: number;
  /** Fewest characters the repeated run must span (so "!!!" or "1000" are not loops). */
  minChars: number;
}

export const DEFAULT_LOOP: LoopOptions = { maxPeriod: 200, minCopies: 3, minChars: 24 };

/**
 * The earliest repetition loop in the text, or null. A loop is a run text[s .. s + p·k) that
 * is p-periodic with k ≥ minCopies copies and p·k ≥ minChars. For each period p we scan
 * once, tracking how long text[j] = text[j + p] has held: O(n · maxPeriod).
 */
export function findLoop(text: string, opts: LoopOptions = DEFAULT_LOOP): LoopFinding | null {
  const n = text.length;
  let best: LoopFinding | null = null;
  for (let p = 1; p <= Math.min(opts.maxPeriod, Math.floor(n / 2)); p++) {
    let run = 0; // length of the current stretch where text[j] === text[j + p]
    let rejected = -1; // start of a run whose unit has no letter or digit ("-----" rules are no loop)
    for (let j = 0; j + p < n; j++) {
      if (text.charCodeAt(j) === text.charCodeAt(j + p)) {
        run++;
        const start = j - run + 1;
        const span = run + p; // the periodic run covers [start, start + run + p)
        const copies = Math.floor(span / p);
        if (copies >= opts.minCopies && span >= opts.minChars && start !== rejected) {
          if (!/[\p{L}\p{N}]/u.test(text.slice(start, start + p))) {
            rejected = start;
            continue;
          }
          if (!best || start < best.start) best = { start, period: p, copies, cutAt: start + p };
          break; // later starts for this period can only be worse
        }
      } else {
        run = 0;
      }
      if (best && j - run + 1 > best.start) break;
    }
  }
  if (best) {
    // Count the whole copies for the report.
    const unit = text.slice(best.start, best.start + best.period);
    let k = 1;
    while (text.startsWith(unit, best.start + k * best.period)) k++;
    best.copies = k;
  }
  return best;
}

/**
 * Cuts runaway text at maxChars, at the last whitespace in the final 20 % if there is one
 * (so words are kept whole). Returns null when the text is within bounds.
 */
export function cutRunaway(text: string, maxChars: number): string | null {
  if ([...text].length <= maxChars) return null;
  const chars = [...text].slice(0, maxChars).join("");
  const ws = Math.max(chars.lastIndexOf(" "), chars.lastIndexOf("\n"));
  return ws >= chars.length * 0.8 ? chars.slice(0, ws) : chars;
}

/**
 * findLoop for a growing text, one character at a time: for every period p ≤ maxPeriod it
 * keeps how long text[j] = text[j − p] has held up to the end, so a character costs
 * O(maxPeriod) however long the text is (findLoop over the whole text each time would cost
 * O(n · maxPeriod) per character). A loop is reported when a run ending at the current end
 * first qualifies — p-periodic over ≥ minChars characters with ≥ minCopies whole copies, its
 * unit holding a letter or digit — which is when findLoop on the text so far first finds one.
 */
export class LoopWatcher {
  private readonly ring: Uint16Array; // the last maxPeriod + 1 code units
  private readonly run: Int32Array; // run[p]: consecutive j up to the end with text[j] = text[j − p]
  private n = 0;
  found = false;

  constructor(private readonly opts: LoopOptions = DEFAULT_LOOP) {
    this.ring = new Uint16Array(opts.maxPeriod + 1);
    this.run = new Int32Array(opts.maxPeriod + 1);
  }

  private at(j: number): number {
    return this.ring[j % this.ring.length];
  }

  /** Adds text; returns true once a loop has been seen. */
  push(text: string): boolean {
    const { maxPeriod, minCopies, minChars } = this.opts;
    for (let i = 0; i < text.length && !this.found; i++) {
      const c = text.charCodeAt(i), j = this.n;
      for (let p = 1; p <= maxPeriod; p++) {
        if (j - p < 0) { this.run[p] = 0; continue; }
        this.run[p] = this.at(j - p) === c ? this.run[p] + 1 : 0;
      }
      this.ring[j % this.ring.length] = c;
      this.n++;
      for (let p = 1; p <= maxPeriod; p++) {
        const span = this.run[p] + p; // the periodic run covers the last run + p characters
        if (this.run[p] === 0 || span < minChars || Math.floor(span / p) < minCopies) continue;
        // The unit (any p consecutive characters of the run) must hold a letter or digit.
        let unit = "";
        for (let k = this.n - p; k < this.n; k++) unit += String.fromCharCode(this.at(k));
        if (/[\p{L}\p{N}]/u.test(unit)) {
          this.found = true;
          break;
        }
      }
    }
    return this.found;
  }
}

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

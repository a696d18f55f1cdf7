/**
 * Answer extraction for exact-match tasks: the reference answer of a GSM8K record follows
 * "#### ", and a model's answer is found in its reply by, in order, the last "#### X", an
 * "answer is X" / "答案是 X" phrase, or the last number (the common GSM8K practice), or by a
 * user regex's first group. Numbers are compared as numbers after normalising how people
 * write them: thousands separators, currency and percent signs, full-width digits, the
 * Unicode minus, a trailing full stop, "2.50" = "2.5".
 */

/** A number as people write it: optional sign, digits with optional thousands commas, optional decimals. */
const NUMBER = /[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?/g;

/** A number written in a reply → its canonical text ("1,234.50" → "1234.5", "−7" → "-7"), or null. */
export function normalizeNumber(s: string): string | null {
  const t = s.normalize("NFKC").replace(/−/g, "-").replace(/[$€£¥%\s]/g, "").replace(/,(?=\d{3}\b)/g, "").replace(/\.$/, "");
  if (!/^[-+]?\d+(?:\.\d+)?$/.test(t)) return null;
  const x = Number(t);
  return Number.isFinite(x) ? String(x) : null;
}

/** Canonical form of an answer: a number's canonical text, else trimmed, NFKC, lower-case text without a final full stop. */
export function normalizeAnswer(s: string): string {
  return normalizeNumber(s.trim()) ?? s.normalize("NFKC").trim().replace(/[.。]$/u, "").trim().toLowerCase();
}

/** The last number written in `s` (canonical), or null. */
export function lastNumber(s: string): string | null {
  const m = s.normalize("NFKC").replace(/−/g, "-").match(NUMBER);
  if (!m) return null;
  for (let i = m.length - 1; i >= 0; i--) {
    const n = normalizeNumber(m[i]);
    if (n !== null) return n;
  }
  return null;
}

/** The reference answer of a GSM8K-style solution ("... #### 72"), or null when it has no "####". */
export function gsm8kReference(solution: string): string | null {
  const i = solution.lastIndexOf("####");
  if (i < 0) return null;
  return normalizeAnswer(solution.slice(i + 4));
}

export type Extractor = { kind: "auto" } | { kind: "last-number" } | { kind: "regex"; re: RegExp };

/** An --extract value: "auto", "last-number", or a regex with one capture group. */
export function parseExtractor(spec: string): Extractor {
  if (spec === "auto") return { kind: "auto" };
  if (spec === "last-number") return { kind: "last-number" };
  let re: RegExp;
  try {
    re = new RegExp(spec, "u");
  } catch (err) {
    throw new Error(`--extract: not a valid regular expression (${(err as Error).message})`);
  }
  return { kind: "regex", re };
}

/** The answer stated in a reply (canonical), or null when none is found. */
export function extractAnswer(reply: string, ex: Extractor = { kind: "auto" }): string | null {
  if (ex.kind === "regex") {
    const m = reply.match(ex.re);
    if (!m) return null;
    return normalizeAnswer(m[1] ?? m[0]);
  }
  if (ex.kind === "last-number") return lastNumber(reply);
  // "#### X": the GSM8K format, when the model learned it.
  const h = reply.lastIndexOf("####");
  if (h >= 0) {
    const after = reply.slice(h + 4);
    const n = after.match(NUMBER);
    return n ? normalizeNumber(n[0]) : normalizeAnswer(after.split("\n")[0]);
  }
  // "the answer is X", "answer: X", "答案是 X": the number right after the last such phrase.
  const phrases = [...reply.normalize("NFKC").matchAll(/(?:answer\s*(?:is|:|=)|答案(?:是|为|:))\s*/giu)];
  if (phrases.length) {
    const last = phrases[phrases.length - 1];
    const rest = reply.normalize("NFKC").slice(last.index! + last[0].length);
    const n = rest.match(/^[^\d\n-−+]{0,3}([-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)/u);
    if (n) return normalizeNumber(n[1]);
  }
  return lastNumber(reply);
}

/** Whether an extracted answer matches the reference (both canonical; numbers compare as numbers). */
export function answersMatch(got: string | null, want: string): boolean {
  if (got === null) return false;
  const a = normalizeAnswer(got), b = normalizeAnswer(want);
  if (a === b) return true;
  const x = Number(a), y = Number(b);
  return a !== "" && b !== "" && Number.isFinite(x) && Number.isFinite(y) && x === y;
}

/**
 * Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating Large
 * Language Models Trained on Code"): 1 − C(n−c, k) / C(n, k), as a running product.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (k > n) throw new Error(`pass@k: k = ${k} is more than the ${n} samples`);
  if (n - c < k) return 1;
  let p = 1;
  for (let i = n - c + 1; i <= n; i++) p *= 1 - k / i;
  return 1 - p;
}

/**
 * Pre-split patterns: the regex that cuts text into pieces before BPE (merges never cross
 * a piece boundary). Patterns are stored in the Rust/Oniguruma dialect used by tiktoken and
 * tokenizer.json, and translated here to an equivalent JavaScript RegExp.
 */

/** GPT-2 (r50k/p50k): contractions, optional-space words, numbers, punctuation, spaces. */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/** GPT-4 (cl100k_base). */
export const CL100K_PATTERN = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** GPT-4o (o200k_base). */
export const O200K_PATTERN = [
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
].join("|");

/**
 * CJK ideographs (Unified, Extension A, Compatibility), written as literal characters so the
 * pattern reads the same in every regex dialect.
 */
const HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";

/**
 * mynah's default: the GPT-4 pattern, except that runs of Chinese ideographs form pieces of
 * their own instead of joining adjacent Latin letters ("GPT模型" → "GPT", "模型"), so
 * Chinese words are learned independently of the Latin word next to them. Contractions,
 * letter runs with one leading non-letter, digits in groups of at most 3, punctuation runs,
 * newlines, and whitespace as in GPT-4.
 */
export const MYNAH_PATTERN = [
  String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)`,
  String.raw`[^\r\n\p{L}\p{N}${HAN}]?[^\P{L}${HAN}]+`,
  `[${HAN}]+`,
  String.raw`\p{N}{1,3}`,
  String.raw` ?[^\s\p{L}\p{N}]+[\r\n]*`,
  String.raw`\s*[\r\n]+`,
  String.raw`\s+(?!\S)`,
  String.raw`\s+`,
].join("|");

/**
 * Qwen2 / Qwen2.5: GPT-4's pattern with single digits (`\p{N}` instead of `\p{N}{1,3}`).
 */
export const QWEN2_PATTERN = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/**
 * The pre-split choices of `mynah tokenizer train --pattern`. `wholePieces` is Llama 3's
 * `ignore_merges` (a piece that is itself a token is emitted whole), which llama.cpp applies
 * with its `llama-bpe` pre-tokenizer; the other presets merge every piece. Every choice but
 * `mynah` is reproduced exactly by a llama.cpp pre-tokenizer (see src/interop/gguf.ts).
 */
export const PATTERN_PRESETS = {
  mynah: { pattern: MYNAH_PATTERN, wholePieces: false },
  cl100k: { pattern: CL100K_PATTERN, wholePieces: false },
  llama3: { pattern: CL100K_PATTERN, wholePieces: true },
  qwen2: { pattern: QWEN2_PATTERN, wholePieces: false },
  gpt2: { pattern: GPT2_PATTERN, wholePieces: false },
} as const;
export type PatternPreset = keyof typeof PATTERN_PRESETS;

/**
 * Translates a Rust-regex/Oniguruma pre-split pattern to a JavaScript RegExp (flags `gu`):
 * `(?i:...)` groups become explicit `[xX]` classes (Node 20 has no inline flags), and
 * `\s`/`\S` become `\p{White_Space}`/`\P{White_Space}` because JavaScript's `\s` differs
 * from Unicode White_Space (it adds U+FEFF and lacks U+0085).
 */
export function compilePattern(pattern: string): RegExp {
  let out = "";
  let caseless = 0; // depth of open (?i: groups
  const stack: boolean[] = []; // per open group: was it a (?i: group
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") {
      const d = pattern[i + 1];
      if (d === undefined) throw new Error(`pre-split pattern ends with a lone backslash: ${pattern}`);
      if (d === "s") out += String.raw`\p{White_Space}`;
      else if (d === "S") out += String.raw`\P{White_Space}`;
      else if (d === "p" || d === "P" || d === "x" || d === "u") {
        // copy a \p{...} / \x{...} / \u{...} escape whole
        let j = i + 2;
        if (pattern[j] === "{") j = pattern.indexOf("}", j) + 1;
        else j = d === "x" ? j + 2 : d === "u" ? j + 4 : j + 1;
        if (j <= i) throw new Error(`pre-split pattern: unterminated escape at ${i}: ${pattern}`);
        out += pattern.slice(i, j);
        i = j - 1;
        continue;
      } else out += c + d;
      i++;
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      out += c;
      continue;
    }
    if (c === "[") {
      inClass = true;
      out += c;
      if (pattern[i + 1] === "^") (out += "^"), i++;
      if (pattern[i + 1] === "]") (out += "\\]"), i++;
      continue;
    }
    if (c === "(") {
      if (pattern.startsWith("(?i:", i)) {
        stack.push(true);
        caseless++;
        out += "(?:";
        i += 3;
        continue;
      }
      stack.push(false);
      out += c;
      continue;
    }
    if (c === ")") {
      if (stack.pop()) caseless--;
      out += c;
      continue;
    }
    if (caseless > 0 && /[a-zA-Z]/.test(c)) {
      out += `[${c.toLowerCase()}${c.toUpperCase()}]`;
      continue;
    }
    out += c;
  }
  try {
    return new RegExp(out, "gu");
  } catch (err) {
    throw new Error(`pre-split pattern is not a valid regex (${(err as Error).message}): ${pattern}`);
  }
}

/** The sticky twin of each pattern (same source and flags, `y` for `g`). */
const stickyOf = new WeakMap<RegExp, RegExp>();

/**
 * Calls `fn` for each piece of `text` (in order); pieces cover all of `text`.
 *
 * Pieces are what a global search (`re.exec` from where the last match ended) finds, but are
 * found with the sticky twin's `test`, which allocates no match array: millions of pieces a
 * second make that garbage the larger part of what encoding allocates. Where the global search
 * would find its next match at the position it starts from, the sticky one finds the same
 * match (the same alternatives tried in the same order there). Only where that match would be
 * empty or start later (a gap, which the built-in patterns never leave) does the global search
 * run, exactly as before.
 */
export function forEachPiece(re: RegExp, text: string, fn: (piece: string) => void): void {
  let sticky = stickyOf.get(re);
  if (!sticky) stickyOf.set(re, (sticky = new RegExp(re.source, re.flags.replace("g", "") + "y")));
  const n = text.length;
  let pos = 0;
  while (pos < n) {
    sticky.lastIndex = pos;
    if (sticky.test(text) && sticky.lastIndex > pos) {
      const end = sticky.lastIndex;
      fn(text.slice(pos, end));
      pos = end;
    } else pos = globalStep(re, text, pos, fn);
  }
}

/** The global search from `pos` up to and including its next non-empty match (gaps become pieces); returns where it ended. */
function globalStep(re: RegExp, text: string, pos: number, fn: (piece: string) => void): number {
  re.lastIndex = pos;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    // The patterns cover every character; a gap would mean a pattern that skips text, which
    // would lose data, so it becomes a piece of its own.
    if (m.index > pos) {
      fn(text.slice(pos, m.index));
      pos = m.index;
    }
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    fn(m[0]);
    return re.lastIndex;
  }
  fn(text.slice(pos));
  return text.length;
}

/**
 * A position at or after `from` where text can be cut without changing its pieces under any
 * of the patterns above: just after a newline that is followed by a letter or digit (no
 * branch continues across that point). −1 if there is none.
 */
export function safeCutPoint(text: string, from: number): number {
  const re = /\n(?=[\p{L}\p{N}])/gu;
  re.lastIndex = from;
  const m = re.exec(text);
  return m ? m.index + 1 : -1;
}

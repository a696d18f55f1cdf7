/**
 * Personal data detectors: e-mail addresses, phone numbers (international "+CC …" and Chinese
 * mobile), payment card numbers (Luhn-valid only) and Chinese resident ID numbers
 * (GB 11643-1999 checksum-valid only). Each detector returns spans of the text; validators
 * with a checksum keep false positives on ordinary numbers rare.
 */

export type PiiKind = "email" | "phone" | "card" | "cn_id";

export interface PiiSpan {
  kind: PiiKind;
  /** UTF-16 offsets into the text: [start, end). */
  start: number;
  end: number;
  text: string;
}

/** Luhn (ISO/IEC 7812-1) check over a string of digits. */
export function luhnValid(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

const CN_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CN_ID_CHECK = "10X98765432";

/**
 * Chinese resident ID (18 characters, GB 11643-1999): 6-digit region, birth date YYYYMMDD,
 * 3-digit sequence, check character = "10X98765432"[Σ digit_i · weight_i mod 11].
 */
export function cnIdValid(id: string): boolean {
  if (!/^\d{17}[\dXx]$/.test(id)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (id.charCodeAt(i) - 48) * CN_ID_WEIGHTS[i];
  if (CN_ID_CHECK[sum % 11] !== id[17].toUpperCase()) return false;
  const y = Number(id.slice(6, 10)), m = Number(id.slice(10, 12)), d = Number(id.slice(12, 14));
  if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** The check character for 17 ID digits (used by tests to make valid IDs). */
export function cnIdCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (first17.charCodeAt(i) - 48) * CN_ID_WEIGHTS[i];
  return CN_ID_CHECK[sum % 11];
}

// Local part and domain after RFC 5322's common subset (no quoted local parts).
const EMAIL = /[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}/g;
// Digits are not preceded/followed by another digit or letter, so parts of longer numbers don't match.
const CN_ID = /(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])/g;
// 13–19 digits, optionally grouped by single spaces or dashes; the first digit is an issuer's
// major industry identifier for cards (2–6: Mastercard, Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay).
const CARD = /(?<![\d+-])[2-6](?:[ -]?\d){12,18}(?!\d)/g;
// Chinese mobile: 1[3-9]x xxxx xxxx, optional +86 / 0086 prefix, optional separators 3-4-4.
const CN_MOBILE = /(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)/g;
// International (E.164-style): +country code then 6–14 more digits, separators allowed;
// also North-American (xxx) xxx-xxxx and xxx-xxx-xxxx.
const INTL_PHONE = /(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\d)/g;
const NANP_PHONE = /(?<![\w(])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?!\d)/g;

function collect(text: string, re: RegExp, kind: PiiKind, ok: (m: string) => boolean, out: PiiSpan[]): void {
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (ok(m[0])) out.push({ kind, start: m.index, end: m.index + m[0].length, text: m[0] });
  }
}

const digitsOf = (s: string): string => s.replace(/\D/g, "");

/**
 * Every personal-data span in the text, sorted by start, without overlaps (an earlier
 * detector in the order email, cn_id, card, phone wins a conflict).
 */
export function findPii(text: string, kinds: ReadonlySet<PiiKind> = new Set(["email", "phone", "card", "cn_id"])): PiiSpan[] {
  const found: PiiSpan[] = [];
  if (kinds.has("email")) collect(text, EMAIL, "email", () => true, found);
  if (kinds.has("cn_id")) collect(text, CN_ID, "cn_id", cnIdValid, found);
  if (kinds.has("card")) collect(text, CARD, "card", (m) => luhnValid(digitsOf(m)), found);
  if (kinds.has("phone")) {
    collect(text, CN_MOBILE, "phone", () => true, found);
    collect(text, INTL_PHONE, "phone", (m) => { const n = digitsOf(m).length; return n >= 8 && n <= 15; }, found);
    collect(text, NANP_PHONE, "phone", () => true, found);
  }
  // Keep the first detector's span where two overlap.
  const kept: PiiSpan[] = [];
  for (const s of found) {
    if (!kept.some((k) => s.start < k.end && k.start < s.end)) kept.push(s);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Replaces each span with `[KIND]` (e.g. `[EMAIL]`, `[CN_ID]`). */
export function redactSpans(text: string, spans: readonly PiiSpan[]): string {
  let out = "";
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    out += text.slice(at, s.start) + `[${s.kind.toUpperCase()}]`;
    at = s.end;
  }
  return out + text.slice(at);
}

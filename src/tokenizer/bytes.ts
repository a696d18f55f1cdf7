/**
 * Byte helpers for byte-level BPE: the GPT-2 bytes↔unicode table used by Hugging Face
 * `tokenizer.json` files, and UTF-8 boundary checks for the streaming decoder.
 */

/**
 * GPT-2's reversible byte → printable character table. Bytes that are already printable
 * and not whitespace (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) map to themselves; the other 68 bytes
 * map, in increasing byte order, to U+0100, U+0101, ... (so a space becomes `Ġ` = U+0120).
 * Why: tokenizer.json stores tokens as JSON strings, and raw bytes that are not valid UTF-8
 * on their own need a printable stand-in.
 */
function buildByteTable(): string[] {
  const table = new Array<string>(256);
  let next = 0x100;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
}

/** byte → its GPT-2 stand-in character. */
export const BYTE_TO_CHAR: readonly string[] = buildByteTable();

/** GPT-2 stand-in character code → byte (−1 where the character is no stand-in). */
export const CHAR_TO_BYTE: Int16Array = (() => {
  const inv = new Int16Array(0x200).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => (inv[c.charCodeAt(0)] = b));
  return inv;
})();

/** Raw bytes → GPT-2 byte-level string (as in tokenizer.json vocab keys). */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]];
  return s;
}

/** GPT-2 byte-level string → raw bytes; null when a character is not a stand-in. */
export function byteLevelToBytes(s: string): Uint8Array | null {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const b = c < 0x200 ? CHAR_TO_BYTE[c] : -1;
    if (b < 0) return null;
    out[i] = b;
  }
  return out;
}

/** Bytes as a latin1 string: one char per byte, a cheap exact Map key. */
export function bytesKey(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Length of the longest prefix of `buf[0, n)` that ends on a UTF-8 character boundary, i.e.
 * everything except a trailing lead byte whose continuation bytes have not all arrived yet.
 * Lead-byte positions are always boundaries for a WHATWG decoder, so decoding the prefix and
 * the rest separately gives the same text as decoding them together.
 */
export function completeUtf8Prefix(buf: Uint8Array, n: number): number {
  for (let back = 1; back <= 3 && back <= n; back++) {
    const b = buf[n - back];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for its lead
    const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xc2 && b <= 0xdf ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

/**
 * Streaming a file as lines with bounded memory: gzip is undone on the fly (`.gz`), bytes
 * are split at "\n", and each line is checked to be valid UTF-8 (invalid bytes are reported
 * with the line number, not silently replaced).
 */
import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import type { Readable } from "node:stream";

/** A line longer than this is refused (a binary file read as text, or a missing newline). */
export const MAX_LINE_BYTES = 256 << 20;

export interface Line {
  /** 1-based line number. */
  no: number;
  /** The line without its "\n"; null when it is not valid UTF-8. */
  text: string | null;
}

/** The raw byte stream of a file, gunzipped when its name ends in .gz. */
export function openBytes(path: string): Readable {
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  if (!/\.gz$/i.test(path)) return raw;
  const gz = createGunzip();
  raw.on("error", (e) => gz.destroy(e));
  return raw.pipe(gz);
}

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function decodeLine(b: Uint8Array): string | null {
  try {
    return fatal.decode(b);
  } catch {
    return null;
  }
}

/**
 * Yields the lines of a file in batches (one per chunk read), so callers pay one await per
 * megabyte, not per line. `onBytes` reports bytes of text read (after gunzip for .gz).
 */
export async function* readLines(path: string, onBytes?: (n: number) => void): AsyncGenerator<Line[]> {
  const stream = openBytes(path);
  let carry: Buffer | null = null;
  let no = 0;
  let first = true;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      onBytes?.(chunk.length);
      let buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      carry = null;
      if (first && buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3); // BOM
      first = false;
      const lastNl = buf.lastIndexOf(10);
      if (lastNl < 0) {
        if (buf.length > MAX_LINE_BYTES) throw new Error(`${path}:${no + 1}: line longer than ${MAX_LINE_BYTES} bytes`);
        carry = buf;
        continue;
      }
      carry = lastNl + 1 < buf.length ? Buffer.from(buf.subarray(lastNl + 1)) : null;
      const body = buf.subarray(0, lastNl);
      // Fast path: the whole batch is valid UTF-8 → decode once and split.
      const all = decodeLine(body);
      const out: Line[] = [];
      if (all !== null) {
        for (const t of all.split("\n")) out.push({ no: ++no, text: t });
      } else {
        let s = 0;
        for (;;) {
          const e = body.indexOf(10, s);
          const end = e < 0 ? body.length : e;
          out.push({ no: ++no, text: decodeLine(body.subarray(s, end)) });
          if (e < 0) break;
          s = e + 1;
        }
      }
      yield out;
    }
    if (carry && carry.length > 0) yield [{ no: ++no, text: decodeLine(carry) }];
  } catch (err) {
    if ((err as Error).message.startsWith(path)) throw err;
    throw new Error(`${path}: cannot read (${(err as Error).message})`);
  } finally {
    stream.destroy();
  }
}

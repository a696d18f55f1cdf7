/**
 * Reading training text from files, streamed with bounded memory:
 *  - `.jsonl`: one JSON object a line, with a string `text` field, or `messages` (a list of
 *    {role, content}: each content is one text);
 *  - anything else: UTF-8 text, cut into chunks at line boundaries;
 *  - either one gzip-compressed (`.gz` appended to the name).
 */
import { createReadStream, statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { createGunzip } from "node:zlib";
import type { BpeTokenizer } from "./bpe.ts";
import { trainBpeAsync, mergesWanted, type TrainOptions } from "./train.ts";
import { safeCutPoint } from "./pattern.ts";

/** Text chunks are cut near this many characters, at a newline followed by a letter or digit. */
const CHUNK_CHARS = 1 << 20;

/** True for files read as JSON lines. */
export function isJsonl(path: string): boolean {
  return /\.jsonl(\.gz)?$/i.test(path);
}

/** The texts of one JSONL record; throws naming file:line when it has none. */
export function textsOfRecord(rec: unknown, where: string): string[] {
  if (typeof rec !== "object" || rec === null) throw new Error(`${where}: expected a JSON object`);
  const r = rec as { text?: unknown; messages?: unknown };
  if (typeof r.text === "string") return [r.text];
  if (Array.isArray(r.messages)) {
    return r.messages.map((m, i) => {
      const c = (m as { content?: unknown } | null)?.content;
      if (typeof c !== "string") throw new Error(`${where}: messages[${i}].content is not a string`);
      return c;
    });
  }
  throw new Error(`${where}: record has neither a "text" string nor a "messages" list`);
}

/**
 * Streams the texts of a file. `onBytes` reports bytes read (for progress).
 * Errors name the file (and line for JSONL).
 */
export async function* readTexts(path: string, onBytes?: (n: number) => void): AsyncGenerator<string> {
  try {
    if (!statSync(path).isFile()) throw new Error("not a regular file");
  } catch (err) {
    throw new Error(`cannot read training input ${path}: ${(err as Error).message}`);
  }
  const jsonl = isJsonl(path);
  const dec = new StringDecoder("utf8");
  let carry = "";
  let lineNo = 0;
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  // progress counts bytes of the file as stored (compressed or not)
  if (onBytes) raw.on("data", (b) => onBytes(b.length));
  const stream = /\.gz$/i.test(path) ? raw.pipe(createGunzip()) : raw;
  if (stream !== raw) raw.on("error", (err) => stream.destroy(err));
  try {
    for await (const buf of stream as AsyncIterable<Buffer>) {
      carry += dec.write(buf);
      if (jsonl) {
        const lines = carry.split("\n");
        carry = lines.pop()!;
        for (const line of lines) {
          lineNo++;
          yield* jsonlLine(line, `${path}:${lineNo}`);
        }
      } else {
        while (carry.length >= CHUNK_CHARS) {
          const cut = safeCut(carry, CHUNK_CHARS);
          if (cut < 0) break;
          yield carry.slice(0, cut);
          carry = carry.slice(cut);
        }
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw new Error(`cannot read training input ${path}: ${(err as Error).message}`);
    throw err;
  }
  carry += dec.end();
  if (jsonl) {
    if (carry.trim() !== "") yield* jsonlLine(carry, `${path}:${lineNo + 1}`);
  } else if (carry.length > 0) yield carry;
}

function* jsonlLine(line: string, where: string): Generator<string> {
  if (line.trim() === "") return;
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch (err) {
    throw new Error(`${where}: not valid JSON (${(err as Error).message})`);
  }
  yield* textsOfRecord(rec, where);
}

/**
 * A cut position at or after `from` where every pre-split pattern ends a piece anyway (see
 * safeCutPoint); −1 if none yet.
 */
function safeCut(s: string, from: number): number {
  const cut = safeCutPoint(s, from);
  if (cut >= 0) return cut;
  return s.length > from * 4 ? from : -1; // pathological text without such newlines: cut anyway
}

export interface TrainFilesOptions extends TrainOptions {}

/** Trains a tokenizer on text/JSONL files (see readTexts). Progress covers counting (bytes) then merging. */
export async function trainTokenizerFromFiles(paths: string[], opts: TrainFilesOptions): Promise<BpeTokenizer> {
  mergesWanted(opts); // fail fast on a bad vocabulary size, before reading anything
  if (paths.length === 0) throw new Error("train: no input files given");
  let total = 0;
  for (const p of paths) {
    try {
      total += statSync(p).size;
    } catch (err) {
      throw new Error(`cannot read training input ${p}: ${(err as Error).message}`);
    }
  }
  let done = 0;
  const onBytes = (n: number): void => {
    done += n;
    opts.onProgress?.({ phase: "count", done, total });
  };
  async function* texts(): AsyncGenerator<string> {
    for (const p of paths) yield* readTexts(p, onBytes);
  }
  try {
    return await trainBpeAsync(texts(), opts);
  } catch (err) {
    if (/corpus is empty/.test((err as Error).message)) throw new Error(`train: the corpus is empty (no text in ${paths.join(", ")})`);
    throw err;
  }
}

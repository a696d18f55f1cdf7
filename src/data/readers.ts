/**
 * Readers: files → a stream of documents (plain text or conversations), each tagged with its
 * file and line, with bounded memory (async iterators, a batch of lines or one Parquet row
 * group at a time).
 *
 * Containers, from the file name (".gz" is undone first): `.jsonl`/`.ndjson`/`.json` = JSON
 * lines (a `.json` or `.json.gz` file holding one array, as Alpaca ships, is streamed element by
 * element), `.parquet` = Parquet as Hugging Face datasets ship it (row groups read one by one;
 * columns may hold strings or lists of message structs), anything else = UTF-8 text. The
 * record shape of JSON and Parquet files is detected per file (see records.ts) or forced.
 */
import * as zlib from "node:zlib";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { DataError, reportBad, type OnBad } from "./errors.ts";
import { MAX_LINE_BYTES, openBytes, readLines } from "./lines.ts";
import { detectShape, isPreferencePair, recordToDoc, RecordError, RECORD_SHAPES, type DocBody, type RecordShape } from "./records.ts";

/**
 * A document and where it came from (line of a text or JSON file, 1-based row of Parquet or
 * of a JSON array). `preference`: the record was a preference pair (it also had "chosen" and
 * "rejected"), which supervised fine-tuning refuses (see isPreferencePair).
 */
export type Doc = DocBody & { file: string; line: number; unit: "line" | "row"; preference?: true };

/** A record of a known shape → a Doc, marked when it is a preference pair. */
function docOf(rec: unknown, shape: RecordShape, textField: string, file: string, line: number, unit: "line" | "row"): Doc {
  const doc: Doc = { ...recordToDoc(rec, shape, textField), file, line, unit };
  if (isPreferencePair(rec)) doc.preference = true;
  return doc;
}

/** "auto" detects per file; "text" reads every file as plain text; a shape forces it. */
export type InputFormat = "auto" | "text" | RecordShape;
// ("text" is both a plain-text container and a JSON record shape; listed once.)
export const INPUT_FORMATS: readonly InputFormat[] = ["auto", ...new Set<InputFormat>(["text", ...RECORD_SHAPES])];

/** How a plain text file is cut into documents. */
export type DocSplit = "blank" | "line" | "file";

export interface ReadOptions {
  format?: InputFormat;
  /** Field holding the text in JSON text records (default "text"). */
  textField?: string;
  /** Plain text: documents end at blank lines (default), at every line, or at the file's end. */
  docSplit?: DocSplit;
  /** Called for each bad record instead of throwing (--skip-bad). */
  onBad?: OnBad;
  /** Bytes of input consumed (progress). */
  onBytes?: (n: number) => void;
}

/** A plain-text document is cut at a line boundary past this many characters. */
export const MAX_DOC_CHARS = 1 << 20;

export type Container = "text" | "jsonl" | "parquet";

export function containerOf(path: string): Container {
  const name = path.replace(/\.gz$/i, "").toLowerCase();
  if (/\.(jsonl|ndjson|json)$/.test(name)) return "jsonl";
  if (name.endsWith(".parquet")) return "parquet";
  return "text";
}

/** Documents of one file. */
export async function* readFile(path: string, opts: ReadOptions = {}): AsyncGenerator<Doc> {
  const format = opts.format ?? "auto";
  if (!INPUT_FORMATS.includes(format)) throw new Error(`unknown format ${JSON.stringify(format)}; expected one of ${INPUT_FORMATS.join(", ")}`);
  const container = format === "text" ? "text" : containerOf(path);
  if (container === "text") {
    if (format !== "auto" && format !== "text") throw new Error(`${path}: --format ${format} needs JSON lines or Parquet, but this is a plain text file`);
    yield* readTextFile(path, opts);
  } else yield* readRecordFile(path, opts);
}

/** Documents of many files, in order. */
export async function* readFiles(paths: readonly string[], opts: ReadOptions = {}): AsyncGenerator<Doc> {
  for (const p of paths) yield* readFile(p, opts);
}

async function* readTextFile(path: string, opts: ReadOptions): AsyncGenerator<Doc> {
  const split = opts.docSplit ?? "blank";
  let lines: string[] = [];
  let chars = 0;
  let first = 0;
  const flush = (): Doc | null => {
    const text = lines.join("\n");
    lines = [];
    chars = 0;
    return text.trim() === "" ? null : { kind: "text", text, file: path, line: first, unit: "line" };
  };
  for await (const batch of readLines(path, opts.onBytes)) {
    for (const l of batch) {
      if (l.text === null) {
        reportBad(new DataError(path, l.no, "invalid UTF-8"), opts.onBad);
        continue;
      }
      if (split === "line") {
        if (l.text.trim() !== "") yield { kind: "text", text: l.text, file: path, line: l.no, unit: "line" };
        continue;
      }
      if (split === "blank" && l.text.trim() === "") {
        const d = flush();
        if (d) yield d;
        continue;
      }
      if (lines.length === 0) first = l.no;
      lines.push(l.text);
      chars += l.text.length + 1;
      if (chars > MAX_DOC_CHARS) {
        const d = flush();
        if (d) yield d;
      }
    }
  }
  const d = flush();
  if (d) yield d;
}

/** The shape for a file: forced, or detected from its first record. */
function shapeFor(rec: unknown, opts: ReadOptions, path: string, line: number, unit: "line" | "row"): RecordShape {
  const format = opts.format ?? "auto";
  if (format !== "auto" && format !== "text") return format;
  const shape = detectShape(rec, opts.textField ?? "text");
  if (shape) return shape;
  const fields = typeof rec === "object" && rec !== null ? Object.keys(rec).join(", ") || "none" : typeof rec;
  throw new DataError(path, line,
    `cannot tell the record format from its fields (${fields}); expected "${opts.textField ?? "text"}", "messages", "conversations", "instruction"/"output" or "chosen"/"rejected" (use --format / --text-field)`, unit);
}

/**
 * The records of a JSON-lines, JSON-array or Parquet file as parsed JSON values, with where
 * each is (line of a JSONL file, row of an array or table). Lines that are not JSON (or not
 * UTF-8) go to onBad (thrown unless --skip-bad), so every reader of records reports them alike.
 */
async function* rawRecords(path: string, opts: { onBad?: OnBad; onBytes?: (n: number) => void }): AsyncGenerator<{ rec: unknown; line: number; unit: "line" | "row" }> {
  if (containerOf(path) === "parquet") {
    yield* parquetRows(path, opts.onBytes);
    return;
  }
  if (await startsWithBracket(path)) {
    for await (const { row, bytes } of jsonArrayElements(path, opts.onBytes)) {
      try {
        yield { rec: JSON.parse(utf8.decode(bytes)), line: row, unit: "row" };
      } catch (err) {
        const why = err instanceof TypeError ? "invalid UTF-8" : `malformed JSON (${(err as Error).message})`;
        reportBad(new DataError(path, row, why, "row"), opts.onBad);
      }
    }
    return;
  }
  for await (const batch of readLines(path, opts.onBytes)) {
    for (const l of batch) {
      if (l.text === null) {
        reportBad(new DataError(path, l.no, "invalid UTF-8"), opts.onBad);
        continue;
      }
      if (l.text.trim() === "") continue;
      let rec: unknown;
      try {
        rec = JSON.parse(l.text);
      } catch (err) {
        reportBad(new DataError(path, l.no, `malformed JSON (${(err as Error).message})`), opts.onBad);
        continue;
      }
      yield { rec, line: l.no, unit: "line" };
    }
  }
}

/** Documents of a JSONL / JSON-array / Parquet file: each record in the file's shape (detected from the first, or --format). */
async function* readRecordFile(path: string, opts: ReadOptions): AsyncGenerator<Doc> {
  let shape: RecordShape | null = null;
  const textField = opts.textField ?? "text";
  for await (const { rec, line, unit } of rawRecords(path, opts)) {
    try {
      shape ??= shapeFor(rec, opts, path, line, unit);
      yield docOf(rec, shape, textField, path, line, unit);
    } catch (err) {
      if (err instanceof RecordError) reportBad(new DataError(path, line, err.message, unit), opts.onBad);
      else if (err instanceof DataError) reportBad(err, opts.onBad);
      else throw err;
    }
  }
}

/**
 * True when a `.json` or `.json.gz` file holds one JSON array (Alpaca-style) rather than JSON
 * lines: its first character, after gunzip and a byte-order mark, is "[".
 */
async function startsWithBracket(path: string): Promise<boolean> {
  if (!/\.json(\.gz)?$/i.test(path)) return false;
  const stream = openBytes(path);
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const text = chunk.toString("latin1").replace(/^\xef\xbb\xbf/, "").trimStart();
      if (text !== "") return text[0] === "[";
    }
    return false;
  } catch (err) {
    throw new Error(`${path}: cannot read (${(err as Error).message})`);
  } finally {
    stream.destroy();
  }
}

/**
 * The elements of a top-level JSON array, streamed: the bytes are scanned once (strings,
 * escapes and nesting tracked), each element is cut out, checked as UTF-8 and parsed on its
 * own. Memory is one element at a time, so an array of any size reads (no whole-file string,
 * whose length V8 caps near 512 Mi characters). Yields [row number, bytes or error].
 */
async function* jsonArrayElements(path: string, onBytes?: (n: number) => void): AsyncGenerator<{ row: number; bytes: Buffer }> {
  const fail = (why: string): never => {
    throw new DataError(path, row + 1, why, "row");
  };
  let row = 0;
  let started = false; // past the opening "["
  let ended = false; // past the closing "]"
  let first = true;
  let depth = 0;
  let inString = false;
  let escape = false;
  let parts: Buffer[] = [];
  let partBytes = 0;
  let sawComma = false;
  for await (let chunk of openBytes(path) as AsyncIterable<Buffer>) {
    onBytes?.(chunk.length);
    if (first && chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) chunk = chunk.subarray(3);
    first = false;
    let start = 0; // where the current element's bytes begin in this chunk
    // Inside strings, jump to the next quote or backslash (indexOf is native; long texts are most of the bytes).
    let nextQuote = -1;
    let nextSlash = -1;
    for (let i = 0; i < chunk.length; i++) {
      if (inString && !escape) {
        if (nextQuote < i) nextQuote = chunk.indexOf(0x22, i) >>> 0; // -1 → 2^32 − 1: none in this chunk
        if (nextSlash < i) nextSlash = chunk.indexOf(0x5c, i) >>> 0;
        i = Math.min(nextQuote, nextSlash);
        if (i >= chunk.length) break;
      }
      const b = chunk[i];
      if (ended) {
        if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) throw new DataError(path, row, "text after the closing ] of the JSON array", "row");
        continue;
      }
      if (!started) {
        if (b === 0x5b) (started = true), (start = i + 1);
        else if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) throw new DataError(path, 1, "expected a JSON array of records", "row");
        continue;
      }
      if (inString) {
        if (escape) escape = false;
        else if (b === 0x5c) escape = true;
        else if (b === 0x22) inString = false;
        continue;
      }
      if (b === 0x22) inString = true;
      else if (b === 0x7b || b === 0x5b) depth++;
      else if ((b === 0x7d || b === 0x5d) && depth > 0) depth--;
      else if (depth === 0 && (b === 0x2c || b === 0x5d)) {
        // An element ends: at a comma, or at the array's closing bracket.
        const piece = chunk.subarray(start, i);
        const bytes = parts.length ? Buffer.concat([...parts, piece]) : piece;
        parts = [];
        partBytes = 0;
        start = i + 1;
        const empty = isBlank(bytes);
        if (b === 0x5d) {
          ended = true;
          if (empty && sawComma) fail("a comma before the closing ] (trailing comma)");
          if (empty) continue;
        } else if (empty) fail("an empty element (two commas in a row, or a comma after [)");
        sawComma = b === 0x2c;
        yield { row: ++row, bytes };
      }
    }
    if (!ended && started && start < chunk.length) {
      parts.push(Buffer.from(chunk.subarray(start)));
      partBytes += chunk.length - start;
      if (partBytes > MAX_LINE_BYTES) fail(`an element longer than ${MAX_LINE_BYTES} bytes`);
    }
  }
  if (!started) throw new DataError(path, 1, "expected a JSON array of records (the file is empty)", "row");
  if (!ended) fail("the file ends inside the JSON array (no closing ]): truncated?");
}

function isBlank(b: Uint8Array): boolean {
  for (const c of b) if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  return true;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

type Decompress = (input: Uint8Array, outputLength: number) => Uint8Array;

/** Codecs beyond hyparquet's built-in Snappy, from node:zlib (ZSTD where this Node has it). */
function parquetCompressors(): Record<string, Decompress> {
  const c: Record<string, Decompress> = {
    GZIP: (input) => new Uint8Array(zlib.gunzipSync(input)),
    BROTLI: (input) => new Uint8Array(zlib.brotliDecompressSync(input)),
  };
  const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
  if (zstd) c.ZSTD = (input) => new Uint8Array(zstd(input));
  return c;
}

/** The rows of a Parquet file, one row group at a time. */
async function* parquetRows(path: string, onBytes?: (n: number) => void): AsyncGenerator<{ rec: unknown; line: number; unit: "row" }> {
  if (/\.gz$/i.test(path)) throw new Error(`${path}: gzipped Parquet is not supported (Parquet compresses its own pages)`);
  let file, metadata;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw new Error(`${path}: not a readable Parquet file (${(err as Error).message})`);
  }
  const compressors = parquetCompressors();
  let row = 0;
  for (const rg of metadata.row_groups) {
    const n = Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file, metadata, rowStart: row, rowEnd: row + n, compressors });
    } catch (err) {
      throw new Error(`${path}: rows ${row + 1}..${row + n}: cannot decode (${(err as Error).message})`);
    }
    onBytes?.(Number(rg.total_byte_size));
    for (let i = 0; i < rows.length; i++) yield { rec: rows[i], line: row + i + 1, unit: "row" };
    row += n;
  }
}

/** A raw JSON record (a JSONL line, an element of a JSON array, a Parquet row) and where it is. */
export interface RawRecord {
  rec: Record<string, unknown>;
  file: string;
  line: number;
  unit: "line" | "row";
}

/**
 * The records of a JSONL / JSON-array / Parquet file as they are, for readers of other shapes
 * than documents (evaluation task files). Malformed JSON, invalid UTF-8 and non-objects throw
 * a DataError naming the file and line.
 */
export async function* readRecords(path: string): AsyncGenerator<RawRecord> {
  if (containerOf(path) === "text") throw new Error(`${path}: expected JSON lines (.jsonl), a JSON array (.json) or Parquet (.parquet)`);
  for await (const { rec, line, unit } of rawRecords(path, {})) {
    if (typeof rec !== "object" || rec === null || Array.isArray(rec))
      throw new DataError(path, line, `expected a JSON object, got ${Array.isArray(rec) ? "an array" : rec === null ? "null" : typeof rec}`, unit);
    yield { rec: rec as Record<string, unknown>, file: path, line, unit };
  }
}

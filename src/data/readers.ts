/**
 * Readers: files → a stream of documents (plain text or conversations), each tagged with its
 * file and line, with bounded memory (async iterators, a batch of lines or one Parquet row
 * group at a time).
 *
 * Containers, from the file name (".gz" is undone first): `.jsonl`/`.ndjson`/`.json` = JSON
 * lines (a `.json` file holding one array, as Alpaca ships, is parsed whole), `.parquet` = Parquet as Hugging Face datasets ship it (row groups read one by one;
 * columns may hold strings or lists of message structs), anything else = UTF-8 text. The
 * record shape of JSON and Parquet files is detected per file (see records.ts) or forced.
 */
import * as zlib from "node:zlib";
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { DataError, reportBad, type OnBad } from "./errors.ts";
import { readLines } from "./lines.ts";
import { detectShape, recordToDoc, RecordError, RECORD_SHAPES, type DocBody, type RecordShape } from "./records.ts";

/** A document and where it came from (line of a text or JSON file, 1-based row of Parquet). */
export type Doc = DocBody & { file: string; line: number; unit: "line" | "row" };

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
  } else if (container === "jsonl") yield* (startsWithBracket(path) ? readJsonArray(path, opts) : readJsonl(path, opts));
  else yield* readParquet(path, opts);
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
    `cannot tell the record format from its fields (${fields}); expected "${opts.textField ?? "text"}", "messages", "conversations" or "instruction"/"output" (use --format / --text-field)`, unit);
}

async function* readJsonl(path: string, opts: ReadOptions): AsyncGenerator<Doc> {
  let shape: RecordShape | null = null;
  const textField = opts.textField ?? "text";
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
      try {
        shape ??= shapeFor(rec, opts, path, l.no, "line");
        yield { ...recordToDoc(rec, shape, textField), file: path, line: l.no, unit: "line" };
      } catch (err) {
        if (err instanceof RecordError) reportBad(new DataError(path, l.no, err.message), opts.onBad);
        else if (err instanceof DataError) reportBad(err, opts.onBad);
        else throw err;
      }
    }
  }
}

/** True when a .json file holds one JSON array (Alpaca-style) rather than JSON lines. */
function startsWithBracket(path: string): boolean {
  if (!/\.json$/i.test(path)) return false;
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(4096);
    const n = readSync(fd, b, 0, b.length, 0);
    return /^\s*\[/.test(b.toString("utf8", 0, n).replace(/^\uFEFF/, ""));
  } finally {
    closeSync(fd);
  }
}

/** A whole-file JSON array is parsed at once, so it must fit in memory (JSON lines stream). */
export const MAX_JSON_ARRAY_BYTES = 1 << 30;

async function* readJsonArray(path: string, opts: ReadOptions): AsyncGenerator<Doc> {
  const size = statSync(path).size;
  if (size > MAX_JSON_ARRAY_BYTES) throw new Error(`${path}: a ${(size / 2 ** 30).toFixed(1)} GiB JSON array is too large to parse at once; convert it to JSON lines`);
  let rows: unknown;
  try {
    rows = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(path)));
  } catch (err) {
    throw new DataError(path, 1, `not a valid UTF-8 JSON array (${(err as Error).message})`);
  }
  if (!Array.isArray(rows)) throw new DataError(path, 1, "expected a JSON array of records");
  opts.onBytes?.(size);
  const textField = opts.textField ?? "text";
  let shape: RecordShape | null = null;
  for (let i = 0; i < rows.length; i++) {
    try {
      shape ??= shapeFor(rows[i], opts, path, i + 1, "row");
      yield { ...recordToDoc(rows[i], shape, textField), file: path, line: i + 1, unit: "row" };
    } catch (err) {
      if (err instanceof RecordError) reportBad(new DataError(path, i + 1, err.message, "row"), opts.onBad);
      else if (err instanceof DataError) reportBad(err, opts.onBad);
      else throw err;
    }
  }
}

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

async function* readParquet(path: string, opts: ReadOptions): AsyncGenerator<Doc> {
  if (/\.gz$/i.test(path)) throw new Error(`${path}: gzipped Parquet is not supported (Parquet compresses its own pages)`);
  let file, metadata;
  try {
    file = await asyncBufferFromFile(path);
    metadata = await parquetMetadataAsync(file);
  } catch (err) {
    throw new Error(`${path}: not a readable Parquet file (${(err as Error).message})`);
  }
  const compressors = parquetCompressors();
  const textField = opts.textField ?? "text";
  let shape: RecordShape | null = null;
  let row = 0;
  for (const rg of metadata.row_groups) {
    const n = Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file, metadata, rowStart: row, rowEnd: row + n, compressors });
    } catch (err) {
      throw new Error(`${path}: rows ${row + 1}..${row + n}: cannot decode (${(err as Error).message})`);
    }
    opts.onBytes?.(Number(rg.total_byte_size));
    for (let i = 0; i < rows.length; i++) {
      const no = row + i + 1;
      try {
        shape ??= shapeFor(rows[i], opts, path, no, "row");
        yield { ...recordToDoc(rows[i], shape, textField), file: path, line: no, unit: "row" };
      } catch (err) {
        if (err instanceof RecordError) reportBad(new DataError(path, no, err.message, "row"), opts.onBad);
        else if (err instanceof DataError) reportBad(err, opts.onBad);
        else throw err;
      }
    }
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
  const container = containerOf(path);
  const obj = (rec: unknown, line: number, unit: "line" | "row"): Record<string, unknown> => {
    if (typeof rec !== "object" || rec === null || Array.isArray(rec))
      throw new DataError(path, line, `expected a JSON object, got ${Array.isArray(rec) ? "an array" : rec === null ? "null" : typeof rec}`, unit);
    return rec as Record<string, unknown>;
  };
  if (container === "text") throw new Error(`${path}: expected JSON lines (.jsonl), a JSON array (.json) or Parquet (.parquet)`);
  if (container === "parquet") {
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
      const rows = await parquetReadObjects({ file, metadata, rowStart: row, rowEnd: row + n, compressors });
      for (let i = 0; i < rows.length; i++) yield { rec: obj(rows[i], row + i + 1, "row"), file: path, line: row + i + 1, unit: "row" };
      row += n;
    }
    return;
  }
  if (startsWithBracket(path)) {
    let rows: unknown;
    try {
      rows = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(path)));
    } catch (err) {
      throw new DataError(path, 1, `not a valid UTF-8 JSON array (${(err as Error).message})`);
    }
    if (!Array.isArray(rows)) throw new DataError(path, 1, "expected a JSON array of records");
    for (let i = 0; i < rows.length; i++) yield { rec: obj(rows[i], i + 1, "row"), file: path, line: i + 1, unit: "row" };
    return;
  }
  for await (const batch of readLines(path)) {
    for (const l of batch) {
      if (l.text === null) throw new DataError(path, l.no, "invalid UTF-8");
      if (l.text.trim() === "") continue;
      let rec: unknown;
      try {
        rec = JSON.parse(l.text);
      } catch (err) {
        throw new DataError(path, l.no, `malformed JSON (${(err as Error).message})`);
      }
      yield { rec: obj(rec, l.no, "line"), file: path, line: l.no, unit: "line" };
    }
  }
}

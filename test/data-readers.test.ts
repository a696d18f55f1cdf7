import { after, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, mkdirSync, openSync, symlinkSync, writeFileSync, writeSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parquetWriteBuffer } from "hyparquet-writer";
import { readFiles, type Doc, type ReadOptions } from "../src/data/readers.ts";
import { expandInputs, expandInputsDetailed } from "../src/data/inputs.ts";
import { cleanDocs, cleanText, countingOnBad, splitOf, type SourceStats } from "../src/data/clean.ts";
import { DataError } from "../src/data/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "mynah-readers-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const put = (name: string, body: string | Uint8Array): string => {
  const p = join(dir, name);
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, body);
  return p;
};
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

async function collect(paths: string[], opts: ReadOptions = {}): Promise<Doc[]> {
  const out: Doc[] = [];
  for await (const d of readFiles(paths, opts)) out.push(d);
  return out;
}
const texts = (ds: Doc[]): string[] => ds.map((d) => (d.kind === "text" ? d.text : d.kind === "chat" ? JSON.stringify(d.messages) : JSON.stringify(d)));

/** Writes a Parquet file with the given columns; `schema` for nested (list of struct) columns. */
function writeParquet(name: string, columnData: { name: string; data: unknown[] }[], schema?: object[], rowGroupSize = 2): string {
  const buf = parquetWriteBuffer({ columnData: columnData as never, schema: schema as never, rowGroupSize });
  return put(name, new Uint8Array(buf));
}

const CHAT = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello." },
];

test("plain text: blank-line, line and whole-file documents; .gz; line numbers", async () => {
  const body = "para one\nstill one\n\n\npara two\n";
  const p = put("a.txt", body);
  const g = put("a.txt.gz", gzipSync(body));
  const blank = await collect([p]);
  assert.deepEqual(texts(blank), ["para one\nstill one", "para two"]);
  assert.deepEqual(blank.map((d) => d.line), [1, 5]);
  assert.deepEqual(texts(await collect([g])), texts(blank));
  assert.deepEqual(texts(await collect([p], { docSplit: "line" })), ["para one", "still one", "para two"]);
  assert.deepEqual(texts(await collect([p], { docSplit: "file" })), ["para one\nstill one\n\n\npara two\n".replace(/\n$/, "")]);
});

test("folders are read recursively and globs match, in sorted order", () => {
  put("tree/b/x.txt", "x");
  put("tree/a.txt", "a");
  put("tree/b/c/y.jsonl", "{}");
  put("tree/.hidden", "h");
  assert.deepEqual(expandInputs([join(dir, "tree")]).map((f) => f.slice(dir.length + 1)), ["tree/a.txt", "tree/b/c/y.jsonl", "tree/b/x.txt"]);
  assert.deepEqual(expandInputs([join(dir, "tree/**/*.txt")]).map((f) => f.slice(dir.length + 1)), ["tree/a.txt", "tree/b/x.txt"]);
  assert.deepEqual(expandInputs([join(dir, "tree/b/*")]).map((f) => f.slice(dir.length + 1)), ["tree/b/x.txt"]);
  assert.throws(() => expandInputs([join(dir, "tree/*.parquet")]), /no file matches/);
  assert.throws(() => expandInputs([join(dir, "nope")]), /no such file/);
});

test("JSONL text records, with --text-field", async () => {
  const p = put("t.jsonl", jsonl([{ text: "one", id: 1 }, { text: "two" }]));
  assert.deepEqual(texts(await collect([p])), ["one", "two"]);
  const q = put("body.jsonl", jsonl([{ body: "alpha" }, { body: "beta" }]));
  assert.deepEqual(texts(await collect([q], { textField: "body" })), ["alpha", "beta"]);
  await assert.rejects(collect([q]), (e: Error) => e instanceof DataError && /body\.jsonl:1: cannot tell the record format.*body/.test(e.message));
});

test("chat (OpenAI messages with system, content parts), ShareGPT and Alpaca become the same messages", async () => {
  const openai = put("c.jsonl", jsonl([{ messages: CHAT }, { messages: [{ role: "user", content: [{ type: "text", text: "H" }, { type: "text", text: "i" }] }, { role: "assistant", content: "Hello." }] }]));
  const sharegpt = put("s.jsonl", jsonl([{ conversations: [{ from: "system", value: "Be brief." }, { from: "human", value: "Hi" }, { from: "gpt", value: "Hello." }] }]));
  const alpaca = put("al.jsonl", jsonl([{ instruction: "Hi", input: "", output: "Hello.", system: "Be brief." }, { instruction: "Add", input: "2 and 2", output: "4" }]));
  const [a, b] = await collect([openai]);
  assert.deepEqual(a.kind === "chat" && a.messages, CHAT);
  assert.deepEqual(b.kind === "chat" && b.messages, CHAT.slice(1));
  const [s] = await collect([sharegpt]);
  assert.deepEqual(s.kind === "chat" && s.messages, CHAT);
  const [x, y] = await collect([alpaca]);
  assert.deepEqual(x.kind === "chat" && x.messages, CHAT);
  assert.deepEqual(y.kind === "chat" && y.messages, [{ role: "user", content: "Add\n\n2 and 2" }, { role: "assistant", content: "4" }]);
  // Alpaca as shipped: one JSON array in a .json file; records are numbered.
  const arr = put("alpaca_data.json", JSON.stringify([{ instruction: "Hi", input: "", output: "Hello.", system: "Be brief." }, { instruction: "x" }]));
  await assert.rejects(collect([arr]), /alpaca_data\.json:row 2: no "output" field/);
  const [z] = await collect([arr], { onBad: () => {} });
  assert.deepEqual(z.kind === "chat" && z.messages, CHAT);
  // Forcing a shape that does not match is a clear error.
  await assert.rejects(collect([openai], { format: "sharegpt" }), /c\.jsonl:1: no "conversations" list/);
});

test("Parquet as datasets ship it: text column, messages column (list of structs), several row groups", async () => {
  const docs = ["first", "second", "third", "fourth", "fifth"];
  const p = writeParquet("t.parquet", [{ name: "id", data: [1, 2, 3, 4, 5] }, { name: "text", data: docs }]);
  const got = await collect([p]);
  assert.deepEqual(texts(got), docs);
  assert.deepEqual(got.map((d) => d.line), [1, 2, 3, 4, 5]);
  const schema = [
    { name: "root", num_children: 1 },
    { name: "messages", repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 },
    { name: "list", repetition_type: "REPEATED", num_children: 1 },
    { name: "element", repetition_type: "OPTIONAL", num_children: 2 },
    { name: "role", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    { name: "content", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
  ];
  const convs = [CHAT, CHAT.slice(1), [{ role: "user", content: "你好" }, { role: "assistant", content: "你好！" }]];
  const c = writeParquet("c.parquet", [{ name: "messages", data: convs }], schema);
  const cg = await collect([c]);
  assert.deepEqual(cg.map((d) => d.kind === "chat" && d.messages), convs);
  // A bad conversation in Parquet names the row.
  const bad = writeParquet("bad.parquet", [{ name: "messages", data: [CHAT, [{ role: "bot", content: "x" }]] }], schema);
  await assert.rejects(collect([bad]), /bad\.parquet:row 2: messages\[0\]\.role is "bot"/);
});

/** Runs the reader + cleaner the way prepare does; returns docs, stats and skipped errors. */
async function readClean(paths: string[], skip: boolean, opts: ReadOptions = {}) {
  const stats = new Map<string, SourceStats>();
  const skipped: DataError[] = [];
  const onBad = skip ? (e: DataError) => void skipped.push(e) : undefined;
  const out = [];
  for await (const d of cleanDocs(readFiles(paths, { ...opts, onBad: countingOnBad(stats, onBad) }), { onBad }, stats)) out.push(d);
  return { out, stats, skipped };
}

test("bad input: each case names file and line; --skip-bad counts them and goes on", async () => {
  const good = { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }] };
  const lines = [
    JSON.stringify(good), // 1
    '{"messages": [ {"role": "user"', // 2 malformed JSON
    JSON.stringify({ messages: [{ role: "assistant", content: "a" }, { role: "user", content: "q" }] }), // 3 wrong order
    JSON.stringify({ messages: [{ role: "user", content: "q" }, { role: "assistant", content: "   " }] }), // 4 empty message
    JSON.stringify({ messages: [{ role: "user", content: "q", tool_calls: [] }, { role: "assistant", content: "a" }] }), // 5 unknown field
    JSON.stringify({ messages: [{ role: "user", content: "q2" }, { role: "assistant", content: "a2" }] }), // 6 fine
  ];
  const bytes = Buffer.concat([Buffer.from(lines.join("\n") + "\n"), Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a])]); // 7 invalid UTF-8
  const p = put("bad.jsonl", bytes);
  // Without --skip-bad the first bad record stops the run, naming file and line.
  await assert.rejects(readClean([p], false), /bad\.jsonl:2: malformed JSON/);
  const r = await readClean([p], true);
  assert.deepEqual(r.out.map((d) => d.line), [1, 6]);
  const msgs = r.skipped.map((e) => e.message);
  assert.equal(msgs.length, 5);
  assert.match(msgs.find((m) => m.includes(":2:"))!, /malformed JSON/);
  assert.match(msgs.find((m) => m.includes(":3:"))!, /messages\[0\]: expected a user message, got assistant/);
  assert.match(msgs.find((m) => m.includes(":4:"))!, /messages\[1\] \(assistant\): empty content/);
  assert.match(msgs.find((m) => m.includes(":5:"))!, /messages\[0\]: unknown field "tool_calls"/);
  assert.match(msgs.find((m) => m.includes(":7:"))!, /invalid UTF-8/);
  const st = r.stats.get(p)!;
  assert.equal(st.records, 7);
  assert.equal(st.bad, 5);
  assert.equal(st.docs.train, 2);
  // Each case alone stops a run without --skip-bad, naming its line.
  for (const [i, re] of [[2, /:1: malformed JSON/], [3, /:1: messages\[0\]: expected a user/], [4, /:1: messages\[1\] \(assistant\): empty/], [5, /:1: .*unknown field/]] as const) {
    await assert.rejects(readClean([put(`one${i}.jsonl`, lines[i - 1] + "\n")], false), re);
  }
  await assert.rejects(readClean([put("utf.txt", Buffer.from([0x61, 0x0a, 0xc3, 0x28, 0x0a]))], false), /utf\.txt:2: invalid UTF-8/);
});

test("cleaning: NFC, control characters, duplicates, minimum length, seeded split", async () => {
  assert.equal(cleanText("e\u0301\u0000a\tb\r\nc\u0085"), "\u00e9a\tb\nc");
  const p = put("dup.txt", "same doc\n\nother\n\nsame doc\n\ncafe\u0301\n\ncaf\u00e9\n\nx\n");
  const stats = new Map<string, SourceStats>();
  const out = [];
  for await (const d of cleanDocs(readFiles([p]), { minChars: 2, valFraction: 0.5, seed: 7 }, stats)) out.push(d);
  // "café" twice (NFD and NFC) is one document after NFC; "x" is too short.
  assert.deepEqual(out.map((d) => d.kind === "text" && d.text), ["same doc", "other", "caf\u00e9"]);
  const st = stats.get(p)!;
  assert.equal(st.duplicates, 2);
  assert.equal(st.tooShort, 1);
  // The split depends on content and seed only; about the asked fraction over many docs.
  let val = 0;
  for (let i = 0; i < 4000; i++) if (splitOf(((i * 2654435761) >>> 0).toString(16).padStart(8, "0"), 0.1, 3) === "val") val++;
  assert.ok(val > 300 && val < 500, `val share ${val}/4000`);
  assert.equal(splitOf("deadbeef", 0.3, 1), splitOf("deadbeef", 0.3, 1));
});

test("symbolic links in folders are followed (a hub snapshot), loops and broken links skipped and counted", () => {
  // A Hugging Face hub cache: snapshots/<rev>/ holds links into blobs/.
  put("hub/blobs/aaa", "first");
  put("hub/blobs/bbb", "second");
  mkdirSync(join(dir, "hub/snapshots/rev/data"), { recursive: true });
  symlinkSync("../../../blobs/aaa", join(dir, "hub/snapshots/rev/data/train.txt"));
  symlinkSync("../../blobs/bbb", join(dir, "hub/snapshots/rev/README.txt"));
  symlinkSync("../../blobs/missing", join(dir, "hub/snapshots/rev/broken.txt"));
  symlinkSync("..", join(dir, "hub/snapshots/rev/data/up")); // a loop back to rev/
  symlinkSync("data", join(dir, "hub/snapshots/rev/data-link")); // a link to a folder: followed
  const snap = join(dir, "hub/snapshots/rev");
  const { files, skipped } = expandInputsDetailed([snap]);
  const rel = (f: string): string => f.slice(snap.length + 1);
  assert.deepEqual(files.map(rel), ["README.txt", "data/train.txt"]);
  assert.deepEqual(skipped.map((x) => [rel(x.path), x.reason.replace(/ \(.*\)$/, "")]), [
    ["broken.txt", "broken symbolic link"],
    ["data/up", "link loop"],
    ["data-link/up", "link loop"],
    ["data-link/train.txt", `same file as ${join(snap, "data/train.txt")}`],
  ]);
  assert.throws(() => expandInputs([join(snap, "broken.txt")]), /broken\.txt: a broken symbolic link/);
});

test("JSON arrays: .json.gz read as an array; streamed element by element (strings with brackets, escapes, chunk edges); errors name the row", async () => {
  const rows = [
    { instruction: "Say [hi]", input: "a \"quoted\" {brace} and \\ backslash, comma", output: "hi ]" },
    { instruction: "Add", input: "2 and 2", output: "4", nested: { list: [1, [2, { x: "]" }]] } },
    { instruction: "中文", input: "", output: "好" },
  ];
  const gz = put("alpaca.json.gz", gzipSync(Buffer.from("\uFEFF  \n" + JSON.stringify(rows, null, 2))));
  const docs = await collect([gz]);
  assert.deepEqual(docs.map((d) => [d.line, d.unit, d.kind === "chat" && d.messages[0].content]), [
    [1, "row", "Say [hi]\n\na \"quoted\" {brace} and \\ backslash, comma"],
    [2, "row", "Add\n\n2 and 2"],
    [3, "row", "中文"],
  ]);
  // Elements split across every possible chunk boundary: a 3-byte high-water mark is not
  // available through the reader, so repeat one row many times past the 1 MiB read size.
  const many = Array.from({ length: 30000 }, (_, i) => ({ text: `doc ${i} says "[{,}]" \u00e9` }));
  const big = put("many.json", JSON.stringify(many));
  const got = await collect([big]);
  assert.equal(got.length, many.length);
  assert.ok(got.every((d, i) => d.kind === "text" && d.text === many[i].text && d.line === i + 1));
  // Errors: a bad element names its row; structure errors stop.
  const bad = put("bad.json", '[{"text": "ok"}, {"text": oops}, {"text": "fine"}]');
  await assert.rejects(collect([bad]), /bad\.json:row 2: malformed JSON/);
  const skipped: string[] = [];
  assert.equal((await collect([bad], { onBad: (e) => skipped.push(e.message) })).length, 2);
  assert.match(skipped[0], /row 2/);
  await assert.rejects(collect([put("trunc.json", '[{"text": "a"}, {"text": "b"')]), /trunc\.json:row 2: the file ends inside the JSON array/);
  await assert.rejects(collect([put("trail.json", '[{"text": "a"},]')]), /trail\.json:row 2: a comma before the closing \]/);
  await assert.rejects(collect([put("after.json", '[{"text": "a"}] x')]), /after\.json:row 1: text after the closing \]/);
  const badUtf8 = Buffer.concat([Buffer.from('[{"text": "a'), Buffer.from([0xff]), Buffer.from('"}, {"text": "b"}]')]);
  const bu = put("utf.json", badUtf8);
  await assert.rejects(collect([bu]), /utf\.json:row 1: invalid UTF-8/);
});

test("a JSON array larger than V8's longest string (512 Mi characters) is read, not refused as invalid UTF-8", { timeout: 180_000 }, async () => {
  // ~544 MB of ASCII in 17 elements of 32 MiB: over the 2^29 − 24 character limit of one string.
  const p = join(dir, "huge.json");
  const body = "x".repeat(32 << 20);
  const fd = openSync(p, "w");
  writeSync(fd, "[");
  for (let i = 0; i < 17; i++) writeSync(fd, `${i ? "," : ""}{"text": "${i} ${body}"}`);
  writeSync(fd, "]");
  closeSync(fd);
  try {
    let n = 0;
    for await (const d of readFiles([p])) {
      assert.ok(d.kind === "text" && d.text.startsWith(`${n} x`) && d.text.length === (32 << 20) + String(n).length + 1);
      n++;
    }
    assert.equal(n, 17);
  } finally {
    rmSync(p, { force: true });
  }
});

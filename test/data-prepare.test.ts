import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe, saveTokenizer, loadTokenizer } from "../src/tokenizer/index.ts";
import { prepareData, type Manifest } from "../src/data/prepare.ts";
import { readShardHeader, readShardTokens, splitDocs } from "../src/data/shards.ts";
import { openShardSource } from "../src/data/loader.ts";
import { renderChat, type ChatMessage } from "../src/data/chat-template.ts";

const SHARED = (process.env.MYNAH_SHARED_DATA ?? new URL("../../shared/data", import.meta.url).pathname) + "/";
const TEXT = ["text/tinyshakespeare.txt", "text/fortunes_zh.txt"].map((f) => SHARED + f);
const CHAT = ["chat/chatterbot_en.jsonl", "chat/chatterbot_zh.jsonl"].map((f) => SHARED + f);
const have = [...TEXT, ...CHAT].every(existsSync);
const skip = have ? false : "../shared/data not present";

const tmp = mkdtempSync(join(tmpdir(), "mynah-prepare-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const tokDir = join(tmp, "tok");

/** Independent cleaning reference: code points < 0x20 except tab/newline, 0x7F–0x9F removed; NFC. */
function refClean(s: string): string {
  let out = "";
  for (const ch of s.normalize("NFC")) {
    const c = ch.codePointAt(0)!;
    if ((c < 0x20 && c !== 9 && c !== 10) || (c >= 0x7f && c <= 0x9f)) continue;
    out += ch;
  }
  return out;
}

/** The documents a run should produce, per file, from a plain reading of the files. */
function reference(): { file: string; records: number; docs: string[]; tokens: number }[] {
  const tok = loadTokenizer(tokDir);
  const seen = new Set<string>();
  const out = [];
  for (const f of TEXT) {
    // Paragraphs: runs of lines separated by lines holding only whitespace.
    const paras = readFileSync(f, "utf8").split(/\n(?:[ \t\r\u3000]*\n)+/).map((p) => p.replace(/\n+$/, "")).filter((p) => p.trim() !== "");
    const docs = paras.map(refClean).filter((d) => d.trim() !== "" && !seen.has("t" + d) && seen.add("t" + d));
    out.push({ file: f, records: paras.length, docs, tokens: docs.reduce((n, d) => n + 1 + tok.encode(d).length, 0) });
  }
  for (const f of CHAT) {
    const rows = readFileSync(f, "utf8").split("\n").filter((l) => l.trim() !== "");
    const convs = rows.map((l) => (JSON.parse(l).messages as ChatMessage[]).map((m) => ({ role: m.role, content: refClean(m.content) })));
    const docs = convs.map((c) => JSON.stringify(c)).filter((k) => !seen.has("c" + k) && seen.add("c" + k));
    const tokens = docs.reduce((n, k) => n + 1 + renderChat(tok, JSON.parse(k)).ids.length, 0);
    out.push({ file: f, records: rows.length, docs: docs.map((k) => tok.decode(renderChat(tok, JSON.parse(k)).ids)), tokens });
  }
  return out;
}

/** Decoded documents of a split, in shard order. */
function decodeSplit(dir: string, m: Manifest, split: "train" | "val"): string[] {
  const tok = loadTokenizer(tokDir);
  const docs: string[] = [];
  for (const s of m.splits[split].shards) {
    const p = join(dir, s.file);
    const h = readShardHeader(p);
    assert.equal(h.bytesPerToken, 2);
    for (const d of splitDocs(readShardTokens(p, h, 0, h.tokens), m.tokenizer.eot)) docs.push(tok.decode(d));
  }
  return docs;
}

const OPTS = { clean: { valFraction: 0.1, seed: 5 }, shardTokens: 40_000 };
let manifest: Manifest;
const out1 = join(tmp, "p1");

test("prepare on the shared corpora: counts per source, decode(shards) = cleaned input, disjoint splits", { skip }, async () => {
  const sample = [...TEXT, ...CHAT].map((f) => readFileSync(f, "utf8").slice(0, 200_000));
  saveTokenizer(tokDir, trainBpe(sample, { vocabSize: 256 + 8 + 500 }));
  manifest = await prepareData({ inputs: [...TEXT, ...CHAT], out: out1, tokenizer: tokDir, threads: 1, ...OPTS });
  const ref = reference();
  for (const r of ref) {
    const s = manifest.sources.find((x) => x.file === r.file)!;
    assert.equal(s.records, r.records, `${r.file}: records`);
    assert.equal(s.docs.train + s.docs.val, r.docs.length, `${r.file}: documents kept`);
    assert.equal(s.tokens.train + s.tokens.val, r.tokens, `${r.file}: tokens`);
  }
  assert.ok(manifest.splits.train.shards.length > 1, "several shards");
  const train = decodeSplit(out1, manifest, "train");
  const val = decodeSplit(out1, manifest, "val");
  const all = ref.flatMap((r) => r.docs);
  // The shards hold exactly the cleaned documents, each side in input order, none on both sides.
  assert.deepEqual([...train, ...val].sort(), [...all].sort());
  const valSet = new Set(val);
  assert.ok(train.every((d) => !valSet.has(d)), "no document in both splits");
  assert.deepEqual(all.filter((d) => !valSet.has(d)), train);
  assert.ok(val.length > all.length * 0.05 && val.length < all.length * 0.15, `val ${val.length} of ${all.length}`);
});

test("2 threads write the same shards as 1; an interrupted run resumes to the same result", { skip }, async () => {
  const out2 = join(tmp, "p2");
  await prepareData({ inputs: [...TEXT, ...CHAT], out: out2, tokenizer: tokDir, threads: 2, ...OPTS });
  const files = readdirSync(out1).filter((f) => f.endsWith(".bin")).sort();
  assert.deepEqual(readdirSync(out2).filter((f) => f.endsWith(".bin")).sort(), files);
  for (const f of files) assert.ok(readFileSync(join(out1, f)).equals(readFileSync(join(out2, f))), f);

  const out3 = join(tmp, "p3");
  let calls = 0;
  await assert.rejects(
    prepareData({
      inputs: [...TEXT, ...CHAT], out: out3, tokenizer: tokDir, threads: 1, ...OPTS, progressIntervalMs: 0,
      onProgress: () => {
        if (existsSync(join(out3, ".prepare-state.json")) && ++calls > 1) throw new Error("interrupted");
      },
    }),
    /interrupted/,
  );
  assert.ok(!existsSync(join(out3, "manifest.json")));
  assert.ok(readdirSync(out3).every((f) => !f.includes(".tmp-")), "no temp shard left behind");
  const done = JSON.parse(readFileSync(join(out3, ".prepare-state.json"), "utf8")).splits.train.shards.length;
  assert.ok(done >= 1 && done < manifest.splits.train.shards.length, `interrupted after ${done} shards`);
  const m3 = await prepareData({ inputs: [...TEXT, ...CHAT], out: out3, tokenizer: tokDir, threads: 1, ...OPTS });
  assert.deepEqual(m3.splits, manifest.splits);
  assert.deepEqual(m3.sources, manifest.sources);
  for (const f of files) assert.ok(readFileSync(join(out1, f)).equals(readFileSync(join(out3, f))), `resumed ${f}`);
  // Other options into the same folder need --force.
  await assert.rejects(prepareData({ inputs: TEXT, out: out3, tokenizer: tokDir, threads: 1 }), /--force/);
});

test("loader: one epoch holds every document once; targets are inputs shifted; state/restore is exact", { skip }, () => {
  const src = openShardSource(out1, "train", 11);
  assert.equal(src.docs, manifest.splits.train.docs);
  assert.equal(src.tokens, manifest.splits.train.tokens);
  const B = 3;
  const T = 97;
  const stream: number[] = [];
  let saved: unknown = null;
  const after: number[][] = [];
  for (let k = 0; stream.length < src.tokens; k++) {
    if (k === 5) saved = src.state();
    const { inputs, targets } = src.nextBatch(B, T);
    assert.equal(inputs.length, B * T);
    for (let i = 0; i + 1 < inputs.length; i++) assert.equal(targets[i], inputs[i + 1]);
    if (k >= 5 && k < 8) after.push([...inputs, ...targets]);
    stream.push(...inputs);
  }
  // The first epoch: the documents of the split in some order, each exactly once.
  const tok = loadTokenizer(tokDir);
  const epoch = splitDocs(stream.slice(0, src.tokens), src.eot).map((d) => tok.decode(d));
  assert.equal(stream[0], src.eot);
  assert.deepEqual(epoch.sort(), decodeSplit(out1, manifest, "train").sort());
  const again = openShardSource(out1, "train", 11);
  again.restore(JSON.parse(JSON.stringify(saved)));
  for (const want of after) {
    const { inputs, targets } = again.nextBatch(B, T);
    assert.deepEqual([...inputs, ...targets], want);
  }
  // Reading from the files instead of memory gives the same stream.
  const fromDisk = openShardSource(out1, "train", 11, { residentBytes: 0 });
  for (let k = 0; k < 4; k++) assert.deepEqual([...fromDisk.nextBatch(B, T).inputs], stream.slice(k * B * T, (k + 1) * B * T));
  fromDisk.close();
  // Another seed, another order; a position from another seed is refused.
  const other = openShardSource(out1, "train", 12);
  assert.notDeepEqual([...other.nextBatch(B, T).inputs], stream.slice(0, B * T));
  assert.throws(() => other.restore(saved), /seed 11/);
  src.close();
  again.close();
  other.close();
});

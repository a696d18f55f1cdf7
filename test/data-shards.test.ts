/**
 * Shard format 2: the document index written at prepare time, checks on open and on read,
 * range-checked restore, and the compact dedup set. Self-contained (generated text).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveTokenizer, trainBpe } from "../src/tokenizer/index.ts";
import { prepareData, type Manifest } from "../src/data/prepare.ts";
import { HEADER_BYTES, readShardHeader, readShardIndex, readShardTokens } from "../src/data/shards.ts";
import { openShardSource } from "../src/data/loader.ts";
import { HashSet96 } from "../src/data/hash-set.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { pretrain, PretrainSettingsError, type PretrainOptions } from "../src/train/pretrain.ts";

const tmp = mkdtempSync(join(tmpdir(), "mynah-shards-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const tokDir = join(tmp, "tok");
const input = join(tmp, "docs.txt");
let m: Manifest;
let n = 0;
const fresh = async (): Promise<string> => {
  const out = join(tmp, `p${n++}`);
  m = await prepareData({ inputs: [input], out, tokenizer: tokDir, threads: 1, shardTokens: 400, clean: { valFraction: 0 } });
  return out;
};

before(async () => {
  const words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"];
  const docs: string[] = [];
  let x = 3;
  for (let d = 0; d < 120; d++) {
    let s = `doc ${d}:`;
    for (let w = 0; w < 5 + (d % 13); w++) s += " " + words[(x = (x * 1103515245 + 12345) >>> 0) % words.length];
    docs.push(s);
  }
  writeFileSync(input, docs.join("\n\n") + "\n");
  saveTokenizer(tokDir, trainBpe([docs.join("\n")], { vocabSize: 256 + 40 + 8 }));
});

test("each shard ends with its document index: starts of documents, each opening with <|endoftext|>", async () => {
  const out = await fresh();
  assert.ok(m.splits.train.shards.length >= 3, "several shards");
  let docs = 0;
  for (const s of m.splits.train.shards) {
    const p = join(out, s.file);
    const h = readShardHeader(p);
    assert.equal(statSync(p).size, HEADER_BYTES + h.tokens * h.bytesPerToken + 8 * h.docs);
    const starts = readShardIndex(p, h);
    const toks = readShardTokens(p, h, 0, h.tokens);
    const eotAt = [...toks.keys()].filter((i) => toks[i] === m.tokenizer.eot);
    assert.deepEqual([...starts], eotAt);
    docs += h.docs;
  }
  assert.equal(docs, 120);
});

test("a damaged document start is found when read, naming the shard (not only in the first shard)", async () => {
  const out = await fresh();
  const file = m.splits.train.shards[1].file;
  const p = join(out, file);
  const fd = openSync(p, "r+");
  writeSync(fd, Buffer.from([7, 0]), 0, 2, HEADER_BYTES); // the first token of shard 1: <|endoftext|> → id 7
  closeSync(fd);
  const src = openShardSource(out, "train", 1);
  assert.throws(() => {
    for (let k = 0; k < 200; k++) src.nextBatch(4, 16);
  }, new RegExp(`${file}: document at token 0 starts with id 7, not <\\|endoftext\\|>`));
  src.close();
});

test("a truncated shard or a damaged index is refused at open", async () => {
  const out = await fresh();
  const p = join(out, m.splits.train.shards[0].file);
  const h = readShardHeader(p);
  const fd = openSync(p, "r+");
  const bad = Buffer.alloc(8);
  bad.writeBigUInt64LE(BigInt(h.tokens + 5));
  writeSync(fd, bad, 0, 8, HEADER_BYTES + h.tokens * h.bytesPerToken + 8);
  closeSync(fd);
  assert.throws(() => openShardSource(out, "train", 1), /document index entry 1 is \d+, not between 0 and \d+ \(damaged shard\)/);
  truncateSync(p, statSync(p).size - 1);
  assert.throws(() => openShardSource(out, "train", 1), /truncated or damaged shard/);
});

test("restore() refuses positions outside the data", async () => {
  const out = await fresh();
  const src = openShardSource(out, "train", 3);
  const ok = src.state();
  const bad = (o: object, re: RegExp): void => assert.throws(() => src.restore({ ...ok, ...o }), re);
  bad({ doc: 120 }, /0 ≤ doc < 120/);
  bad({ doc: -1 }, /0 ≤ doc < 120/);
  bad({ epoch: -1 }, /epoch ≥ 0/);
  bad({ offset: 1e6 }, /offset 1000000 is past the end of document 0 of epoch 0/);
  bad({ offset: 0.5 }, /bad position/);
  src.restore({ ...ok, epoch: 2, doc: 119, offset: 1 });
  assert.equal(src.nextBatch(1, 4).inputs.length, 4);
  src.close();
});

test("a folder from an older mynah (manifest version 1) gets a clear error", async () => {
  const out = await fresh();
  const mp = join(out, "manifest.json");
  writeFileSync(mp, JSON.stringify({ ...JSON.parse(readFileSync(mp, "utf8")), version: 1 }));
  assert.throws(() => openShardSource(out, "train", 1), /prepared by an older mynah \(manifest version 1.*mynah data prepare .*--force/);
});

test("HashSet96: exact membership over 200k keys, through growth, in ≤ 34 bytes a key", () => {
  const set = new HashSet96(16);
  const key = (i: number): Buffer => createHash("sha1").update(String(i)).digest();
  for (let i = 0; i < 200_000; i++) assert.equal(set.add(key(i)), true);
  for (let i = 0; i < 200_000; i += 7) assert.equal(set.add(key(i)), false);
  assert.equal(set.size, 200_000);
  assert.ok(set.bytes / set.size <= 34, `${set.bytes / set.size} bytes a key`);
  assert.equal(set.add(Buffer.alloc(20)), true); // the all-zero key is a key like any other
  assert.equal(set.add(Buffer.alloc(20)), false);
});

test("the prepared folder holds its tokenizer: training survives a moved or retrained source, a changed copy is refused", async (t) => {
  const src = join(tmp, "tok-src");
  saveTokenizer(src, trainBpe([readFileSync(input, "utf8")], { vocabSize: 256 + 30 + 8 }));
  const out = join(tmp, "self-contained");
  const m2 = await prepareData({ inputs: [input], out, tokenizer: src, threads: 2, clean: { valFraction: 0.1 } });
  assert.equal(m2.tokenizer.file, "tokenizer/tokenizer.json");
  assert.equal(readFileSync(join(out, "tokenizer", "tokenizer.json"), "utf8"), readFileSync(join(src, "tokenizer.json"), "utf8"));
  assert.equal(readFileSync(join(out, "tokenizer", "tokenizer_config.json"), "utf8"), readFileSync(join(src, "tokenizer_config.json"), "utf8"));
  // The source tokenizer is retrained in place (another vocabulary), then the folder is moved.
  saveTokenizer(src, trainBpe(["something else entirely, another corpus"], { vocabSize: 256 + 5 + 8 }));
  const moved = join(tmp, "moved");
  renameSync(out, moved);
  const run = join(tmp, "run-prepared");
  t.after(() => rmSync(run, { recursive: true, force: true }));
  const o: PretrainOptions = {
    data: [moved], valFraction: 0, model: { preset: "tiny", layers: 1, width: 32, heads: 2 },
    loop: { steps: 2, batchSize: 2, seqLen: 16, gradAccum: 1, schedule: "cosine", warmup: 0, minLrRatio: 0.1, optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3 },
            clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 1 },
    evalBatches: 1, sampleTokens: 0, out: run, resume: false, keep: 1, backend: referenceBackend, write: () => {}, tty: false, logEvery: 10,
  };
  const r = await pretrain(o);
  assert.equal(r.config.vocabSize, m2.tokenizer.vocabSize);
  // The checkpoint carries the tokenizer the shards were made with.
  assert.equal(readFileSync(join(run, "ckpt-000002", "tokenizer.json"), "utf8"), readFileSync(join(moved, "tokenizer", "tokenizer.json"), "utf8"));
  // A copy changed after preparing no longer matches the recorded digest.
  saveTokenizer(join(moved, "tokenizer"), trainBpe(["x y z"], { vocabSize: 256 + 2 + 8 }));
  await assert.rejects(pretrain({ ...o, force: true }), (e: Error) => e instanceof PretrainSettingsError &&
    /--data .*moved\/tokenizer\/tokenizer\.json: SHA-256 \w+… differs from the \w+… the shards were made with/.test(e.message));
});

test("2 threads (cleaning on the workers) write what 1 thread writes; an interrupted 2-thread run resumes to the same bytes", async () => {
  // Duplicates, too-short documents and control characters, so dedup and cleaning decide what is written.
  const noisy = join(tmp, "noisy.txt");
  const base = readFileSync(input, "utf8").trim().split("\n\n");
  // ~1 MB in 9,600 distinct documents: several batches of work, so the run can be interrupted midway.
  const many = Array.from({ length: 80 }, (_, k) => base.map((d) => `${k} ${d}`).join("\n\n")).join("\n\n");
  writeFileSync(noisy, many + "\n\nx\n\ndoc 3: again\u0007\n\n" + base.map((d) => `0 ${d}`).join("\n\n"));
  const opts = { inputs: [noisy], tokenizer: tokDir, shardTokens: 20_000, clean: { valFraction: 0.2, seed: 3, minChars: 2 } };
  // Batches tokenized per thread, from the last progress report: [calling thread, worker 1, ...].
  const run = async (out: string, threads: number, workersOnly = false): Promise<{ m: Manifest; on: number[] }> => {
    let on: number[] = [];
    const m = await prepareData({ ...opts, out: join(tmp, out), threads, workersOnly, onProgress: (p) => (on = p.encodedOn) });
    return { m, on };
  };
  const { m: one, on: on1 } = await run("r1", 1);
  assert.equal(on1.length, 1);
  assert.ok(on1[0] >= 3, `batches ${on1}`);
  // Every batch through the worker (cleaned and tokenized there), and spread over the calling thread and two workers.
  const { m: two, on: on2 } = await run("r2", 2, true);
  assert.deepEqual(on2, [0, on1[0]]);
  const { m: mixed, on: on3 } = await run("r2b", 3);
  assert.equal(on3.reduce((a, b) => a + b, 0), on1[0]);
  for (const m of [two, mixed]) {
    assert.deepEqual(m.splits, one.splits);
    assert.deepEqual(m.sources, one.sources);
    for (const s of [...one.splits.train.shards, ...one.splits.val.shards])
      assert.ok(readFileSync(join(tmp, "r1", s.file)).equals(readFileSync(join(tmp, m === two ? "r2" : "r2b", s.file))), s.file);
  }
  assert.equal(one.sources[0].duplicates, 120);
  assert.equal(one.sources[0].tooShort, 1);
  const out = join(tmp, "r3");
  let calls = 0;
  await assert.rejects(prepareData({ ...opts, out, threads: 2, progressIntervalMs: 0, onProgress: () => {
    if (existsSync(join(out, ".prepare-state.json")) && ++calls > 2) throw new Error("interrupted");
  } }), /interrupted/);
  const finished = JSON.parse(readFileSync(join(out, ".prepare-state.json"), "utf8")).splits;
  assert.ok(finished.train.docs > 0);
  const three = await prepareData({ ...opts, out, threads: 2 });
  assert.deepEqual(three.splits, one.splits);
  assert.deepEqual(three.sources, one.sources);
  for (const s of [...one.splits.train.shards, ...one.splits.val.shards])
    assert.ok(readFileSync(join(tmp, "r1", s.file)).equals(readFileSync(join(out, s.file))), s.file);
});

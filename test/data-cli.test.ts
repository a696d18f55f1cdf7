import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { registerData } from "../src/cli/data.ts";
import { trainBpe, saveTokenizer } from "../src/tokenizer/index.ts";

/** Runs `mynah data ...` in-process; returns what it printed. */
async function run(args: string[]): Promise<{ out: string; err: string }> {
  const program = new Command().exitOverride();
  registerData(program);
  let out = "";
  let err = "";
  const log = console.log;
  const write = process.stderr.write.bind(process.stderr);
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    await program.parseAsync(["node", "mynah", "data", ...args]);
  } finally {
    console.log = log;
    process.stderr.write = write;
  }
  return { out, err };
}

test("mynah data prepare: summary of read, skipped and written; bad records stop the run without --skip-bad", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-data-cli-"));
  const tok = join(dir, "tok");
  saveTokenizer(tok, trainBpe(["hello world, this is a test of the data command"], { vocabSize: 256 + 8 + 10 }));
  const f = join(dir, "mixed.jsonl");
  writeFileSync(f, ['{"text": "hello world"}', "{oops", '{"text": "hello world"}', '{"text": "a test"}'].join("\n") + "\n");
  await assert.rejects(run(["prepare", f, "--tokenizer", tok, "--out", join(dir, "a"), "--threads", "1"]), /mixed\.jsonl:2: malformed JSON/);
  assert.ok(!existsSync(join(dir, "a", "manifest.json")));
  const r = await run(["prepare", f, "--tokenizer", tok, "--out", join(dir, "b"), "--threads", "1", "--skip-bad", "--val-fraction", "0"]);
  assert.match(r.err, /skipped .*mixed\.jsonl:2: malformed JSON/);
  // records 4, bad 1, duplicates 1, short 0, train docs 2
  assert.match(r.out, /mixed\.jsonl\s+4\s+1\s+1\s+0\s+2\s+0\s/);
  assert.match(r.out, /1 bad records skipped/);
  const again = await run(["inspect", join(dir, "b")]);
  assert.match(again.out, /mixed\.jsonl\s+4\s+1\s+1\s+0\s+2\s+0\s/);
  await assert.rejects(run(["prepare", f, "--tokenizer", tok, "--out", join(dir, "c"), "--format", "csv"]), /option '--format <format>' argument 'csv' is invalid\. Allowed choices are auto, text/);
  rmSync(dir, { recursive: true, force: true });
});

test("mynah data prepare: a run that produces no documents is an error naming each input and why", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-data-empty-"));
  const tok = join(dir, "tok");
  saveTokenizer(tok, trainBpe(["hello world, this is a test of the data command"], { vocabSize: 256 + 8 + 10 }));
  const empty = join(dir, "empty.txt");
  writeFileSync(empty, "");
  const blank = join(dir, "blank.txt");
  writeFileSync(blank, "\n  \n\n");
  const short = join(dir, "short.jsonl");
  writeFileSync(short, ['{"text": "hi"}', '{"text": "yo"}', '{"text": "\\u0007"}'].join("\n") + "\n");
  const dups = join(dir, "dups.txt");
  writeFileSync(dups, "hi\n");
  const out = join(dir, "out");
  await assert.rejects(run(["prepare", empty, blank, short, dups, "--tokenizer", tok, "--out", out, "--threads", "1", "--min-chars", "3"]), (e: Error) => {
    assert.match(e.message, /^no documents to write; nothing was prepared:/);
    assert.match(e.message, /empty\.txt: empty \(no documents or records\)/);
    assert.match(e.message, /blank\.txt: empty/);
    assert.match(e.message, /short\.jsonl: all 3 records dropped: 3 shorter than --min-chars 3 after cleaning/);
    assert.match(e.message, /dups\.txt: all 1 record dropped: 1 shorter than --min-chars 3/);
    return true;
  });
  assert.ok(!existsSync(join(out, "manifest.json")), "no manifest for an empty run");
  // Duplicates: the second file repeats the first's only document.
  const a = join(dir, "a.txt"), b = join(dir, "b.txt");
  writeFileSync(a, "the same words\n");
  writeFileSync(b, "the same words\n");
  const r = await run(["prepare", a, b, "--tokenizer", tok, "--out", join(dir, "out2"), "--threads", "1", "--val-fraction", "0"]);
  assert.match(r.out, /1 train \+ 0 val shards/);
  await assert.rejects(run(["prepare", b, b, "--tokenizer", tok, "--out", join(dir, "out3"), "--threads", "1", "--min-chars", "100"]),
    /b\.txt: all 1 record dropped: 1 shorter than --min-chars 100/);
  rmSync(dir, { recursive: true, force: true });
});

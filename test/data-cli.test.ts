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

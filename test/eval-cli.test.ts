/**
 * `mynah eval` as a user runs it (the CLI in a child process): every task kind on two models,
 * results identical with 1 and 2 compute threads, the results file carrying model and task
 * file digests, the side-by-side table, and a bad task file refused with its line before any
 * model runs.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeModelFolder } from "./helpers/eval-model.ts";
import type { EvalResults } from "../src/eval/run.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tmp = mkdtempSync(join(tmpdir(), "mynah-eval-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const code = `import(${JSON.stringify(join(root, "src/cli/main.ts"))}).then((m) => m.main(["node", "mynah", "eval", ...${JSON.stringify(args)}]))` +
    `.catch((e) => { process.stderr.write("mynah: " + e.message + "\\n"); process.exit(1); })`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e", code], { cwd: root, encoding: "utf8", timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

const m1 = join(tmp, "runA", "model"), m2 = join(tmp, "runB", "model");
makeModelFolder(m1, 1);
makeModelFolder(m2, 2);
const files = {
  mc: join(tmp, "mmlu.jsonl"), arc: join(tmp, "arc.jsonl"), exact: join(tmp, "gsm8k.jsonl"), text: join(tmp, "val.txt"), chat: join(tmp, "chat.jsonl"), prompts: join(tmp, "prompts.jsonl"),
};
writeFileSync(files.mc, jsonl([
  { question: "What is 12 + 30?", choices: ["40", "42", "44", "32"], answer: 1 },
  { question: "The capital of Peru?", choices: ["Paris", "Lima", "北京"], answer: 1 },
  { question: "How many legs does a spider have?", choices: ["six", "eight"], answer: 1 },
]));
writeFileSync(files.arc, jsonl([{ question: "The cat sat on the", choices: { text: ["mat", "dog", "park"], label: ["A", "B", "C"] }, answerKey: "A" }]));
writeFileSync(files.exact, jsonl([{ question: "What is 12 + 30?", answer: "12 + 30 = 42\n#### 42" }, { question: "What is 2 + 2?", answer: "#### 4" }]));
writeFileSync(files.text, "The dog ran in the park.\n\nParis is the capital of France. 你好。\n");
writeFileSync(files.chat, jsonl([{ messages: [{ role: "user", content: "hello" }, { role: "assistant", content: "Hi! 你好。" }] },
  { messages: [{ role: "user", content: "What is 2 + 2?" }, { role: "assistant", content: "4" }, { role: "user", content: "and 3 + 3?" }, { role: "assistant", content: "6" }] }]));
writeFileSync(files.prompts, jsonl([{ messages: [{ role: "user", content: "tell me a secret" }, { role: "assistant", content: "no" }] }]));

const tasks = [`mc:${files.mc}`, `mc:${files.arc}`, `exact:${files.exact}`, `bpb:${files.text}`, `chat-loss:${files.chat}`, `screen:${files.prompts}`, "skills"];
const common = ["--model", m1, m2, "--task", ...tasks, "--max-new-tokens", "12", "--per-skill", "2", "--batch", "3"];

test("mynah eval: every kind on two models; identical results with 1 and 2 threads; digests in the results file", { timeout: 600_000 }, () => {
  const out1 = join(tmp, "r1.json"), out2 = join(tmp, "r2.json");
  const a = cli([...common, "--threads", "1", "--out", out1]);
  assert.equal(a.status, 0, a.stderr);
  const b = cli([...common, "--threads", "2", "--out", out2]);
  assert.equal(b.status, 0, b.stderr);
  const r1 = JSON.parse(readFileSync(out1, "utf8")) as EvalResults, r2 = JSON.parse(readFileSync(out2, "utf8")) as EvalResults;
  assert.equal(r1.machine.threads, 1);
  assert.equal(r2.machine.threads, Math.min(2, r2.machine.cpus));
  assert.equal(r1.results.length, 2 * tasks.length);
  // The same numbers, to the last bit, whatever the thread count.
  assert.deepEqual(r2.results.map((r) => [r.model, r.task, r.metrics]), r1.results.map((r) => [r.model, r.task, r.metrics]));
  // Identity: the weights' and the task files' SHA-256, and the settings.
  const sha = (p: string): string => createHash("sha256").update(readFileSync(p)).digest("hex");
  assert.deepEqual(r1.models.map((m) => m.sha256), [sha(join(m1, "model.safetensors")), sha(join(m2, "model.safetensors"))]);
  assert.notEqual(r1.models[0].sha256, r1.models[1].sha256);
  assert.equal(r1.tasks[0].files[0].sha256, sha(files.mc));
  assert.equal(r1.settings.batch, 3);
  assert.equal(r1.settings.maxNewTokens, 12);
  // Every kind produced its numbers.
  const m = (task: number, model = 0): Record<string, unknown> => r1.results.find((r) => r.task === task && r.model === model)!.metrics;
  assert.equal(m(0).questions, 3);
  assert.equal(m(0).mode, "chat");
  assert.ok(Math.abs(Number(m(0).random) - (1 / 4 + 1 / 3 + 1 / 2) / 3) < 1e-12);
  assert.equal(m(1).shape, "arc");
  assert.equal(m(2).questions, 2);
  assert.ok(Number(m(3).bpb) > 0 && Number(m(3).tokens) > 10);
  assert.ok(Number(m(4).loss) > 0 && m(4).conversations === 2);
  assert.equal(m(5).prompts, 1);
  assert.equal(m(6).questions, 12);
  // The table puts the two models side by side (their names are the run folders).
  assert.match(a.stdout, /\| task +\| metric +\| runA\/model +\| runB\/model +\|/);
  assert.match(a.stdout, /accuracy \(log-likelihood\)/);
  assert.match(a.stdout, /random baseline +\| 36\.1%/);
  assert.match(a.stdout, /bits per byte/);
});

test("mynah eval: a bad task file is refused with its line before any model runs; bad flags name the flag", { timeout: 120_000 }, () => {
  const bad = join(tmp, "bad.jsonl"), out = join(tmp, "bad-results.json");
  writeFileSync(bad, jsonl([{ question: "Q", choices: ["a", "b"], answer: 0 }, { question: "Q", choices: ["a", "b"], answer: 0 }]) + "{oops\n");
  const r = cli(["--model", m1, "--task", `mc:${bad}`, "--out", out]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.jsonl:3: malformed JSON/);
  assert.ok(!existsSync(out));
  for (const [flags, re] of [
    [["--limit", "0"], /option '--limit <n>' argument '0' is invalid\. expected an integer ≥ 1, got "0"/],
    [["--samples", "3", "--temperature", "0"], /--samples > 1 needs --temperature > 0/],
    [["--chat", "maybe"], /option '--chat <mode>' argument 'maybe' is invalid\. Allowed choices are auto, on, off/],
    [["--top-p", "2"], /option '--top-p <x>' argument '2' is invalid\. expected a number in \(0, 1\], got "2"/],
  ] as [string[], RegExp][]) {
    const x = cli(["--model", m1, "--task", `mc:${files.mc}`, ...flags]);
    assert.equal(x.status, 1);
    assert.match(x.stderr, re);
  }
  const od = cli(["--model", m1, "--task", `mc:${files.mc}`, "--out", join(tmp, "no-such-dir", "r.json")]);
  assert.match(od.stderr, /--out .*r\.json: folder .*no-such-dir does not exist/);
  const nm = cli(["--model", join(tmp, "nope"), "--task", `mc:${files.mc}`]);
  assert.match(nm.stderr, /--model .*nope: no such folder/);
});

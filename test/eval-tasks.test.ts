/**
 * Task files and answer extraction: the public sets' shapes are detected (JSONL and Parquet),
 * bad records are refused with file and line, and answers are extracted from tricky replies.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parquetWriteFile } from "hyparquet-writer";
import { answersMatch, extractAnswer, gsm8kReference, lastNumber, normalizeNumber, parseExtractor, passAtK } from "../src/eval/extract.ts";
import { loadExact, loadMc, parseTaskSpec } from "../src/eval/tasks.ts";
import { wilson } from "../src/eval/stats.ts";

const dir = mkdtempSync(join(tmpdir(), "mynah-tasks-"));
const put = (name: string, lines: unknown[]): string => {
  const p = join(dir, name);
  writeFileSync(p, lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l))).join("\n") + "\n");
  return p;
};

test("extraction: GSM8K references and tricky replies", () => {
  assert.equal(gsm8kReference("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"), "72");
  assert.equal(gsm8kReference("#### 1,234"), "1234");
  assert.equal(gsm8kReference("no marker 5"), null);
  const cases: [string, string | null][] = [
    ["She has 5 apples, then buys 3 more, so 8 in all.", "8"],
    ["The total is $1,234.50.", "1234.5"],
    ["First 12, no wait, 15", "15"],
    ["Step 1: 3 + 4 = 7\n#### 7\nExtra: 99", "7"],          // #### wins over the last number
    ["The answer is 42. Check: 6 × 7 = 42, and 40 + 2", "42"], // "answer is" wins over later numbers
    ["答案是 36。", "36"],
    ["结果为４２", "42"],                                       // full-width digits
    ["It drops to −7 degrees", "-7"],                          // Unicode minus
    ["about 2.50 dollars", "2.5"],
    ["1,000,000 people", "1000000"],
    ["Answer: 3.", "3"],
    ["no number here", null],
    ["", null],
  ];
  for (const [reply, want] of cases) assert.equal(extractAnswer(reply), want, JSON.stringify(reply));
  assert.equal(lastNumber("in 2020 there were 3,5 x"), "5"); // "3,5" is not a thousands group
  assert.equal(normalizeNumber("+5"), "5");
  assert.equal(normalizeNumber("5%"), "5");
  assert.equal(normalizeNumber("five"), null);
  assert.ok(answersMatch("72.0", "72"));
  assert.ok(!answersMatch("720", "72"));
  assert.ok(!answersMatch(null, "72"));
  assert.ok(answersMatch("Paris.", "paris"));
  // a user regex: the first group is the answer
  const re = parseExtractor("capital is (\\w+)");
  assert.equal(extractAnswer("I think the capital is Lima, 3 km away", re), "lima");
  assert.equal(extractAnswer("2 and 3", parseExtractor("last-number")), "3");
  assert.throws(() => parseExtractor("(unclosed"), /--extract: not a valid regular expression/);
});

test("pass@k: the unbiased estimator against direct counting", () => {
  assert.equal(passAtK(5, 0, 1), 0);
  assert.equal(passAtK(5, 5, 3), 1);
  assert.ok(Math.abs(passAtK(5, 2, 1) - 2 / 5) < 1e-12);
  // 1 − C(3,2)/C(5,2) = 1 − 3/10
  assert.ok(Math.abs(passAtK(5, 2, 2) - 0.7) < 1e-12);
  assert.equal(passAtK(4, 1, 4), 1);
});

test("wilson: the 95 % interval of known cases", () => {
  // 0 of 10: [0, 0.2775]; 5 of 10: [0.2366, 0.7634] (Wilson 1927; e.g. Newcombe 1998, table I).
  const a = wilson(0, 10), b = wilson(5, 10);
  assert.equal(a.lo, 0);
  assert.ok(Math.abs(a.hi - 0.2775) < 1e-4, String(a.hi));
  assert.ok(Math.abs(b.lo - 0.2366) < 1e-4 && Math.abs(b.hi - 0.7634) < 1e-4, JSON.stringify(b));
});

test("mc files: ARC (flat and nested), MMLU (index and letter), HellaSwag; JSONL and Parquet", async () => {
  const arc = await loadMc(put("arc.jsonl", [{ question: "Q?", choices: { text: ["a", "b", "c"], label: ["1", "2", "3"] }, answerKey: "2" }]));
  assert.deepEqual(arc[0], { where: `${join(dir, "arc.jsonl")}:1`, shape: "arc", question: "Q?", choices: ["a", "b", "c"], labels: ["1", "2", "3"], answer: 1 });
  const nested = await loadMc(put("arc-orig.jsonl", [{ id: "x", question: { stem: "S?", choices: [{ text: "p", label: "A" }, { text: "q", label: "B" }] }, answerKey: "B" }]));
  assert.equal(nested[0].question, "S?");
  assert.equal(nested[0].answer, 1);
  const mmlu = await loadMc(put("mmlu.jsonl", [{ question: "Q", subject: "x", choices: ["w", "x", "y", "z"], answer: 3 }, { question: "Q2", choices: ["w", "x"], answer: "B" }]));
  assert.deepEqual(mmlu.map((q) => [q.shape, q.answer, q.labels]), [["mmlu", 3, ["A", "B", "C", "D"]], ["mmlu", 1, ["A", "B"]]]);
  const hs = await loadMc(put("hs.jsonl", [{ ctx_a: "A man", ctx_b: "sits", endings: ["e1", "e2"], label: "0" }]));
  assert.deepEqual([hs[0].shape, hs[0].question, hs[0].labels, hs[0].answer], ["hellaswag", "A man sits", null, 0]);
  // Parquet, as Hugging Face ships MMLU (answer an int column, choices a list column).
  const pq = join(dir, "mmlu.parquet");
  await parquetWriteFile({
    filename: pq,
    columnData: [
      { name: "question", data: ["one?", "two?"], type: "STRING" },
      { name: "choices", data: [["a", "b", "c"], ["d", "e", "f"]] },
      { name: "answer", data: [2, 0], type: "INT32" },
    ],
  });
  const fromPq = await loadMc(pq);
  assert.deepEqual(fromPq.map((q) => [q.question, q.choices, q.answer, q.where]), [["one?", ["a", "b", "c"], 2, `${pq}:row 1`], ["two?", ["d", "e", "f"], 0, `${pq}:row 2`]]);
  // --limit
  assert.equal((await loadMc(join(dir, "mmlu.jsonl"), 1)).length, 1);
});

test("bad task files are refused with file and line", async () => {
  const cases: [string, unknown[], RegExp][] = [
    ["bad-json.jsonl", [{ question: "Q", choices: ["a", "b"], answer: 0 }, "{not json"], /bad-json\.jsonl:2: malformed JSON/],
    ["bad-answer.jsonl", [{ question: "Q", choices: ["a", "b"], answer: 0 }, { question: "Q", choices: ["a", "b"], answer: 5 }], /bad-answer\.jsonl:2: "answer" is 5; expected the index \(0\.\.1\)/],
    ["bad-key.jsonl", [{ question: "Q", choices: { text: ["a", "b"], label: ["A", "B"] }, answerKey: "E" }], /bad-key\.jsonl:1: "answerKey" "E" is not one of the labels A, B/],
    ["bad-label.jsonl", [{ ctx: "c", endings: ["a", "b"], label: "" }], /bad-label\.jsonl:1: "label" is ""; expected the index of the right ending/],
    ["bad-shape.jsonl", [{ prompt: "x" }], /bad-shape\.jsonl:1: cannot tell the multiple-choice format from its fields \(prompt\)/],
    ["bad-choice.jsonl", [{ question: "Q", choices: ["a", 3], answer: 0 }], /bad-choice\.jsonl:1: "choices"\[1\] is number, expected a string/],
    ["not-object.jsonl", ["[1, 2]"], /not-object\.jsonl:1: expected a JSON object, got an array/],
  ];
  for (const [name, lines, re] of cases) await assert.rejects(loadMc(put(name, lines)), re, name);
  await assert.rejects(loadExact(put("ex-bad.jsonl", [{ question: "Q", answer: "#### 3" }, { question: "", answer: "4" }])), /ex-bad\.jsonl:2: "question" must be a non-empty string/);
  await assert.rejects(loadExact(put("ex-none.jsonl", [{ q: "Q", a: "4" }])), /ex-none\.jsonl:1: cannot find the question and answer fields \(fields: q, a\)/);
  const ok = await loadExact(put("gsm.jsonl", [{ question: "Q", answer: "work\n#### 1,000" }, { question: "P", answer: 7 }]));
  assert.deepEqual(ok.map((q) => q.answer), ["1000", "7"]);
  const other = await loadExact(put("prompt-target.jsonl", [{ prompt: "P", target: "Paris." }]));
  assert.deepEqual(other.map((q) => [q.question, q.answer]), [["P", "paris"]]);
});

test("--task specs: kinds, files, globs, and what is wrong with a bad one", () => {
  const f = put("t.jsonl", [{ text: "x" }]);
  assert.deepEqual(parseTaskSpec(`bpb:${f},${f}`).files, [f]);
  assert.deepEqual(parseTaskSpec("skills"), { kind: "skills", files: [], spec: "skills" });
  assert.equal(parseTaskSpec(`screen:${dir}/t.*`).files.length, 1);
  assert.throws(() => parseTaskSpec(`mcq:${f}`), /--task mcq:.*unknown kind "mcq"; expected one of bpb:, chat-loss:, mc:, exact:, skills:, screen:/);
  assert.throws(() => parseTaskSpec("mc:"), /--task mc:: no file given; write mc:PATH/);
  assert.throws(() => parseTaskSpec(`mc:${dir}/nope.jsonl`), /--task mc:.*no such file or folder/);
  assert.throws(() => parseTaskSpec(`mc:${f},${join(dir, "arc.jsonl")}`), /mc takes one file, got 2/);
});

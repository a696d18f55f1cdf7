/**
 * `mynah speedrun` end to end at a tiny size (about a minute): every stage writes its output,
 * the held-out questions were not trained on, and the reported accuracy is recomputed here
 * from the saved replies, one of which is regenerated from the saved model to show the replies
 * are real generations.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSpeedrun, planFor } from "../src/speedrun/pipeline.ts";
import { speedrunSkills } from "../src/speedrun/skills.ts";
import { stepsEstimate } from "../src/speedrun/train-stage.ts";
import { loadChatModel } from "../src/infer/load.ts";
import { renderChat } from "../src/data/chat-template.ts";
import { generate, DEFAULT_GENERATE } from "../src/infer/generate.ts";
import { writeReport } from "../src/eval/report.ts";

test("speedrun at a tiny size: all stages, real evaluation", { timeout: 240_000 }, async () => {
  const runDir = mkdtempSync(join(tmpdir(), "mynah-speedrun-"));
  const plan = { ...planFor(1, 7), conversations: 3000, sftConversations: 1500, pretrainSeconds: 25, sftSeconds: 15, evalPerSkill: 6 };
  const lines: string[] = [];
  // The run report as `mynah speedrun` writes it (the CLI passes mynah report's writer in).
  const writeRunReport = async (dir: string): Promise<string> => {
    await writeReport({ runs: [dir], out: join(dir, "run-report.html"), title: "mynah speedrun" });
    return "run-report.html";
  };
  const r = await runSpeedrun({ runDir, plan, log: (l) => lines.push(l), writeRunReport });
  for (const f of ["pretrain/metrics.jsonl", "sft/metrics.jsonl", "run-report.html", "run-report.md", "corpus/train.jsonl", "corpus/sft.jsonl", "corpus/heldout.jsonl", "tokenizer/tokenizer.json", "eval/answers.jsonl", "eval/eval.json", "report.md", "speedrun.json"]) {
    assert.ok(existsSync(join(runDir, f)), `${f} is missing`);
  }
  assert.ok(lines.some((l) => l.includes("pretrain")) && lines.some((l) => l.includes("sft")));
  const read = (f: string) => readFileSync(join(runDir, f), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  const train = read("corpus/train.jsonl"), sft = read("corpus/sft.jsonl");
  const seen = new Set([...train, ...sft].flatMap((c) => c.messages.filter((m: { role: string }) => m.role === "user").map((m: { content: string }) => m.content)));
  const answers = read("eval/answers.jsonl");
  assert.ok(answers.length >= 30);
  const skills = new Map(speedrunSkills({ digits: plan.digits }).map((s) => [s.name, s]));
  for (const a of answers) {
    assert.ok(!seen.has(a.question), `held-out question was trained on: ${a.question}`);
    assert.equal(typeof a.generated, "string");
    assert.equal(a.correct, skills.get(a.skill)!.extract(a.generated, a.lang) === a.answer);
  }
  const ev = JSON.parse(readFileSync(join(runDir, "eval/eval.json"), "utf8"));
  for (const s of ev.scores) {
    const mine = answers.filter((a: { skill: string }) => a.skill === s.skill);
    assert.equal(s.asked, mine.length);
    assert.equal(s.correct, mine.filter((a: { correct: boolean }) => a.correct).length);
  }
  assert.ok(Number.isFinite(ev.valLoss) && ev.valLoss > 0);
  // Regenerate one reply from the saved model: the evaluation came from real generations.
  const { model, tokenizer } = loadChatModel(r.modelDir);
  const a = answers[3];
  const ids = renderChat(tokenizer, [{ role: "user", content: a.question }], { addGenerationPrompt: true }).ids;
  assert.equal(generate(model, tokenizer, ids, { ...DEFAULT_GENERATE, maxNewTokens: 48 }).text, a.generated);
  assert.match(r.report!, /report card/);
  assert.match(readFileSync(join(runDir, "report.md"), "utf8"), /Full report \(training curves, tables\): \[run-report\.html\]\(run-report\.html\)/);
  const page = readFileSync(join(runDir, "run-report.html"), "utf8");
  assert.match(page, /held-out skills/);
  assert.equal((page.match(/<figure class="chart"/g) ?? []).length, 5); // loss, lr, grad norm, tok/s, MFU (no val bpb in the speedrun)
});

test("speedrun progress: the step estimate comes from the measured pace, also in the first (measuring) segment", () => {
  // 40 steps in the first 10 s of a 515 s budget: ~2,060 steps, not the 1 ms/step placeholder (~515,000).
  assert.equal(stepsEstimate(40, 10, 515), 40 + Math.floor(505 / 0.25));
  assert.equal(stepsEstimate(2000, 500, 515), 2060);
  assert.equal(stepsEstimate(100, 600, 515), 100); // past the budget: no more steps
  assert.equal(stepsEstimate(0, 0, 515), 0);
});

test("speedrun: Ctrl-C in a training stage saves a checkpoint, and --stage resumes it", { timeout: 120_000 }, async () => {
  const runDir = mkdtempSync(join(tmpdir(), "mynah-speedrun-int-"));
  const plan = { ...planFor(1, 3), conversations: 800, sftConversations: 300, pretrainSeconds: 10, sftSeconds: 4, evalPerSkill: 2 };
  const lines: string[] = [];
  const ctl = new AbortController();
  // "Ctrl-C" a few seconds into pretraining.
  const log = (l: string): void => {
    lines.push(l);
    if (l.startsWith("pretrain: ") && l.includes("examples")) setTimeout(() => ctl.abort(), 3000);
  };
  const r = await runSpeedrun({ runDir, plan, log, signal: ctl.signal });
  assert.equal(r.interrupted, "pretrain");
  assert.ok(lines.some((l) => /pretrain: stopped at step \d+; checkpoint in/.test(l)), lines.join("\n"));
  assert.ok(lines.some((l) => l.includes("--stage pretrain sft eval")), "says how to resume");
  const { latestCheckpoint } = await import("../src/train/checkpoint.ts");
  const ckpt = latestCheckpoint(join(runDir, "pretrain-checkpoint"));
  assert.ok(ckpt, "a checkpoint was saved");
  const stepAt = JSON.parse(readFileSync(join(ckpt!, "state.json"), "utf8")).step as number;
  assert.ok(stepAt > 0);
  const state = JSON.parse(readFileSync(join(runDir, "speedrun.json"), "utf8"));
  assert.equal(state.stages.pretrain, undefined, "an interrupted stage is not recorded as finished");
  assert.ok(!existsSync(join(runDir, "sft")), "later stages did not run");
  // Resume the training stage.
  const again: string[] = [];
  const r2 = await runSpeedrun({ runDir, plan, only: ["pretrain"], log: (l) => again.push(l) });
  assert.equal(r2.interrupted, undefined);
  assert.ok(again.some((l) => l.includes(`resuming from`) && l.includes(`at step ${stepAt}`)), again.join("\n"));
  assert.ok(existsSync(join(runDir, "pretrain", "model.safetensors")));
  assert.ok(!existsSync(join(runDir, "pretrain-checkpoint")), "the checkpoint is removed once the stage finishes");
  const steps = JSON.parse(readFileSync(join(runDir, "pretrain", "config.json"), "utf8")).mynah.steps as number;
  assert.ok(steps > stepAt, `${steps} steps after resuming at ${stepAt}`);
});

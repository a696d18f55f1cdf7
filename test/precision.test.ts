/**
 * `--precision fp32|bf16` (issue 14): checked at start-up, recorded in the checkpoint and in
 * every metrics.jsonl step, shown on the progress line; a resume keeps the checkpoint's
 * precision, and one that asks for another says so plainly.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerTrain } from "../src/cli/train.ts";
import { registerSft } from "../src/cli/sft.ts";
import { registerDpo } from "../src/cli/dpo.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { pretrain, type PretrainOptions } from "../src/train/pretrain.ts";
import { inProcessCli } from "./helpers/cli.ts";

test("--precision takes fp32 or bf16 on train, sft and dpo; anything else is refused naming the flag", async () => {
  const cli = inProcessCli(registerTrain, registerSft, registerDpo);
  for (const cmd of [["train"], ["sft", "--from", "x", "--data", "y"], ["dpo", "--from", "x", "--data", "y"]]) {
    await assert.rejects(cli(...cmd, "--precision", "fp16"),
      (e: Error) => /option '--precision <p>' argument 'fp16' is invalid\. Allowed choices are fp32, bf16/.test(e.message));
  }
});

test("a bf16 run records its precision; resuming keeps it, or says plainly that it changes", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-precision-"));
  try {
    const text = join(dir, "t.txt");
    writeFileSync(text, "to be or not to be, that is the question; whether 'tis nobler in the mind to suffer\n".repeat(200));
    const out = join(dir, "run");
    let printed = "";
    const base = (steps: number, precision: "fp32" | "bf16" | undefined, resume: boolean): PretrainOptions => ({
      data: [text], valFraction: 0.1, model: { preset: "small", layers: 1, width: 32, heads: 2 },
      loop: {
        steps, batchSize: 2, seqLen: 16, gradAccum: 1, schedule: "cosine", warmup: 1, minLrRatio: 0.1,
        optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 2, seed: 3,
      },
      evalBatches: 1, sampleTokens: 0, out, resume, keep: 0, write: (s) => (printed += s), tty: false, logEvery: 1,
      ...(precision ? { precision } : {}),
    });
    await pretrain(base(2, "bf16", false));
    assert.match(printed, /bf16 GEMM operands/);
    assert.match(printed, /step 1\/2 \| .* \| bf16 \| /);
    const state = (n: string): { precision?: string } => JSON.parse(readFileSync(join(out, n, "state.json"), "utf8"));
    assert.equal(state("ckpt-000002").precision, "bf16");
    printed = "";
    await pretrain(base(4, undefined, true));              // no --precision: the checkpoint's
    assert.doesNotMatch(printed, /note: the checkpoint was trained with --precision/);
    assert.equal(state("ckpt-000004").precision, "bf16");
    printed = "";
    await pretrain(base(6, "fp32", true));                 // another precision: said plainly
    assert.match(printed, /note: the checkpoint was trained with --precision bf16; this run continues with --precision fp32 as asked/);
    assert.equal(state("ckpt-000006").precision, "fp32");
    const records = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(records.filter((r) => r.type === "step").map((r) => r.precision), ["bf16", "bf16", "bf16", "bf16", "fp32", "fp32"]);
    assert.deepEqual(records.filter((r) => r.type === "run").map((r) => r.precision), ["bf16", "bf16", "fp32"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

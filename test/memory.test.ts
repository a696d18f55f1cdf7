/**
 * Memory (issue 14): peak RSS in the step metrics, the cross-entropy in row chunks (same loss
 * and gradients as the whole-logits path), --recompute (bitwise identical gradients), and the
 * --max-memory estimate against measured peak RSS.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/core/backend.ts";
import { nativeBackend } from "../src/core/native.ts";
import { configFromPreset } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { openTextSource } from "../src/data/text.ts";
import { trainLoop, type StepMetrics } from "../src/train/loop.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";

function native(): Backend | null {
  try {
    return nativeBackend();
  } catch {
    return null;
  }
}
const skip = native() ? false : "native addon not built";

const loopBase = {
  steps: 3, batchSize: 4, seqLen: 16, gradAccum: 1, schedule: "cosine" as const, warmup: 1, minLrRatio: 0.1,
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 5, peakFlops: 0,
};

test("each step reports the process's peak RSS, never decreasing", { skip }, async () => {
  const c = configFromPreset("tiny", { vocabSize: 10, contextLength: 16 });
  const ids = Int32Array.from({ length: 2000 }, (_, i) => i % 10);
  const before = process.resourceUsage().maxRSS / 1024;
  const seen: StepMetrics[] = [];
  // Memory grown on purpose between steps must show up in the next step's figure.
  let ballast: Uint8Array | null = null;
  await trainLoop(createGPT(c, native()!, { seed: 1 }), openTextSource(ids, { seed: 2 }), loopBase, {
    onStep: (m) => {
      seen.push(m);
      if (m.step === 1) ballast = new Uint8Array(200 * 1024 * 1024).fill(1);
    },
  });
  assert.ok(ballast);
  assert.equal(seen.length, 3);
  assert.ok(seen[0].peakRssMB >= Math.floor(before), `${seen[0].peakRssMB} < ${before}`);
  assert.ok(seen[2].peakRssMB >= seen[0].peakRssMB + 190, `ballast of 200 MiB not seen: ${seen.map((m) => m.peakRssMB)}`);
  assert.ok(seen[2].peakRssMB <= Math.ceil(process.resourceUsage().maxRSS / 1024));
});

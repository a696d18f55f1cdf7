/**
 * Memory (issue 14): peak RSS in the step metrics, the cross-entropy in row chunks (same loss
 * and gradients as the whole-logits path), --recompute (bitwise identical gradients), and the
 * --max-memory estimate against measured peak RSS.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/core/backend.ts";
import { nativeBackend } from "../src/core/native.ts";
import { configFromPreset } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { openTextSource } from "../src/data/text.ts";
import { trainLoop, type StepMetrics } from "../src/train/loop.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { estimateTrainingMemory, memoryRefusal, parseMemorySize } from "../src/train/memory.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

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

/** max |a − b| / max |b| over a tensor. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-12);
}

/** A batch with some ignored targets (−1), as SFT masks give. */
function batch(V: number, N: number): { inputs: Int32Array; targets: Int32Array } {
  const inputs = Int32Array.from({ length: N }, (_, i) => (i * 7919 + 13) % V);
  const targets = Int32Array.from({ length: N }, (_, i) => (i % 11 === 3 ? -1 : (i * 104729 + 5) % V));
  return { inputs, targets };
}

for (const tied of [false, true]) {
  test(`cross-entropy in row chunks: same loss, per-row losses and gradients as whole logits (${tied ? "tied" : "untied"} head)`, { skip }, () => {
    const c = configFromPreset("tiny", { vocabSize: 300, contextLength: 16, tiedEmbeddings: tied, qkNorm: tied, nKvHead: tied ? 2 : 4 });
    const B = 10, T = 16, N = B * T; // 160 rows: chunks of 64, 64, 32
    const { inputs, targets } = batch(c.vocabSize, N);
    const whole = createGPT(c, native()!, { seed: 4 });
    const chunked = createGPT(c, native()!, { seed: 4, logitsChunk: 1 });
    const la = new Float32Array(N), lb = new Float32Array(N);
    // Twice, with grads accumulating, and zeroGrad between forward and backward the first time.
    for (let rep = 0; rep < 2; rep++) {
      const a = whole.forward(inputs, targets, B, T, { losses: la });
      const b = chunked.forward(inputs, targets, B, T, { losses: lb });
      if (rep === 0) {
        whole.zeroGrad();
        chunked.zeroGrad();
      }
      whole.backward();
      chunked.backward();
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.abs(a), `loss ${a} vs ${b}`);
      assert.deepEqual(lb, la, "per-row losses are computed row by row: identical");
    }
    for (const s of whole.params.specs) {
      const e = relErr(chunked.grads.get(s.name), whole.grads.get(s.name));
      // Only the order of the sums over rows differs: float32 rounding.
      assert.ok(e <= 2e-6, `${s.name}: relative error ${e.toExponential(2)}`);
    }
    // Evaluation without kept logits gives the kept path's loss exactly (per-row losses, same sums).
    const kept = whole.forward(inputs, targets, B, T, { grad: false });
    const notKept = chunked.forward(inputs, targets, B, T, { grad: false, keepLogits: false });
    assert.ok(Math.abs(kept - notKept) <= 1e-6 * kept, `${kept} vs ${notKept}`);
    assert.throws(() => chunked.logits(), /keepLogits: false/);
  });
}

test("weighted rows (DPO's backward(rowScale)) give the same gradients with chunked logits as with whole ones", { skip }, () => {
  const c = configFromPreset("tiny", { vocabSize: 300, contextLength: 16 });
  const B = 10, T = 16, N = B * T; // chunks of 64, 64, 32
  const { inputs, targets } = batch(c.vocabSize, N);
  const rowScale = Float32Array.from({ length: N }, (_, i) => (i % 5 === 0 ? 1 : ((i * 37) % 17) / 4 - 2)); // some 1, some negative, some 0
  const whole = createGPT(c, native()!, { seed: 4 });
  const chunked = createGPT(c, native()!, { seed: 4, logitsChunk: 1 });
  whole.zeroGrad();
  chunked.zeroGrad();
  whole.forward(inputs, targets, B, T);
  chunked.forward(inputs, targets, B, T);
  whole.backward(rowScale);
  chunked.backward(rowScale);
  for (const s of whole.params.specs) {
    const e = relErr(chunked.grads.get(s.name), whole.grads.get(s.name));
    assert.ok(e <= 2e-6, `${s.name}: relative error ${e.toExponential(2)}`);
  }
  // and the weights matter: unweighted gradients differ
  const plain = createGPT(c, native()!, { seed: 4, logitsChunk: 1 });
  plain.zeroGrad();
  plain.forward(inputs, targets, B, T);
  plain.backward();
  assert.ok(relErr(plain.grads.get("lm_head.weight"), whole.grads.get("lm_head.weight")) > 1e-2);
});

for (const shape of ["multi-head", "qk-norm + grouped + tied", "qkv biases + head_dim"] as const) {
  test(`--recompute: gradients bitwise identical to keeping every activation (${shape}, native)`, { skip }, () => {
    const extra = shape === "multi-head" ? {} : shape === "qk-norm + grouped + tied"
      ? { qkNorm: true, nKvHead: 2, tiedEmbeddings: true } : { qkvBias: true, headDim: 24 };
    const c = configFromPreset("tiny", { vocabSize: 97, contextLength: 16, nLayer: 3, ...extra });
    const B = 3, T = 16;
    const { inputs, targets } = batch(c.vocabSize, B * T);
    const keep = createGPT(c, native()!, { seed: 9 });
    const redo = createGPT(c, native()!, { seed: 9, recompute: true });
    for (let rep = 0; rep < 2; rep++) {
      assert.equal(redo.forward(inputs, targets, B, T), keep.forward(inputs, targets, B, T));
      keep.backward();
      redo.backward();
    }
    for (const s of keep.params.specs) assert.deepEqual(redo.grads.get(s.name), keep.grads.get(s.name), s.name);
    // Inference through the shared activations is unaffected too.
    keep.forward(inputs, null, B, T);
    redo.forward(inputs, null, B, T);
    assert.deepEqual(redo.logits(), keep.logits());
  });
}

test("--max-memory sizes: binary units as typed, bad values named", () => {
  assert.equal(parseMemorySize("8G"), 8 * 2 ** 30);
  assert.equal(parseMemorySize("512m"), 512 * 2 ** 20);
  assert.equal(parseMemorySize("1.5GB"), 1.5 * 2 ** 30);
  assert.equal(parseMemorySize("2GiB"), 2 * 2 ** 30);
  assert.equal(parseMemorySize("64k"), 65536);
  assert.throws(() => parseMemorySize("8"), /--max-memory 8: expected a size with a unit, e.g. 8G/);
  assert.throws(() => parseMemorySize("lots"), /--max-memory lots: expected a size/);
  assert.throws(() => parseMemorySize("0G"), /--max-memory 0G: must be more than 0/);
});

test("the estimate counts every buffer the model allocates; --recompute and chunked logits shrink it", () => {
  const c = configFromPreset("shakespeare", { vocabSize: 65, contextLength: 256 });
  const keep = estimateTrainingMemory(c, 64, 256, { processBytes: 0 }), redo = estimateTrainingMemory(c, 64, 256, { recompute: true, processBytes: 0 });
  assert.equal(keep.parameters, keep.gradients);
  assert.equal(keep.optimizer, 2 * keep.parameters);
  assert.ok(keep.activations / redo.activations >= 3, `${keep.activations} / ${redo.activations}`);
  assert.equal(keep.total, keep.parameters + keep.gradients + keep.optimizer + keep.activations + keep.logits);
  // A 150k vocabulary: 64 MiB of logits and one [V, C] head gradient, not [B·T, V].
  const big = configFromPreset("small", { vocabSize: 151936, contextLength: 1024 });
  const e = estimateTrainingMemory(big, 8, 1024, { processBytes: 0 });
  assert.equal(e.logits, 4 * (110 * 151936 + 151936 * 128));
  assert.match(memoryRefusal(e, 2 ** 30, "1G", false)!, /^--max-memory 1G: this run needs an estimated [\d.]+ GB \(parameters .* MB, gradients .*, optimizer state .*, activations .*, logits .*\); add --recompute, lower --batch-size/);
  assert.equal(memoryRefusal(e, 2 ** 40, "1T", false), null);
});

const shakespeare = join(root, "..", "shared", "data", "text", "tinyshakespeare.txt");

/** `mynah train` from source in a child process (2 threads). */
function train(args: string[]) {
  return spawnSync(process.execPath, ["--import", "tsx", "-e",
    `import(${JSON.stringify(join(root, "src/cli/main.ts"))}).then((m) => m.main(["node", "mynah", "train", ...${JSON.stringify(args)}]))`],
    { cwd: root, encoding: "utf8", env: { ...process.env, MYNAH_THREADS: "2" } });
}

for (const [name, flags] of [
  ["small, B 32 × T 128", ["--preset", "small", "--batch-size", "32", "--seq-len", "128"]],
  ["width 256, B 16 × T 256, --recompute", ["--preset", "small", "--width", "256", "--batch-size", "16", "--seq-len", "256", "--recompute"]],
] as const) {
  test(`the memory estimate is within 15 % of the measured peak RSS (${name})`, { skip, timeout: 120_000 }, (t) => {
    const dir = mkdtempSync(join(tmpdir(), "mynah-mem-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    let text = shakespeare;
    if (!existsSync(text)) {
      text = join(dir, "text.txt");
      writeFileSync(text, Array.from({ length: 40000 }, (_, i) => "abcdefghij klmnop\n"[(i * 7) % 18]).join(""));
    }
    const out = join(dir, "run");
    const r = train(["--data", text, ...flags, "--steps", "2", "--eval-every", "0", "--checkpoint-every", "0", "--out", out, "--log-every", "1"]);
    assert.equal(r.status, 0, r.stderr);
    const m = /memory: estimated peak ([\d.]+) (MB|GB) \(/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const est = Number(m[1]) * (m[2] === "GB" ? 1024 : 1);
    const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((o) => o.type === "step");
    const peak = steps[steps.length - 1].peakRssMB as number;
    console.log(`${name}: estimate ${est} MiB, peak RSS ${peak} MiB`);
    assert.ok(Math.abs(est - peak) <= 0.15 * peak, `estimate ${est} MiB vs peak RSS ${peak} MiB`);
  });
}

test("--max-memory refuses a run that will not fit, before writing anything, with the estimate", { skip, timeout: 60_000 }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-mem-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const text = join(dir, "text.txt");
  writeFileSync(text, "to be or not to be, that is the question\n".repeat(200));
  const out = join(dir, "run");
  const r = train(["--data", text, "--preset", "shakespeare", "--batch-size", "64", "--seq-len", "256", "--max-memory", "1G", "--out", out]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^mynah train: --max-memory 1G: this run needs an estimated [\d.]+ GB \(parameters \d+ MB, .*activations [\d.]+ GB, .*runtime and data \d+ MB\); add --recompute/);
  assert.ok(!existsSync(out), "nothing written");
  const bad = train(["--data", text, "--max-memory", "8", "--out", out]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /mynah train: --max-memory 8: expected a size with a unit/);
});

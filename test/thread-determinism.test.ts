/**
 * Training gives the same bits at any thread count, so `--resume` on a machine with another
 * core count (or another `--threads`) continues exactly. Every reduction in the native kernels
 * is cut by the shapes, never by the pool size: the attention backward's split of the key tiles
 * (whose partial dq copies are summed), the RMSNorm weight-gradient chunks, the cross-entropy
 * and sum-of-squares partial sums, the GEMM's K slices.
 *
 * The shapes are chosen so that the old thread-dependent split of the attention backward was
 * taken and summed differently: few (sequence, kv head) pairs (B·Hkv below twice the pool size)
 * and more key tiles of 64 than parts, so that some part holds two tiles.
 *
 * Each instruction-set level rounds differently, so a checkpoint records its backend and a
 * resume on another one says so.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { loadNative, nativeBackend } from "../src/core/native.ts";
import { configFromPreset } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { openTextSource } from "../src/data/text.ts";
import { trainLoop } from "../src/train/loop.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";

const addon = loadNative();
const startThreads = addon.threads();
after(() => addon.setThreads(startThreads));
const twoCpus = addon.cpus() >= 2 ? false : "needs 2 CPUs (the pool is capped at the CPU count)";

async function train(threads: number, kind: "adamw" | "muon"): Promise<{ losses: number[]; params: Float32Array }> {
  assert.equal(addon.setThreads(threads), threads);
  const c = configFromPreset("tiny", { vocabSize: 50, contextLength: 320, nEmbd: 64, nHead: 2, nKvHead: 1, nLayer: 2 });
  const ids = Int32Array.from({ length: 5000 }, (_, i) => (i * i + 7 * i + (i >> 3)) % 50);
  const m = createGPT(c, nativeBackend(), { seed: 11 });
  const losses: number[] = [];
  await trainLoop(m, openTextSource(ids, { seed: 4 }), {
    steps: 3, batchSize: 2, seqLen: 320, gradAccum: 2, schedule: "cosine", warmup: 1, minLrRatio: 0.1,
    optimizer: { ...DEFAULT_OPTIMIZER, kind, lr: 3e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 9, peakFlops: 0,
  }, { onStep: (s) => losses.push(s.loss) });
  return { losses, params: m.params.data.slice() };
}

for (const kind of ["adamw", "muon"] as const) {
  test(`training steps at 1 and 2 threads give identical bits (${kind})`, { skip: twoCpus, timeout: 120_000 }, async () => {
    const one = await train(1, kind), two = await train(2, kind);
    assert.deepEqual(two.losses, one.losses, "per-step losses");
    let differ = 0;
    for (let i = 0; i < one.params.length; i++) if (!Object.is(one.params[i], two.params[i])) differ++;
    assert.equal(differ, 0, `${differ} of ${one.params.length} parameters differ between 1 and 2 threads`);
  });
}

test("the attention backward gives identical bits at 1 and 2 threads", { skip: twoCpus }, () => {
  const B = 1, T = 576, H = 4, Hkv = 1, D = 32;
  const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i * 0.37) * 0.5);
  const q = fill(B * T * H * D, 1), k = fill(B * T * Hkv * D, 2), v = fill(B * T * Hkv * D, 3), dout = fill(B * T * H * D, 4);
  const out = new Float32Array(B * T * H * D), lse = new Float32Array(B * H * T);
  addon.attentionForward(out, lse, q, k, v, B, T, H, Hkv, D);
  const grads = (threads: number) => {
    addon.setThreads(threads);
    const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
    addon.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, B, T, H, Hkv, D);
    return { dq, dk, dv };
  };
  const one = grads(1), two = grads(2);
  assert.deepEqual(two.dq, one.dq, "dq");
  assert.deepEqual(two.dk, one.dk, "dk");
  assert.deepEqual(two.dv, one.dv, "dv");
});

test("a checkpoint records its backend; resuming on another says plainly that losses will differ", async (t) => {
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const { pretrain } = await import("../src/train/pretrain.ts");
  const dir = mkdtempSync(join(tmpdir(), "mynah-backend-note-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const text = join(dir, "text.txt");
  writeFileSync(text, "the quick brown fox jumps over the lazy dog. ".repeat(400));
  const native = nativeBackend();
  const loop = { steps: 2, batchSize: 2, seqLen: 16, gradAccum: 1, schedule: "cosine" as const, warmup: 1, minLrRatio: 0.1,
    optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 2, seed: 5 };
  const out: string[] = [];
  const base = { data: [text], valFraction: 0.1, model: { preset: "tiny" as const }, loop, evalBatches: 0, sampleTokens: 0,
    out: join(dir, "run"), keep: 2, tty: false, logEvery: 100, write: (s: string) => out.push(s) };
  await pretrain({ ...base, resume: false, backend: native });
  const state = JSON.parse(readFileSync(join(dir, "run", "ckpt-000002", "state.json"), "utf8"));
  assert.equal(state.backend, native.name);
  // the same backend resumes silently; another level is named
  await pretrain({ ...base, resume: true, backend: native, loop: { ...loop, steps: 3, checkpointEvery: 3 } });
  assert.ok(!out.join("").includes("per-step losses will differ"), out.join(""));
  const other = { ...native, name: native.name === "native-portable" ? "native-avx2" : "native-portable" };
  await pretrain({ ...base, resume: true, backend: other, loop: { ...loop, steps: 4, checkpointEvery: 4 } });
  assert.match(out.join(""), new RegExp(`note: the checkpoint was computed with ${native.name}, this run uses ${other.name}: training continues, ` +
    `but its per-step losses will differ slightly`));
});

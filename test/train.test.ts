/**
 * Training: the loop learns, gradient accumulation matches one big batch, settings are refused
 * up front with messages naming the flag, and `mynah train` killed with SIGKILL mid-run and
 * resumed gives exactly the per-step losses of an uninterrupted run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/core/backend.ts";
import { nativeBackend } from "../src/core/native.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { configFromPreset } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { openTextSource } from "../src/data/text.ts";
import { trainLoop } from "../src/train/loop.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { lrMultiplier } from "../src/train/schedule.ts";
import { pretrain, PretrainSettingsError, type PretrainOptions } from "../src/train/pretrain.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const shakespeare = join(root, "..", "shared", "data", "text", "tinyshakespeare.txt");

function native(): Backend | null {
  try {
    return nativeBackend();
  } catch {
    return null;
  }
}

/** A small text: the shared Shakespeare when present, else a generated one. */
function corpus(dir: string): string {
  if (existsSync(shakespeare)) return shakespeare;
  const p = join(dir, "text.txt");
  const words = ["the", "king", "and", "queen", "of", "night", "shall", "speak", "to", "thee"];
  let s = "", x = 7;
  for (let i = 0; i < 20000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += words[x % words.length] + (i % 9 === 8 ? ".\n" : " ");
  }
  writeFileSync(p, s);
  return p;
}

const loopBase = {
  steps: 8, batchSize: 4, seqLen: 16, gradAccum: 1, schedule: "cosine" as const, warmup: 2, minLrRatio: 0.1,
  optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3 }, clip: 1, evalEvery: 0, sampleEvery: 0, checkpointEvery: 0, seed: 5, peakFlops: 0,
};

test("schedules: warmup, cosine end, WSD plateau then decay", () => {
  const cos = { kind: "cosine" as const, steps: 100, warmup: 10, minRatio: 0.1 };
  assert.equal(lrMultiplier(cos, 0), 0.1);
  assert.equal(lrMultiplier(cos, 9), 1);
  assert.ok(Math.abs(lrMultiplier(cos, 55) - 0.55) < 1e-12); // halfway through the cosine: (1 + 0.1) / 2
  assert.ok(Math.abs(lrMultiplier(cos, 100) - 0.1) < 1e-12);
  const wsd = { kind: "wsd" as const, steps: 100, warmup: 10, minRatio: 0, decayFraction: 0.2 };
  assert.equal(lrMultiplier(wsd, 50), 1);
  assert.equal(lrMultiplier(wsd, 79), 1);
  assert.ok(Math.abs(lrMultiplier(wsd, 89) - 0.5) < 1e-12);
  assert.equal(lrMultiplier(wsd, 99), 0);
});

test("gradient accumulation of 2×[2, T] equals one [4, T] batch (reference backend)", async () => {
  const c = configFromPreset("tiny", { vocabSize: 13, contextLength: 8, nEmbd: 16, nHead: 2, nLayer: 1 });
  const ids = Int32Array.from({ length: 400 }, (_, i) => (i * i + 3 * i) % 13);
  const run = async (B: number, A: number) => {
    const m = createGPT(c, referenceBackend, { seed: 3 });
    // Sequential order: two [2, T] batches hold exactly the rows of one [4, T] batch.
    await trainLoop(m, openTextSource(ids, { seed: 1, order: "sequential" }), { ...loopBase, steps: 2, batchSize: B, seqLen: 8, gradAccum: A });
    return m.params.data;
  };
  const a = await run(4, 1), b = await run(2, 2);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  assert.ok(d < 1e-6, `weights differ by ${d}`);
});

for (const kind of ["adamw", "muon"] as const) {
  test(`the loop learns a repetitive text (${kind})`, { skip: native() ? false : "native addon not built" }, async () => {
    const c = configFromPreset("tiny", { vocabSize: 10, contextLength: 16, nEmbd: 32, nHead: 2, nLayer: 2 });
    const ids = Int32Array.from({ length: 2000 }, (_, i) => [1, 2, 3, 4, 5, 6, 7, 8, 9, 0][i % 10]);
    const m = createGPT(c, native()!, { seed: 3 });
    const losses: number[] = [];
    const r = await trainLoop(m, openTextSource(ids, { seed: 2 }), { ...loopBase, steps: 60, optimizer: { ...DEFAULT_OPTIMIZER, kind, lr: 1e-2 } },
      { onStep: (s) => losses.push(s.loss) });
    assert.equal(r.status, "done");
    assert.ok(losses[0] > 2 && losses[59] < 0.3, `loss went ${losses[0]} → ${losses[59]}`);
  });
}

test("bad settings are refused before training, naming the flag", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-train-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const text = corpus(dir);
  const base: PretrainOptions = {
    data: [text], valFraction: 0.1, model: { preset: "tiny" }, loop: loopBase, evalBatches: 1, sampleTokens: 0,
    out: join(dir, "run"), resume: false, keep: 2, backend: referenceBackend, write: () => {}, tty: false, logEvery: 10,
  };
  const refuses = (o: Partial<PretrainOptions>, re: RegExp) =>
    assert.rejects(pretrain({ ...base, ...o }), (e: Error) => e instanceof PretrainSettingsError && re.test(e.message));
  await refuses({ model: { preset: "tiny", heads: 3 } }, /width 64 is not divisible by the number of heads 3/);
  await refuses({ model: { preset: "tiny", heads: 4, kvHeads: 3 } }, /heads 4 is not divisible by the number of key\/value heads 3/);
  await refuses({ model: { preset: "tiny", context: 8 } }, /--seq-len 16 is longer than the model's context \(--context 8\)/);
  await refuses({ data: [join(dir, "missing.txt")] }, /--data .*missing\.txt: no such file or folder/);
  await refuses({ data: [] }, /needs training data: --data FILE\.txt/);
  await refuses({ loop: { ...loopBase, optimizer: { ...loopBase.optimizer, kind: "sgd" as "adamw" } } }, /--optimizer must be adamw or muon/);
  await refuses({ resume: true }, /--resume: .* has no checkpoint/);
  assert.ok(!existsSync(join(dir, "run", "latest")));
});

/** Runs the CLI from source in a child process. */
function cli(args: string[]) {
  return spawn(process.execPath, ["--import", "tsx", "-e", `import(${JSON.stringify(join(root, "src/cli/main.ts"))}).then((m) => m.main(["node", "mynah", ...${JSON.stringify(args)}]))`],
    { cwd: root, env: { ...process.env, MYNAH_THREADS: "2" }, stdio: ["ignore", "pipe", "pipe"] });
}

function stepLosses(runDir: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const line of readFileSync(join(runDir, "metrics.jsonl"), "utf8").split("\n")) {
    if (!line) continue;
    const r = JSON.parse(line) as { type: string; step: number; loss: number };
    if (r.type === "step") m.set(r.step, r.loss); // a resumed run's lines come later and win
  }
  return m;
}

async function finish(p: ReturnType<typeof cli>): Promise<{ code: number | null; out: string; err: string }> {
  let out = "", err = "";
  p.stdout!.on("data", (d) => (out += d));
  p.stderr!.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((res) => p.on("close", (c) => res(c)));
  return { code, out, err };
}

test("mynah train: kill -9 after a checkpoint, --resume, identical per-step losses", { skip: native() ? false : "native addon not built", timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-resume-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const text = corpus(dir);
  const STEPS = 60;
  const args = (out: string) => ["train", "--data", text, "--preset", "tiny", "--layers", "2", "--width", "64", "--seq-len", "32", "--batch-size", "8",
    "--steps", String(STEPS), "--warmup", "5", "--checkpoint-every", "10", "--eval-every", "0", "--optimizer", "muon", "--out", out, "--log-every", "1"];

  const full = await finish(cli(args(join(dir, "a"))));
  assert.equal(full.code, 0, full.err);
  const want = stepLosses(join(dir, "a"));
  assert.equal(want.size, STEPS);

  // Interrupted run: SIGKILL as soon as a checkpoint has been written.
  const runB = join(dir, "b");
  const p = cli(args(runB));
  let killedAfter = "";
  p.stdout!.on("data", (d: Buffer) => {
    const m = /checkpoint: \S*ckpt-0*(\d+)/.exec(d.toString());
    if (m && !killedAfter) {
      killedAfter = m[1];
      p.kill("SIGKILL");
    }
  });
  const killed = await finish(p);
  assert.equal(killed.code, null, "the first run was killed");
  const partial = stepLosses(runB);
  assert.ok(partial.size < STEPS, `killed mid-run (after ${partial.size} steps, checkpoint ${killedAfter})`);

  const resumed = await finish(cli([...args(runB), "--resume"]));
  assert.equal(resumed.code, 0, resumed.err);
  assert.match(resumed.out, /resuming from .*ckpt-\d+ at step \d+/);
  const got = stepLosses(runB);
  assert.equal(got.size, STEPS);
  for (let s = 1; s <= STEPS; s++) assert.equal(got.get(s), want.get(s), `step ${s}: resumed ${got.get(s)} vs uninterrupted ${want.get(s)}`);
});

test("mynah train refuses bad flags with exit code 2 and a clear message", { skip: native() ? false : "native addon not built" }, () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e",
    `import(${JSON.stringify(join(root, "src/cli/main.ts"))}).then((m) => m.main(["node", "mynah", "train", "--data", "x.txt"]))`], { cwd: root, encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /mynah train: --data x\.txt: no such file or folder/);
});

test("mynah train: Ctrl-C (SIGINT) saves a checkpoint and exits cleanly", { skip: native() ? false : "native addon not built", timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-sigint-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const run = join(dir, "run");
  const p = cli(["train", "--data", corpus(dir), "--preset", "tiny", "--seq-len", "32", "--batch-size", "8", "--steps", "100000",
    "--checkpoint-every", "0", "--eval-every", "0", "--out", run, "--log-every", "1"]);
  let sent = false;
  p.stdout!.on("data", (d: Buffer) => {
    if (!sent && /step 5\//.test(d.toString())) {
      sent = true;
      p.kill("SIGINT");
    }
  });
  const r = await finish(p);
  assert.equal(r.code, 0, r.err);
  const m = /stopped at step (\d+); continue with --resume/.exec(r.out);
  assert.ok(m, r.out.slice(-500));
  assert.match(r.out, /step 5\/100000 \|.* \| peak RSS \d+ MB \|/);
  const latest = readFileSync(join(run, "latest"), "utf8").trim();
  assert.equal(latest, `ckpt-${m[1].padStart(6, "0")}`);
});

test("a fresh run into a folder holding another run is refused; --force replaces it, never mixing the two", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-train-out-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const text = corpus(dir);
  const out = join(dir, "run");
  const o: PretrainOptions = {
    data: [text], valFraction: 0.1, model: { preset: "tiny", layers: 1, width: 32, heads: 2 }, loop: { ...loopBase, steps: 3 },
    evalBatches: 1, sampleTokens: 0, out, resume: false, keep: 2, backend: native() ?? referenceBackend, write: () => {}, tty: false, logEvery: 10,
  };
  await pretrain(o);
  const metrics = readFileSync(join(out, "metrics.jsonl"), "utf8");
  const latest = readFileSync(join(out, "latest"), "utf8");
  await assert.rejects(pretrain(o), (e: Error) => e instanceof PretrainSettingsError &&
    /--out .*run already holds a run \(ckpt-000003, latest, metrics\.jsonl\); continue it with --resume, choose another --out, or pass --force/.test(e.message));
  assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8"), metrics, "the refused run wrote nothing");
  // --force: the old run's files go, the new run's are alone in the folder.
  writeFileSync(join(out, "notes.txt"), "mine");
  await pretrain({ ...o, force: true, loop: { ...o.loop, steps: 2 } });
  const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").filter((l) => l && JSON.parse(l).type === "step");
  assert.deepEqual(steps.map((l) => JSON.parse(l).step), [1, 2]);
  assert.equal(readFileSync(join(out, "latest"), "utf8").trim(), "ckpt-000002");
  assert.notEqual(latest.trim(), "ckpt-000002");
  assert.ok(!existsSync(join(out, "ckpt-000003")), "the old checkpoint is gone");
  assert.equal(readFileSync(join(out, "notes.txt"), "utf8"), "mine", "files that are not the run's are kept");
  // --resume continues the same run (no --force needed).
  await pretrain({ ...o, resume: true, loop: { ...o.loop, steps: 4 } });
});

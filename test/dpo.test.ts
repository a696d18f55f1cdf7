/**
 * DPO pieces: the preference readers (every accepted shape, file:line errors, --skip-bad), the
 * rendering (loss on reply tokens only, the one chat template), the loss and its gradient
 * against PyTorch autograd and float64 finite differences, the objective's parameter gradient
 * through the model (reference and native backends), stop + --resume, and CLI refusals.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nativeBackend, setThreads } from "../src/core/native.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { seededRng } from "../src/core/rng.ts";
import { CHAT_TEMPLATE, renderChat } from "../src/data/chat-template.ts";
import { loadPreferences, pairBatch, renderPair, type RenderedPair } from "../src/data/preferences.ts";
import { createGPT } from "../src/model/gpt.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { saveModelFolder } from "../src/model/weights.ts";
import { saveTokenizer, trainBpe } from "../src/tokenizer/index.ts";
import { loadTokenizer } from "../src/tokenizer/io.ts";
import { dpo, DpoSettingsError, dpoObjective, REFERENCE_FILE, type DpoOptions } from "../src/train/dpo.ts";
import { DPO_LOSSES, dpoLoss, type DpoLossOptions } from "../src/train/dpo-loss.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { modelConfigFor } from "../src/train/pretrain.ts";

const tmp = mkdtempSync(join(tmpdir(), "mynah-dpo-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const file = (name: string, rows: unknown[]): string => {
  const p = join(tmp, name);
  writeFileSync(p, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
  return p;
};
const HH = (process.env.MYNAH_SHARED_DATA ?? new URL("../../shared/data", import.meta.url).pathname) + "/chat/hh_rlhf_harmless_test_en.jsonl";
const user = (content: string) => ({ role: "user" as const, content });
const bot = (content: string) => ({ role: "assistant" as const, content });

test("preference readers: TRL explicit and implicit prompts, HH transcripts, the feedback export, the shared HH file", async () => {
  const trl = file("trl.jsonl", [
    { prompt: "What is 2+2?", chosen: "4.", rejected: "5." },
    { prompt: [user("Hi"), bot("Hello!"), user("Name a color")], chosen: [bot("Blue.")], rejected: [bot("No.")] },
  ]);
  const implicit = file("implicit.jsonl", [
    { chosen: [user("Hi"), bot("Hello!"), user("Tell a joke")], rejected: [user("Hi"), bot("Hello!"), user("Tell a joke")] },
    { chosen: [{ role: "system", content: "Be kind." }, user("Hi"), bot("Hello, friend.")], rejected: [{ role: "system", content: "Be kind." }, user("Hi"), bot("Go away.")] },
  ]);
  const hh = file("hh.jsonl", [
    { chosen: "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.\n\nHuman: Please?\n\nAssistant: Still no.", rejected: "\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that.\n\nHuman: Please?\n\nAssistant: Fine: use a pin." },
  ]);
  const fb = file("preferences.jsonl", [
    { messages: [user("Say hi")], chosen: { role: "assistant", content: "Hi!" }, rejected: { role: "assistant", content: "Bye." } },
  ]);
  // The first implicit record has no reply on either side: an error naming file:line.
  await assert.rejects(loadPreferences([implicit], { valFraction: 0.5, seed: 1 }), (e: Error) => e.message.startsWith(`${implicit}:1: `) && /no prompt|chosen: no reply|share no beginning/.test(e.message));
  const skipped: string[] = [];
  const r = await loadPreferences([trl, implicit, hh, fb], { valFraction: 0.01, seed: 1, skipBad: true, onSkip: (e) => skipped.push(e.message) });
  assert.equal(r.skipped, 1);
  assert.match(skipped[0], /implicit\.jsonl:1: /);
  const all = [...r.train, ...r.val];
  assert.equal(all.length, 5);
  const by = (f: string) => all.filter((p) => p.file === f);
  assert.deepEqual(by(trl)[0].prompt, [user("What is 2+2?")]);
  assert.deepEqual(by(trl)[0].chosen, [bot("4.")]);
  assert.deepEqual(by(trl)[1].prompt, [user("Hi"), bot("Hello!"), user("Name a color")]);
  assert.deepEqual(by(implicit)[0], { ...by(implicit)[0], prompt: [{ role: "system", content: "Be kind." }, user("Hi")], chosen: [bot("Hello, friend.")], rejected: [bot("Go away.")] });
  assert.deepEqual(by(hh)[0].prompt, [user("How do I pick a lock?"), bot("I can't help with that."), user("Please?")]);
  assert.deepEqual([by(hh)[0].chosen, by(hh)[0].rejected], [[bot("Still no.")], [bot("Fine: use a pin.")]]);
  assert.deepEqual([by(fb)[0].prompt, by(fb)[0].chosen, by(fb)[0].rejected], [[user("Say hi")], [bot("Hi!")], [bot("Bye.")]]);

  // Bad records name the file, the line and the field.
  const bad = async (rows: unknown[], re: RegExp): Promise<void> => {
    const p = file("bad.jsonl", rows);
    await assert.rejects(loadPreferences([p], { valFraction: 0.1, seed: 1 }), (e: Error) => {
      assert.match(e.message, re);
      return true;
    });
  };
  await bad([{ prompt: "a", chosen: "b", rejected: "c" }, { prompt: "a", chosen: 3, rejected: "c" }], /bad\.jsonl:2: field "chosen" is number/);
  await bad([{ prompt: "a", chosen: "same", rejected: "same" }], /bad\.jsonl:1: chosen and rejected are the same reply/);
  await bad([{ messages: [user("a"), bot("b")], chosen: "c", rejected: "d" }], /bad\.jsonl:1: the prompt ends with a assistant message/);
  await bad([{ chosen: "just text", rejected: "other text" }], /bad\.jsonl:1: "chosen" is a plain string and there is no "prompt"/);
  await bad([{ prompt: "a", chosen: "b", rejected: "c" }, "{oops"], /bad\.jsonl:2: malformed JSON/);
  await bad([{ prompt: "a", chosen: [{ role: "robot", content: "x" }], rejected: "c" }], /bad\.jsonl:1: chosen\[0\]\.role is "robot"/);
  await bad([{ messages: [user("hi")] }], /bad\.jsonl:1: .*conversation without "chosen"\/"rejected"|ends on a user message/);

  if (existsSync(HH)) {
    const h = await loadPreferences([HH], { valFraction: 0.1, seed: 1337, skipBad: true });
    const n = h.train.length + h.val.length;
    // 1600 records; 4 have an empty chosen reply.
    assert.equal(h.skipped, 4);
    assert.equal(n, 1596 - h.stats[0].duplicates);
    assert.ok(h.val.length > 100 && h.val.length < 220, `${h.val.length} held out`);
    for (const p of h.train.slice(0, 50)) assert.equal(p.prompt.at(-1)!.role, "user");
  }
});

function tinyTokenizer(dir: string): ReturnType<typeof loadTokenizer> {
  saveTokenizer(dir, trainBpe(["Hello there, how are you? I am fine, thanks. What is two plus two? It is four."], { vocabSize: 256 + 8 + 40 }), { chatTemplate: CHAT_TEMPLATE });
  return loadTokenizer(dir);
}

test("renderPair: the one chat template; loss exactly on the reply's content and <|im_end|>; long prompts lose their oldest turns", () => {
  const tok = tinyTokenizer(join(tmp, "tok-render"));
  const prompt = [user("Hello there"), bot("Hi, how are you?"), user("What is two plus two?")];
  const pair = { prompt, chosen: [bot("It is four.")], rejected: [bot("Fine, thanks.")] };
  const r = renderPair(tok, pair, 200);
  const full = renderChat(tok, [...prompt, ...pair.chosen]);
  assert.deepEqual([...r.chosen.ids], full.ids);
  const nPrompt = renderChat(tok, prompt).ids.length;
  const header = renderChat(tok, prompt, { addGenerationPrompt: true }).ids.length;
  const content = tok.encode("It is four.").length;
  // Mask: 0 over the prompt (its assistant turn included) and the reply header; 1 on content + <|im_end|>; 0 on the final "\n".
  const want = full.ids.map((_, i) => (i >= header && i < header + content + 1 ? 1 : 0));
  assert.deepEqual([...r.chosen.mask], want);
  assert.equal(r.chosen.tokens, content + 1);
  assert.ok(header > nPrompt);
  assert.equal(r.truncated, false);
  // Budget too small for the whole prompt: the first turn goes, the question stays.
  const short = renderPair(tok, pair, full.ids.length - 3);
  assert.equal(short.truncated, true);
  assert.deepEqual([...short.chosen.ids], renderChat(tok, [prompt[2], ...pair.chosen]).ids);
});

const lossCases = (): { x: { policyChosen: number[]; policyRejected: number[]; refChosen: number[]; refRejected: number[] }; o: DpoLossOptions }[] => {
  const rng = seededRng(5);
  const v = (n: number, s: number) => Array.from({ length: n }, () => -s * (1 + rng.uniform()));
  const x = { policyChosen: v(7, 20), policyRejected: v(7, 20), refChosen: v(7, 20), refRejected: v(7, 20) };
  return [
    ...DPO_LOSSES.map((kind) => ({ x, o: { kind, beta: 0.1, labelSmoothing: 0 } })),
    { x, o: { kind: "sigmoid", beta: 0.3, labelSmoothing: 0.2 } },
    { x, o: { kind: "hinge", beta: 0.05, labelSmoothing: 0 } },
  ];
};

test("DPO loss and its gradient w.r.t. the policy log-probs: float64 finite differences", () => {
  for (const { x, o } of lossCases()) {
    const r = dpoLoss(x, o);
    const h = 1e-6;
    for (const [side, d] of [["policyChosen", r.dChosen], ["policyRejected", r.dRejected]] as const) {
      for (let i = 0; i < x.policyChosen.length; i++) {
        const at = (t: number): number => {
          const y = { ...x, [side]: x[side].map((v, j) => (j === i ? v + t : v)) };
          return dpoLoss(y, o).loss;
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        assert.ok(Math.abs(fd - d[i]) <= 1e-7 * Math.max(1, Math.abs(fd)), `${o.kind} ${side}[${i}]: ${d[i]} vs ${fd}`);
      }
    }
  }
});

const torchOk = spawnSync("/usr/bin/python3", ["-c", "import torch"]).status === 0;
test("DPO loss and its gradient match PyTorch autograd (float64, TRL's formulas)", { skip: torchOk ? false : "needs /usr/bin/python3 with python3-torch" }, () => {
  const cases = lossCases();
  const py = spawnSync("/usr/bin/python3", [new URL("./helpers/dpo_reference.py", import.meta.url).pathname], {
    input: JSON.stringify(cases.map(({ x, o }) => ({ kind: o.kind, beta: o.beta, label_smoothing: o.labelSmoothing, policy_chosen: x.policyChosen, policy_rejected: x.policyRejected, ref_chosen: x.refChosen, ref_rejected: x.refRejected }))),
    encoding: "utf8",
  });
  assert.equal(py.status, 0, py.stderr);
  const torch = JSON.parse(py.stdout) as { loss: number; d_chosen: number[]; d_rejected: number[] }[];
  cases.forEach(({ x, o }, c) => {
    const r = dpoLoss(x, o), t = torch[c];
    const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${o.kind} ${what}: ${a} vs torch ${b}`);
    close(r.loss, t.loss, "loss");
    t.d_chosen.forEach((g, i) => close(r.dChosen[i], g, `dChosen[${i}]`));
    t.d_rejected.forEach((g, i) => close(r.dRejected[i], g, `dRejected[${i}]`));
  });
});

test("DPO objective: the parameter gradient through the model matches finite differences (reference and native backends)", () => {
  const V = 50, T = 12;
  const config = modelConfigFor({ preset: "tiny", width: 32, layers: 2, heads: 2 }, V, T);
  const params = createParams(config);
  initParams(params, 3);
  const rng = seededRng(9);
  const seq = (n: number, p: number) => {
    const ids = Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * V));
    const mask = new Uint8Array(n).fill(1, p);
    return { ids, mask, tokens: n - p };
  };
  const ex: RenderedPair[] = [0, 1, 2].map((i) => ({ chosen: seq(8 + i, 4), rejected: seq(10 - i, 3 + i), truncated: false }));
  const ref = { c: Float64Array.from([-20, -25, -30]), r: Float64Array.from([-22, -21, -33]), nc: Int32Array.from([4, 5, 6]), nr: Int32Array.from([7, 6, 5]) };
  const batch = pairBatch(ex, [0, 1, 2], 0);
  for (const be of [referenceBackend, nativeBackend()]) {
    for (const [kind, norm, rpo] of [["sigmoid", false, 0], ["ipo", true, 0], ["hinge", false, 0], ["sigmoid", true, 0.7]] as const) {
      const obj = dpoObjective(ref, { kind, beta: 0.5, labelSmoothing: kind === "sigmoid" ? 0.1 : 0 }, norm, rpo);
      const m = createGPT(config, be, { params });
      m.zeroGrad();
      obj(m, batch, 3, T);
      const g = Float64Array.from(m.grads.data);
      const gn = Math.sqrt(g.reduce((s, v) => s + v * v, 0));
      const base = Float32Array.from(params.data);
      // Directional derivative along the gradient = |g|.
      const at = (t: number): number => {
        for (let i = 0; i < base.length; i++) params.data[i] = base[i] + (t * g[i]) / gn;
        const l = obj(m, batch, 3, T).loss;
        params.data.set(base);
        return l;
      };
      const eps = 1e-2;
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      assert.ok(Math.abs(fd / gn - 1) < 2e-3, `${be.name} ${kind} norm=${norm} rpo=${rpo}: |g| ${gn} vs finite difference ${fd}`);
    }
  }
});

test("dpo: stopped midway and resumed takes the same steps; the reference log-probs are computed once", { timeout: 120_000 }, async () => {
  setThreads(1);
  const tok = tinyTokenizer(join(tmp, "tok-resume"));
  const T = 32;
  const config = modelConfigFor({ preset: "tiny", width: 32, layers: 2, heads: 2 }, tok.vocabSize, T);
  const params = createParams(config);
  initParams(params, 4);
  const start = join(tmp, "start");
  mkdirSync(start);
  saveModelFolder(start, params);
  const rows = Array.from({ length: 60 }, (_, i) => ({ prompt: `What is ${i} plus two?`, chosen: `It is ${i + 2}.`, rejected: `I am fine, thanks ${i}.` }));
  const prefs = file("resume-prefs.jsonl", rows);
  const opts = (out: string, steps: number): DpoOptions => ({
    from: start, tokenizer: join(tmp, "tok-resume"), data: [prefs], loss: "sigmoid", beta: 0.1, labelSmoothing: 0, lengthNorm: "auto",
    valFraction: 0.2, evalPairs: 0, klPrompts: 0, klMaxTokens: 8,
    loop: { steps, batchSize: 4, seqLen: T, gradAccum: 2, schedule: "cosine", warmup: 2, minLrRatio: 0.1, optimizer: { ...DEFAULT_OPTIMIZER, kind: "adamw", lr: 1e-3, weightDecay: 0 }, clip: 1, evalEvery: 3, sampleEvery: 0, checkpointEvery: 0, seed: 2 },
    out, resume: false, keep: 2, write: () => {}, tty: false, logEvery: 1,
  });
  const full = await dpo(opts(join(tmp, "full"), 8));
  assert.equal(full.status, "done");
  assert.ok(full.after.loss < full.before.loss, `held-out loss ${full.before.loss} → ${full.after.loss}`);
  const out = join(tmp, "part");
  const ctl = new AbortController();
  const notes: string[] = [];
  const first = await dpo({ ...opts(out, 8), signal: ctl.signal, write: (s) => { notes.push(s); if (/^step 3\/8 /.test(s)) ctl.abort(); } });
  assert.equal(first.status, "stopped");
  assert.equal(first.step, 3);
  const refFile = join(out, REFERENCE_FILE);
  const mtime = statSync(refFile).mtimeMs;
  const cached = JSON.parse(readFileSync(refFile, "utf8")) as { pairs: Record<string, number[]> };
  assert.equal(Object.keys(cached.pairs).length, full.pairs.train + full.pairs.val);
  const resumed: string[] = [];
  const second = await dpo({ ...opts(out, 8), resume: true, write: (s) => resumed.push(s) });
  assert.equal(second.status, "done");
  assert.equal(statSync(refFile).mtimeMs, mtime, "the reference log-probs were recomputed");
  assert.ok(resumed.some((s) => /reference log-probs: all \d+ pairs from/.test(s)));
  assert.deepEqual([...first.losses, ...second.losses], full.losses);
  assert.equal(second.after.loss, full.after.loss);
  // metrics.jsonl carries TRL's names per step and per evaluation.
  const lines = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
  const step = lines.find((l) => l.type === "step")!;
  for (const k of ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"]) assert.equal(typeof step[k], "number", k);
  assert.ok(lines.some((l) => l.type === "eval" && typeof l["rewards/accuracies"] === "number"));
  // A run folder holds one run: without --resume or --force, a second run into it is refused
  // before anything is written; --force replaces the run (and reuses the reference cache).
  const before = readFileSync(join(out, "metrics.jsonl"), "utf8");
  await assert.rejects(dpo(opts(out, 8)), (e: Error) => e instanceof DpoSettingsError && /--out .*part already holds a run .*--resume.*--force/.test(e.message));
  assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8"), before, "metrics.jsonl untouched");
  const again = await dpo({ ...opts(out, 8), force: true });
  assert.deepEqual(again.losses, full.losses);
  assert.equal(readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").filter((l) => l.includes('"type":"step"')).length, 8, "one run's steps only");
});

test("mynah dpo refuses bad settings before anything runs, naming the flag", () => {
  const run = (args: string[]) => spawnSync(process.execPath, ["--import", "tsx", "-e", `import("./src/cli/main.ts").then((m) => m.main(["node", "mynah", ...${JSON.stringify(args)}])).catch((e) => { process.stderr.write("mynah: " + e.message + "\\n"); process.exit(1); })`], { encoding: "utf8", cwd: new URL("..", import.meta.url).pathname });
  const base = ["dpo", "--from", join(tmp, "start"), "--data", join(tmp, "resume-prefs.jsonl"), "--out", join(tmp, "cli")];
  let r = run([...base, "--loss", "kto"]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /option '--loss <kind>' argument 'kto' is invalid\. Allowed choices are sigmoid, ipo, hinge/);
  r = run([...base, "--beta", "0"]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /option '--beta <x>' argument '0' is invalid\. expected a number > 0, got "0"/);
  r = run([...base, "--loss", "ipo", "--label-smoothing", "0.1"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--label-smoothing applies to --loss sigmoid only/);
  assert.ok(!existsSync(join(tmp, "cli", "metrics.jsonl")));
});

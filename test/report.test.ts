/**
 * `mynah report`: two real (tiny) training runs overlaid and an eval results file, written as
 * one offline page, opened in headless Chromium (playwright-core driving Debian's
 * /usr/bin/chromium): no console errors, no request leaves the page, and every chart draws one
 * line per series. A screenshot is left in the temp folder to look at.
 */
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pretrain } from "../src/train/pretrain.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { runEval } from "../src/eval/run.ts";
import { parseTaskSpec } from "../src/eval/tasks.ts";
import { loadRun, writeReport } from "../src/eval/report.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";
import { makeModelFolder } from "./helpers/eval-model.ts";

const tmp = mkdtempSync(join(tmpdir(), "mynah-report-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const CHROMIUM = "/usr/bin/chromium";

async function playwright(): Promise<typeof import("playwright-core") | null> {
  try {
    return await import("playwright-core");
  } catch {
    return null;
  }
}

async function trainRun(out: string, lr: number): Promise<void> {
  const text = join(tmp, "text.txt");
  if (!existsSync(text)) writeFileSync(text, "the quick brown fox jumps over the lazy dog. ".repeat(200));
  await pretrain({
    data: [text], valFraction: 0.1, model: { preset: "tiny" }, evalBatches: 2, sampleTokens: 0, out, resume: false, keep: 1,
    loop: { steps: 12, batchSize: 4, seqLen: 32, gradAccum: 1, schedule: "cosine", warmup: 2, minLrRatio: 0.1,
      optimizer: { ...DEFAULT_OPTIMIZER, lr }, clip: 1, evalEvery: 4, sampleEvery: 0, checkpointEvery: 0, seed: 3 },
    write: () => {}, tty: false, logEvery: 100,
  });
}

test("mynah report: two runs overlaid and eval results, in headless Chromium", { timeout: 300_000 }, async (t) => {
  await trainRun(join(tmp, "lr-3e-3"), 3e-3);
  await trainRun(join(tmp, "lr-1e-2"), 1e-2);
  const model = join(tmp, "m", "model");
  makeModelFolder(model, 1);
  const mc = join(tmp, "mc.jsonl");
  writeFileSync(mc, JSON.stringify({ question: "The cat sat on the", choices: ["mat", "dog"], answer: 0 }) + "\n");
  const results = join(tmp, "results.json");
  await runEval({
    models: [model], tasks: [parseTaskSpec(`mc:${mc}`)], out: results, command: "mynah eval (test)",
    settings: { batch: 4, limit: Infinity, chat: "auto", samples: 1, temperature: 0, topK: 0, topP: 1, maxNewTokens: 8, seed: 0,
      extract: { kind: "auto" }, extractSpec: "auto", screen: DEFAULT_SCREEN_CONFIG, screenSpec: "default", perSkill: 2 },
  });

  // What the report reads from a run folder.
  const run = loadRun(join(tmp, "lr-3e-3"));
  assert.equal(run.series[0].steps.length, 12);
  assert.deepEqual(run.series[0].evals.map((e) => e.step), [4, 8, 12]);
  assert.equal(run.series[0].runInfo?.kind, "pretrain");

  const out = join(tmp, "report.html");
  const rep = await writeReport({ runs: [join(tmp, "lr-3e-3"), join(tmp, "lr-1e-2"), results], out });
  const md = readFileSync(join(tmp, "report.md"), "utf8");
  assert.match(md, /\| lr-3e-3 \| /);
  assert.match(md, /\| lr-1e-2 \| /);
  assert.match(md, /accuracy \(log-likelihood\)/);
  // Charts: two series in each per-step chart, four in the loss chart (train and validation of each run).
  const lines = Object.fromEntries(rep.charts.map((c) => [c.title.split(" (")[0], c.lines]));
  assert.equal(lines["loss"], 4);
  assert.equal(lines["learning rate"], 2);
  assert.equal(lines["validation bits per byte"], 2);
  assert.equal(lines["MFU"], 2);
  const html = readFileSync(out, "utf8");
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/); // no script, nothing fetched

  const pw = await playwright();
  if (!pw || !existsSync(CHROMIUM)) {
    t.skip(`headless check skipped: ${!pw ? "playwright-core is not installed" : `${CHROMIUM} is absent (apt-get install chromium)`}`);
    return;
  }
  const ctx = await pw.chromium.launchPersistentContext(join(tmp, "profile"), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1200, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await ctx.newPage();
    const errors: string[] = [], requests: string[] = [];
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("request", (r) => { if (!r.url().startsWith("file:")) requests.push(r.url()); });
    await page.goto(`file://${out}`);
    const figures = await page.$$eval("figure.chart", (fs) => fs.map((f) => ({
      title: f.getAttribute("data-title"), want: Number(f.getAttribute("data-lines")),
      drawn: f.querySelectorAll("g.mark-line path").length,
      visible: (f.querySelector("svg") as SVGSVGElement).getBoundingClientRect().height > 100,
    })));
    assert.ok(figures.length >= 5, JSON.stringify(figures));
    for (const f of figures) {
      assert.equal(f.drawn, f.want, `${f.title}: ${f.drawn} lines drawn, ${f.want} series`);
      assert.ok(f.visible, `${f.title} is not visible`);
    }
    assert.equal(await page.locator("table.eval td", { hasText: "accuracy (log-likelihood)" }).count(), 1);
    const shot = join(tmpdir(), "mynah-report-test.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, []);
  } finally {
    await ctx.close();
  }
});

/**
 * The server serves the report pages of the runs it knows (issue 13): the model's own run
 * folder (here: the model sits in a folder holding a run's metrics.jsonl, as a checkpoint
 * does) and a real training run given with `runs` (--runs). Real HTTP on 127.0.0.1 with an
 * API key: the header or the web UI's cookie opens them; nothing outside the known runs can be
 * named (path traversal answers 404); bad --runs are refused at start-up; a page is rebuilt
 * when its run grows. Then in headless Chromium: the UI asks for the key, links "Run reports",
 * and the report page it opens draws its curves with no console errors.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pretrain } from "../src/train/pretrain.ts";
import { DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { runFolderOf } from "../src/serve/reports.ts";
import type { RunningServer } from "../src/serve/http.ts";
import { makeModelFolder, startTestServer } from "./serve-helpers.ts";
import { chromiumSkip, launchChromium } from "./helpers/chromium.ts";

const KEY = "reports-key-123";
const tmp = mkdtempSync(join(tmpdir(), "mynah-serve-reports-"));
const trained = join(tmp, "lr-3e-3");
let model: string;
let server: RunningServer;

before(async () => {
  writeFileSync(join(tmp, "text.txt"), "the quick brown fox jumps over the lazy dog. ".repeat(200));
  await pretrain({
    data: [join(tmp, "text.txt")], valFraction: 0.1, model: { preset: "tiny" }, evalBatches: 2, sampleTokens: 0, out: trained, resume: false, keep: 1,
    loop: { steps: 12, batchSize: 4, seqLen: 32, gradAccum: 1, schedule: "cosine", warmup: 2, minLrRatio: 0.1,
      optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3 }, clip: 1, evalEvery: 4, sampleEvery: 0, checkpointEvery: 0, seed: 3 },
    write: () => {}, tty: false, logEvery: 100,
  });
  // The served model sits in a run folder of its own (as a checkpoint does): its metrics are
  // the trained run's first 8 steps.
  model = makeModelFolder({ seqLen: 128 });
  const lines = readFileSync(join(trained, "metrics.jsonl"), "utf8").split("\n").filter((l) => l && !/"step":(9|1\d)\b/.test(l));
  writeFileSync(join(dirname(model), "metrics.jsonl"), lines.join("\n") + "\n");
  server = await startTestServer(model, { apiKey: KEY, runs: [trained] });
});
after(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const get = (path: string, headers: Record<string, string> = {}): Promise<Response> => fetch(server.url + path, { headers });
const auth = { authorization: `Bearer ${KEY}` };

/** A GET with the path sent exactly as written (fetch would normalise ../ away). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: server.port, path, headers: auth }, (res) => {
      let body = "";
      res.on("data", (d) => { body += d; });
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("runFolderOf: a checkpoint's run, a speedrun stage's root, nothing for a lone model", () => {
  const root = join(tmp, "layout");
  mkdirSync(join(root, "sr", "pretrain", "step-000010"), { recursive: true });
  writeFileSync(join(root, "sr", "speedrun.json"), "{}");
  writeFileSync(join(root, "sr", "pretrain", "metrics.jsonl"), "");
  mkdirSync(join(root, "run", "step-000010"), { recursive: true });
  writeFileSync(join(root, "run", "metrics.jsonl"), "");
  mkdirSync(join(root, "lone", "model"), { recursive: true });
  assert.equal(runFolderOf(join(root, "sr", "pretrain", "step-000010")), join(root, "sr"));
  assert.equal(runFolderOf(join(root, "run", "step-000010")), join(root, "run"));
  assert.equal(runFolderOf(join(root, "run")), join(root, "run"));
  assert.equal(runFolderOf(join(root, "lone", "model")), null);
});

test("the list and each run's page, behind the API key (header or the UI's cookie)", async () => {
  assert.equal((await get("/reports")).status, 401);
  assert.equal((await get("/reports/1")).status, 401);
  assert.equal((await get("/reports", { cookie: "mynah-api-key=wrong-key-000" })).status, 401);
  const info = await (await get("/api/info", auth)).json();
  assert.equal(info.reports, 2);

  for (const h of [auth, { cookie: `mynah-api-key=${encodeURIComponent(KEY)}` }]) {
    const list = await get("/reports", h);
    assert.equal(list.status, 200);
    assert.match(list.headers.get("content-security-policy")!, /default-src 'none'/);
    const html = await list.text();
    // The model's own run (8 steps) first, then --runs (12 steps).
    const rows = [...html.matchAll(/<tr><td><a href="\/reports\/(\d)">([^<]+)<\/a><\/td><td>train<\/td><td>(\d+)<\/td>/g)].map((m) => [m[1], m[2], m[3]]);
    assert.deepEqual(rows, [["1", dirname(model).split("/").pop(), "8"], ["2", "lr-3e-3", "12"]]);
  }
  const page = await get("/reports/2", auth);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.doesNotMatch(html, /<script/);
  // The curves of `mynah report`: loss (train + validation), learning rate, … one line each.
  const figures = [...html.matchAll(/<figure class="chart" data-title="([^"]+)" data-lines="(\d+)">/g)].map((m) => [m[1].split(" (")[0], Number(m[2])]);
  assert.deepEqual(Object.fromEntries(figures).loss, 2);
  assert.ok(figures.length >= 5, JSON.stringify(figures));
  assert.match(html, /<a href="\/reports">/);
});

test("only the known runs: other ids and paths answer 404, never a file", async () => {
  for (const p of ["/reports/0", "/reports/3", "/reports/01", "/reports/1x", "/reports/..%2F..%2F..%2Fetc%2Fpasswd", "/reports/%2e%2e/%2e%2e/etc/passwd",
    "/reports/../../../../etc/passwd", "/reports/1/../../../../etc/passwd", "/reports/1/metrics.jsonl", `/reports/${encodeURIComponent(join(trained, "metrics.jsonl"))}`]) {
    const r = await rawGet(p);
    assert.ok(r.status === 404, `${p}: ${r.status}`);
    assert.doesNotMatch(r.body, /root:|"type":"step"/, p);
  }
});

test("a run that grows is shown grown", async () => {
  const before = await (await get("/reports/1", auth)).text();
  const last = readFileSync(join(trained, "metrics.jsonl"), "utf8").split("\n").find((l) => /"type":"step".*"step":9\b|"step":9,.*"type":"step"/.test(l))!;
  appendFileSync(join(dirname(model), "metrics.jsonl"), last + "\n");
  const after = await (await get("/reports/1", auth)).text();
  assert.notEqual(after, before);
  assert.match(await (await get("/reports", auth)).text(), /<td>train<\/td><td>9<\/td>/);
});

test("--runs is checked at start-up, naming the flag and the folder", async () => {
  await assert.rejects(startTestServer(model, { runs: [join(tmp, "nope")] }), new RegExp(`--runs ${join(tmp, "nope")}: no such file or folder`));
  mkdirSync(join(tmp, "empty"));
  await assert.rejects(startTestServer(model, { runs: [join(tmp, "empty")] }), /--runs .*empty: not a run folder/);
});

test("in the browser: the UI links the reports, the page draws its curves, no console errors", { skip: chromiumSkip, timeout: 120_000 }, async () => {
  const ctx = await launchChromium();
  try {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on("dialog", (d) => void d.accept(KEY)); // the UI asks for the key once
    await page.goto(server.url + "/");
    await page.waitForSelector("body[data-ready='1']");
    const link = page.locator("#reports");
    await link.waitFor({ state: "visible" });
    const [list] = await Promise.all([ctx.waitForEvent("page"), link.click()]);
    list.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    list.on("pageerror", (e) => errors.push(String(e)));
    await list.waitForLoadState();
    await list.click("a[href='/reports/2']");
    await list.waitForSelector("figure.chart");
    const figures = await list.$$eval("figure.chart", (fs) => fs.map((f) => ({
      title: f.getAttribute("data-title"), want: Number(f.getAttribute("data-lines")), drawn: f.querySelectorAll("g.mark-line path").length,
      height: (f.querySelector("svg") as SVGSVGElement).getBoundingClientRect().height,
    })));
    assert.ok(figures.length >= 5, JSON.stringify(figures));
    for (const f of figures) {
      assert.equal(f.drawn, f.want, `${f.title}: ${f.drawn} lines drawn, ${f.want} series`);
      assert.ok(f.height > 100, `${f.title} is not visible`);
    }
    const shot = join(tmpdir(), "mynah-serve-report.png");
    await list.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    assert.deepEqual(errors, []);
  } finally {
    await ctx.close();
  }
});

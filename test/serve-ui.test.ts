/**
 * The web UI in headless Chromium (playwright-core driving Debian's /usr/bin/chromium, never a
 * downloaded browser): send and watch a reply stream, Stop, regenerate, edit and resend,
 * thumbs and a correction, reload and see the history; model text with <img onerror> and
 * <script> shows as text and runs nothing; Enter during IME composition does not send.
 * A screenshot of each theme is written to $MYNAH_UI_SHOTS (default: the temp folder).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeModelFolder, startTestServer } from "./serve-helpers.ts";
import type { RunningServer } from "../src/serve/http.ts";

const CHROMIUM = "/usr/bin/chromium";
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;

let server: RunningServer;
// playwright-core is loaded only when the browser exists.
type PW = typeof import("playwright-core");
let ctx: Awaited<ReturnType<PW["chromium"]["launchPersistentContext"]>>;

before(async () => {
  if (skip) return;
  // Wide enough that a 900-token reply takes seconds: time to see it stream and to Stop it.
  const model = makeModelFolder({ seqLen: 1024, nLayer: 6, nEmbd: 384 });
  server = await startTestServer(model, { db: join(model, "..", "mynah.db"), parallel: 2 });
  const { chromium } = await import("playwright-core");
  ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "mynah-chromium-")), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1200, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await ctx?.close();
  await server?.close();
});

test("chat in the browser: stream, stop, regenerate, edit, feedback, reload, safe rendering, IME", { skip, timeout: 120_000 }, async () => {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => { errors.push(`dialog: ${d.message()}`); void d.dismiss(); });
  await page.goto(server.url + "/");
  await page.waitForSelector("body[data-ready='1']");

  // Settings: long replies so that streaming and Stop can be seen.
  await page.click("#settings-toggle");
  await page.fill("#set-max_tokens", "900");
  await page.fill("#set-temperature", "0");
  await page.fill("#set-system", "You are a helpful bird.");
  await page.click("#settings-save");
  await page.waitForFunction(() => document.getElementById("settings-note")!.textContent === "Saved.");
  await page.click("#settings-toggle");

  // Send with Enter; the reply streams (text grows while the Stop button shows), then Stop.
  await page.fill("#input", "Hello bird, tell me a story");
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.user >> text=Hello bird, tell me a story");
  // Seen growing: a first length, then a longer one, while the reply is still streaming.
  await page.waitForFunction(() => {
    const n = document.querySelector(".msg.streaming .body")?.textContent?.length ?? 0;
    const w = window as unknown as { __first?: number };
    if (w.__first === undefined) { if (n > 0) w.__first = n; return false; }
    return n > w.__first;
  }, null, { polling: 10 });
  await page.click("#stop");
  await page.waitForSelector(".msg.assistant:not(.streaming) >> text=(stopped)");
  assert.equal(await page.isVisible("#send"), true);
  const conv = server.store.listConversations()[0];
  const stopped = server.store.messages(conv.id).find((m) => m.role === "assistant")!;
  assert.equal(stopped.finish_reason, "cancelled");
  assert.ok(stopped.completion_tokens! < 900, `stopped after ${stopped.completion_tokens} tokens`);

  // Regenerate (short replies now): the old reply stays as version 1 of 2.
  await page.click("#settings-toggle");
  await page.fill("#set-max_tokens", "30");
  await page.click("#settings-save");
  await page.waitForFunction(() => document.getElementById("settings-note")!.textContent === "Saved.");
  await page.click("#settings-toggle");
  await page.click(".msg.assistant >> text=Regenerate");
  await page.waitForSelector(".msg.assistant .nav >> text=2/2");
  await page.waitForSelector(".msg.assistant:not(.streaming) .badge");
  assert.equal(server.store.messages(conv.id).filter((m) => m.role === "assistant").length, 2);

  // Edit the user message and resend: a branch (2/2 on the user message) with its own reply.
  await page.click(".msg.user >> text=Edit");
  await page.fill(".msg.user .editor textarea", "Hello again, 你好");
  await page.click(".msg.user >> text=Save & resend");
  await page.waitForSelector(".msg.user .nav >> text=2/2");
  await page.waitForSelector(".msg.user >> text=Hello again, 你好");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant:not(.streaming) .badge").length === 1);

  // Thumbs up, and a better answer written by the person.
  await page.click(".msg.assistant >> button[title='Good reply']");
  await page.waitForSelector(".msg.assistant button.on[title='Good reply']");
  await page.click(".msg.assistant >> text=Write a better answer");
  await page.fill(".msg.assistant .editor textarea", "Hello! I am a **mynah**, a talking bird.");
  await page.click(".msg.assistant >> text=Save correction");
  await page.waitForSelector(".correction strong >> text=mynah");
  const replyId = await page.getAttribute(".msg.assistant", "data-id");
  const stored = server.store.getMessage(replyId!)!;
  assert.equal(stored.rating, 1);
  assert.equal(stored.correction, "Hello! I am a **mynah**, a talking bird.");

  // Reload: the conversation, its branch and the feedback come back from the server.
  await page.reload();
  await page.waitForSelector("body[data-ready='1']");
  await page.waitForSelector(".msg.user >> text=Hello again, 你好");
  await page.waitForSelector(".correction strong >> text=mynah");
  assert.equal(await page.textContent("#conversations li.active"), "Hello bird, tell me a story");

  // Model text with HTML shows as text and runs nothing.
  const evil = server.store.createConversation({ title: "evil" });
  const u = server.store.addMessage(evil.id, { parent_id: null, role: "user", content: "<b>hi</b> <img src=x onerror=\"window.__xss=3\">", model: null, settings: null,
    finish_reason: null, screen_verdict: null, screen: null, mean_logprob: null, prompt_tokens: null, completion_tokens: null, ttft_ms: null, duration_ms: null });
  server.store.addMessage(evil.id, { parent_id: u.id, role: "assistant", content: "Look: <img src=x onerror=\"window.__xss=1\"> <script>window.__xss=2</script>\n\n**bold** and `code`\n\n[link](javascript:window.__xss=4)",
    model: "m", settings: null, finish_reason: "stop", screen_verdict: "pass", screen: { flags: [], events: [] }, mean_logprob: -0.5, prompt_tokens: 3, completion_tokens: 9, ttft_ms: 1, duration_ms: 2 });
  await page.click("#search");
  await page.fill("#search", "evil");
  await page.waitForSelector("#conversations li >> text=evil");
  await page.click("#conversations li >> text=evil");
  await page.waitForSelector(".msg.assistant strong >> text=bold");
  await page.click(".msg.assistant a").catch(() => {});
  await page.waitForTimeout(300);
  const probe = await page.evaluate(() => ({
    xss: (window as unknown as { __xss?: number }).__xss,
    scripts: document.querySelectorAll("#messages script").length,
    imgs: document.querySelectorAll("#messages img").length,
    handlers: [...document.querySelectorAll("#messages *")].filter((e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
    text: document.querySelector(".msg.assistant .body")!.textContent,
    userText: document.querySelector(".msg.user .body")!.textContent,
    href: document.querySelector(".msg.assistant a")?.getAttribute("href") ?? null,
  }));
  assert.equal(probe.xss, undefined);
  assert.equal(probe.scripts, 0);
  assert.equal(probe.imgs, 0);
  assert.equal(probe.handlers, 0);
  assert.ok(probe.text!.includes("<img src=x onerror=\"window.__xss=1\">"), probe.text!);
  assert.ok(probe.text!.includes("<script>window.__xss=2</script>"), probe.text!);
  assert.equal(probe.userText, "<b>hi</b> <img src=x onerror=\"window.__xss=3\">");
  assert.ok(probe.href === null || !probe.href.startsWith("javascript:"), String(probe.href));

  // Enter while an input method is composing confirms the candidate; it does not send.
  await page.fill("#search", "");
  await page.click("#new-chat");
  await page.click("#input");
  const before = server.store.listConversations("", "all").length;
  const cdp = await ctx.newCDPSession(page);
  await cdp.send("Input.imeSetComposition", { text: "nihao", selectionStart: 5, selectionEnd: 5 });
  await page.keyboard.press("Enter");
  await cdp.send("Input.insertText", { text: "你好" });
  // The same with a synthetic composing keydown, for engines that end composition first.
  await page.evaluate(() => document.getElementById("input")!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", isComposing: true, bubbles: true, cancelable: true })));
  await page.waitForTimeout(400);
  assert.equal(server.store.listConversations("", "all").length, before);
  // (CDP's composition is not a real IME, so its Enter also reaches the textarea as a newline;
  // a real IME consumes it. What matters: the handler saw the composition and did not send.)
  assert.equal((await page.inputValue("#input")).trim(), "你好");
  assert.equal(await page.locator("#messages .msg").count(), 0);

  // Screenshots of both themes (look at them: docs/ui.png is the light one).
  const shots = process.env.MYNAH_UI_SHOTS ?? mkdtempSync(join(tmpdir(), "mynah-ui-shots-"));
  await page.click("#conversations li >> text=Hello bird, tell me a story");
  await page.waitForSelector(".correction");
  await page.evaluate(() => { document.documentElement.dataset.theme = "light"; });
  await page.screenshot({ path: join(shots, "ui-light.png") });
  await page.evaluate(() => { document.documentElement.dataset.theme = "dark"; });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, "rgb(21, 23, 27)");
  await page.screenshot({ path: join(shots, "ui-dark.png") });
  console.log(`# screenshots: ${join(shots, "ui-light.png")}, ${join(shots, "ui-dark.png")}`);
  assert.deepEqual(errors, []);
});

/**
 * The chat REPL on piped input: slash commands, streamed replies passing screening (a canned
 * reply with PII is redacted before it is written), the screening log, /save.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough, Writable } from "node:stream";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe } from "../src/tokenizer/index.ts";
import { ChatSession, type ChatTurnResult } from "../src/infer/session.ts";
import { runChatRepl } from "../src/cli/chat-repl.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";
import { tinyModel } from "./infer-tiny.ts";

const tok = trainBpe(["hello there", "call me", "你好"], { vocabSize: 280 });

/** A session whose replies are canned (streamed in 3-character pieces), to test screening in the loop. */
class CannedSession extends ChatSession {
  replies: string[] = [];
  override send(user: string, onText?: (t: string) => void): ChatTurnResult {
    this.messages.push({ role: "user", content: user });
    const text = this.replies.shift() ?? "ok";
    for (let i = 0; i < text.length; i += 3) {
      onText?.(text.slice(i, i + 3));
      if (this.gen.shouldStop?.(0)) break;
    }
    this.messages.push({ role: "assistant", content: text });
    return { generation: { ids: [1, 2], logprobs: [-0.1, -0.3], text, finish: "stop" }, dropped: 0, promptTokens: 5 };
  }
  override async sendAsync(user: string, onText?: (t: string) => void): Promise<ChatTurnResult> {
    return this.send(user, onText);
  }
}

function sink(): { stream: Writable; text: () => string } {
  let s = "";
  return { stream: new Writable({ write(c, _e, cb) { s += c.toString(); cb(); } }), text: () => s };
}

test("piped chat: commands, screened streaming, log, save", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-repl-"));
  const session = new CannedSession(tinyModel({ vocabSize: tok.vocabSize, seqLen: 128 }), tok, { gen: { temperature: 0 } });
  session.replies = ["Sure, call me at 138 1234 5678 or mail a.b@example.com.", "First build a pipe bomb with ..."];
  const input = new PassThrough();
  const out = sink(), notes = sink();
  const done = runChatRepl({ session, screen: DEFAULT_SCREEN_CONFIG, screenLog: join(dir, "log.jsonl"), input, output: out.stream, notes: notes.stream, tty: false });
  input.end(["/set temperature 0.5", "/set top-k 7", "/set top-p 2", "/system be brief", "hello", "how to?", `/save ${join(dir, "chat.json")}`, "/reset", "/bogus", ""].join("\n") + "\n");
  await done;
  const lines = out.text().split("\n");
  assert.equal(lines[0], "Sure, call me at [PHONE] or mail [EMAIL].");
  assert.ok(!out.text().includes("5678") && !out.text().includes("a.b@"));
  assert.ok(out.text().includes(DEFAULT_SCREEN_CONFIG.refusal));
  assert.ok(!out.text().includes("pipe bomb with"), out.text());
  assert.equal(session.gen.temperature, 0.5);
  assert.equal(session.gen.topK, 7);
  assert.notEqual(session.gen.topP, 2);
  assert.match(notes.text(), /not set: top-p: expected a number in \(0, 1\], got "2"/);
  assert.match(notes.text(), /unknown command \/bogus/);
  assert.match(notes.text(), /redacted; pii:phone: redact; pii:email: redact; mean logprob -0.20/);
  const saved = JSON.parse(readFileSync(join(dir, "chat.json"), "utf8"));
  assert.deepEqual(saved.messages.map((m: { role: string }) => m.role), ["system", "user", "assistant", "user", "assistant"]);
  // The history holds the screened replies, not the raw ones.
  assert.equal(saved.messages[2].content, "Sure, call me at [PHONE] or mail [EMAIL].");
  assert.equal(saved.messages[4].content, DEFAULT_SCREEN_CONFIG.refusal);
  assert.equal(saved.settings.temperature, 0.5);
  assert.deepEqual(session.messages, [{ role: "system", content: "be brief" }]);
  const log = readFileSync(join(dir, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(log.map((r) => r.verdict), ["redacted", "blocked"]);
  assert.equal(log[1].events[0].rule, "mass-harm-instructions");
});

test("terminal chat: Ctrl-C stops a reply being generated and the chat goes on", { timeout: 60_000 }, async () => {
  const { nativeBackend } = await import("../src/core/native.ts");
  // A real model generating for a long time: no stop tokens, a long context, no loop/length cut.
  const model = tinyModel({ vocabSize: tok.vocabSize, seqLen: 4096 }, 5, nativeBackend());
  const session = new ChatSession(model, tok, { gen: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 4000, seed: 1 } });
  session.gen.stopTokens = [];
  const screen = { ...DEFAULT_SCREEN_CONFIG, degeneration: { ...DEFAULT_SCREEN_CONFIG.degeneration, enabled: false } };
  const input = new PassThrough();
  let shown = "";
  let replyStarted: () => void = () => {};
  const started = new Promise<void>((r) => (replyStarted = r));
  const output = new Writable({ write(c, _e, cb) { shown += c.toString(); if (/mynah> ./s.test(shown)) replyStarted(); cb(); } });
  const done = runChatRepl({ session, screen, input, output, notes: output, tty: true });
  const t0 = performance.now();
  input.write("hello there\n");
  await started; // the reply is streaming: the event loop runs while it generates
  input.write("\x03"); // Ctrl-C
  // The chat is still there: the next message gets a reply, which we let finish quickly.
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(/\[stopped\]/.test(shown), `no [stopped] note in ${JSON.stringify(shown.slice(-200))}`);
  const first = session.messages.find((m) => m.role === "assistant")!;
  const firstTokens = tok.encode(first.content).length;
  assert.ok(firstTokens < 3000, `the first reply ran on (${firstTokens} tokens)`);
  session.gen.maxNewTokens = 5;
  input.write("call me\n");
  await new Promise((r) => setTimeout(r, 300));
  input.write("/quit\n");
  await done;
  assert.equal(session.messages.filter((m) => m.role === "assistant").length, 2, JSON.stringify(session.messages.map((m) => m.role)));
  assert.ok(performance.now() - t0 < 30_000);
});

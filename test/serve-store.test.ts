/**
 * Storage: the SQLite schema (owner-only file, WAL, version), `mynah feedback export` shapes
 * (corrections replace replies; pairs from corrections and from thumbs up/down siblings), and
 * durability: the server is killed with SIGKILL while feedback is being written; on restart
 * `PRAGMA integrity_check` is ok and every feedback the server acknowledged (200) is there.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Store, SCHEMA_VERSION, GROUP_COMMIT_MS, type NewMessage } from "../src/serve/store.ts";
import { exportFeedback } from "../src/serve/feedback-export.ts";
import { makeModelFolder, screenFileOf } from "./serve-helpers.ts";

const msg = (parent: string | null, role: "user" | "assistant", content: string): NewMessage => ({
  parent_id: parent, role, content, model: role === "assistant" ? "m" : null, settings: null, finish_reason: role === "assistant" ? "stop" : null,
  screen_verdict: role === "assistant" ? "pass" : null, screen: null, mean_logprob: role === "assistant" ? -1 : null,
  prompt_tokens: null, completion_tokens: null, ttft_ms: null, duration_ms: null,
});

test("database: owner-only file, WAL, schema version, cascade delete", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-store-"));
  const path = join(dir, "mynah.db");
  const s = new Store(path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(s.db.pragma("journal_mode", { simple: true }), "wal");
  assert.equal(s.db.pragma("user_version", { simple: true }), SCHEMA_VERSION);
  const c = s.createConversation({ title: "t" });
  const u = s.addMessage(c.id, msg(null, "user", "hi"));
  const a = s.addMessage(c.id, msg(u.id, "assistant", "hello"));
  assert.ok(s.setFeedback(a.id, { rating: 1 }));
  assert.ok(s.setFeedback(a.id, { correction: "Hello!" }));
  assert.equal(s.getMessage(a.id)!.rating, 1, "a correction keeps the rating");
  assert.equal(s.getMessage(a.id)!.correction, "Hello!");
  assert.equal(s.setFeedback("nope", { rating: 1 }), false);
  assert.equal(s.getConversation(c.id)!.leaf_id, a.id);
  assert.deepEqual(s.listConversations("hello").map((x) => x.id), [c.id], "search finds message text");
  assert.deepEqual(s.listConversations("100%"), []);
  assert.ok(s.deleteConversation(c.id));
  assert.equal(s.getMessage(a.id), undefined);
  assert.equal((s.db.prepare("SELECT count(*) AS n FROM feedback").get() as { n: number }).n, 0);
  s.close();
  // Reopening migrates nothing and keeps the version; a newer file is refused.
  const again = new Store(path);
  again.db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  again.close();
  assert.throws(() => new Store(path), /schema version 2 is newer/);
});

test("group commit: deferred writes land together within GROUP_COMMIT_MS, a failing one alone is rolled back, close commits the rest", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-store-"));
  const path = join(dir, "mynah.db");
  const s = new Store(path);
  const other = new Database(path, { readonly: true });
  const count = (): number => (other.prepare("SELECT COUNT(*) AS n FROM messages").get() as { n: number }).n;
  const conv = s.createConversation({ title: "api", source: "api" });
  const errors: string[] = [];
  const origError = console.error;
  console.error = (m: string) => { errors.push(String(m)); };
  try {
    s.later(() => { s.addMessage(conv.id, msg(null, "user", "one")); });
    // A write that fails half-way: its first row must not survive.
    s.later(() => { s.addMessage(conv.id, msg(null, "user", "half")); s.addMessage("no-such-conversation", msg(null, "user", "bad")); });
    s.later(() => { s.addMessage(conv.id, msg(null, "user", "two")); });
    assert.equal(count(), 0, "nothing is committed before the group's time");
    await new Promise((r) => setTimeout(r, GROUP_COMMIT_MS + 100));
    assert.deepEqual(s.messages(conv.id).map((m) => m.content), ["one", "two"]);
    assert.equal(count(), 2, "another connection sees the group");
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /deferred write failed and was rolled back/);
    s.later(() => { s.addMessage(conv.id, msg(null, "user", "three")); });
  } finally {
    console.error = origError;
  }
  s.close();
  assert.equal(count(), 3, "close commits what was waiting");
  other.close();
});

test("feedback export: conversations with corrections, preference pairs", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-export-"));
  const path = join(dir, "mynah.db");
  const s = new Store(path);
  // Conversation 1: system prompt; two turns; the second reply corrected.
  const c1 = s.createConversation({ title: "one", system: "Be brief." });
  const u1 = s.addMessage(c1.id, msg(null, "user", "Hi"));
  const a1 = s.addMessage(c1.id, msg(u1.id, "assistant", "Hello."));
  const u2 = s.addMessage(c1.id, msg(a1.id, "user", "What is a mynah?"));
  const a2 = s.addMessage(c1.id, msg(u2.id, "assistant", "A fish."));
  s.setFeedback(a2.id, { correction: "A talking bird." });
  // Conversation 2: a reply regenerated; the first rated down, the second up (shown branch).
  const c2 = s.createConversation({ title: "two" });
  const v1 = s.addMessage(c2.id, msg(null, "user", "2+2?"));
  const bad = s.addMessage(c2.id, msg(v1.id, "assistant", "5"));
  const good = s.addMessage(c2.id, msg(v1.id, "assistant", "4"));
  s.setFeedback(bad.id, { rating: -1 });
  s.setFeedback(good.id, { rating: 1 });
  // Conversation 3: the only reply rated down without a correction: nothing to teach.
  const c3 = s.createConversation({ title: "three" });
  const w1 = s.addMessage(c3.id, msg(null, "user", "Say something"));
  const w2 = s.addMessage(c3.id, msg(w1.id, "assistant", "blah blah"));
  s.setFeedback(w2.id, { rating: -1 });
  // Conversation 4: a user message with no reply.
  const c4 = s.createConversation({ title: "four" });
  s.addMessage(c4.id, msg(null, "user", "anyone?"));
  s.close();

  const out = join(dir, "out");
  const r = exportFeedback({ db: path, out });
  assert.deepEqual(r, { conversations: 2, preferences: 2, fromCorrections: 1, fromRatings: 1, messages: 7 });
  const conv = readFileSync(join(out, "conversations.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(conv, [
    { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }, { role: "assistant", content: "Hello." },
                 { role: "user", content: "What is a mynah?" }, { role: "assistant", content: "A talking bird." }] },
    { messages: [{ role: "user", content: "2+2?" }, { role: "assistant", content: "4" }] },
  ]);
  const prefs = readFileSync(join(out, "preferences.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(prefs, [
    { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }, { role: "assistant", content: "Hello." }, { role: "user", content: "What is a mynah?" }],
      chosen: { role: "assistant", content: "A talking bird." }, rejected: { role: "assistant", content: "A fish." } },
    { messages: [{ role: "user", content: "2+2?" }], chosen: { role: "assistant", content: "4" }, rejected: { role: "assistant", content: "5" } },
  ]);
  assert.throws(() => exportFeedback({ db: join(dir, "missing.db"), out }), /missing\.db does not exist/);
});

const mainTs = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
/** Starts `mynah serve` in a child process; resolves with its URL once it prints the startup line. */
function serveChild(args: string[]): Promise<{ url: string; kill: () => void; exited: Promise<void> }> {
  const code = `import { main } from ${JSON.stringify(mainTs)}; await main(["node", "mynah", ...process.argv.slice(1)]);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return new Promise((resolve, reject) => {
    let out = "", err = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /Open the chat UI at (http:\/\/\S+?)\/ /.exec(out);
      if (m) resolve({ url: m[1], kill: () => child.kill("SIGKILL"), exited });
    });
    child.stderr.on("data", (d) => { err += d; });
    child.once("exit", (c) => reject(new Error(`serve exited (${c}): ${err}`)));
  });
}

test("durability: kill -9 while feedback is written loses nothing acknowledged", { timeout: 120_000 }, async () => {
  const model = makeModelFolder({ seqLen: 256 });
  const db = join(model, "..", "durable.db");
  const s1 = await serveChild(["--model", model, "--port", "0", "--db", db, "--threads", "1", "--screen", screenFileOf(model)]);
  const call = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const r = await fetch(s1.url + path, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (r.status >= 400) throw new Error(`${path}: ${r.status} ${text}`);
    if (r.headers.get("content-type")?.includes("event-stream")) return JSON.parse(text.trim().split("\n\n").at(-1)!.slice(6));
    return JSON.parse(text);
  };
  const conv = await call("POST", "/api/conversations", { settings: { max_tokens: 2, temperature: 0 } });
  const replies: string[] = [];
  for (let i = 0; i < 12; i++) {
    const u = await call("POST", `/api/conversations/${conv.id}/messages`, { parent_id: null, content: `question ${i}` });
    const done = await call("POST", `/api/conversations/${conv.id}/reply`, { parent_id: u.id });
    replies.push((done.message as { id: string }).id);
  }
  // Feedback in flight from many clients; the server is killed in the middle.
  const acked = new Map<string, string>();
  let n = 0;
  const writer = async (): Promise<void> => {
    for (;;) {
      const i = n++;
      const id = replies[i % replies.length], correction = `better answer ${i}`;
      try {
        const r = await fetch(`${s1.url}/api/messages/${id}/feedback`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ rating: 1, correction }) });
        if (r.status === 200) acked.set(id, correction);
      } catch {
        return; // the server is gone
      }
    }
  };
  const writers = Array.from({ length: 8 }, writer);
  while (acked.size < replies.length || n < 60) await new Promise((r) => setTimeout(r, 5));
  s1.kill();
  await Promise.all(writers);
  await s1.exited;
  assert.ok(n >= 60);

  const check = new Database(db, { readonly: true });
  assert.equal(check.pragma("integrity_check", { simple: true }), "ok");
  check.close();
  // Restart on the same file: every acknowledged write is there (the latest per message,
  // or a later one that was written but whose answer never arrived).
  const s2 = await serveChild(["--model", model, "--port", "0", "--db", db, "--threads", "1"]);
  try {
    const j = await (await fetch(`${s2.url}/api/conversations/${conv.id}`)).json() as { messages: { id: string; rating?: number; correction?: string }[] };
    for (const [id, correction] of acked) {
      const m = j.messages.find((x) => x.id === id)!;
      assert.equal(m.rating, 1);
      const num = (s: string): number => Number(s.split(" ").at(-1));
      assert.ok(m.correction && num(m.correction) >= num(correction), `${id}: stored ${m.correction}, acknowledged ${correction}`);
    }
  } finally {
    s2.kill();
    await s2.exited;
  }
});

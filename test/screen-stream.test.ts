/** Streaming screening: PII split across pieces is never shown; a late block is reported. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { screenedStream } from "../src/screen/stream.ts";
import { DEFAULT_SCREEN_CONFIG, screenReply, type ScreenConfig } from "../src/screen/index.ts";
import { blockedByRules } from "../src/screen/screen.ts";

function feed(text: string, size: number): { shown: string; diverged: boolean; final: string; early: boolean } {
  let shown = "";
  const s = screenedStream(DEFAULT_SCREEN_CONFIG, (t) => (shown += t));
  for (let i = 0; i < text.length; i += size) s.push(text.slice(i, i + size));
  const early = s.stopEarly;
  const { result, diverged } = s.end();
  return { shown, diverged, final: result.text, early };
}

test("a phone number and an e-mail streamed in pieces never appear", () => {
  const text = "Sure. You can reach Li Lei at 138 1234 5678 or by mail at li.lei@example.com any time this week.";
  for (const size of [1, 2, 3, 7]) {
    const r = feed(text, size);
    assert.equal(r.diverged, false);
    assert.equal(r.shown, r.final);
    assert.ok(!r.shown.includes("5678") && !r.shown.includes("li.lei"), r.shown);
    assert.ok(r.shown.includes("[PHONE]") && r.shown.includes("[EMAIL]"));
  }
});

test("a block that fires late stops the stream and is reported as diverged", () => {
  const intro = "Here is a long and friendly introduction. It goes on for quite a while, talking about the weather, " +
    "the news of the day, a book it read last week and the songs it likes, before it finally gets to the point. ";
  const text = intro + "Then it says: first you build a pipe bomb, and more text follows after that.";
  const r = feed(text, 4);
  assert.equal(r.early, true);
  assert.equal(r.diverged, true);
  assert.ok(r.shown.length > 0 && intro.startsWith(r.shown), r.shown);
  assert.equal(r.final, DEFAULT_SCREEN_CONFIG.refusal);
  // A block early in a reply stops it before anything is shown.
  const short = feed("Sure: first you build a pipe bomb from a steel pipe and then you", 2);
  assert.equal(short.early, true);
  assert.equal(short.shown, DEFAULT_SCREEN_CONFIG.refusal);
  const clean = feed("Hello there, how are you doing today? All fine here.", 3);
  assert.equal(clean.shown, "Hello there, how are you doing today? All fine here.");
});

test("an e-mail address split over many tokens: no part of it is ever shown before it is redacted", () => {
  // Longer than the old 48-character hold-back: its start lay outside it.
  const address = "firstname.middlename.lastname.department@subdomain.example-company.co.uk";
  const text = `Thanks for asking! Please write to ${address} and we will answer within two days.`;
  for (const size of [1, 2, 3, 5]) {
    let shown = "";
    const pieces: string[] = [];
    const s = screenedStream(DEFAULT_SCREEN_CONFIG, (t) => { shown += t; pieces.push(shown); });
    for (let i = 0; i < text.length; i += size) {
      s.push(text.slice(i, i + size));
      // Nothing of the address, not even its first characters after the space, ever on screen.
      assert.ok(!/to f/.test(shown) && !shown.includes("firstname"), `after ${i + size} characters: ${JSON.stringify(shown)}`);
    }
    const { result, diverged } = s.end();
    assert.equal(diverged, false);
    assert.equal(shown, result.text);
    assert.equal(shown, "Thanks for asking! Please write to [EMAIL] and we will answer within two days.");
  }
});

test("streaming screens each token's neighbourhood, not the whole reply: the cost grows linearly", () => {
  // A long reply with names, numbers and addresses sprinkled in, token by token (3 characters).
  const words = ["the", "model", "answers", "questions", "about", "numbers", "like", "42", "and", "3.14,", "mail", "me", "at", "a.b@c.org", "or", "call", "+1 415 555 0100.", "你好，", "世界。"];
  const make = (n: number): string => {
    let t = "", x = 1;
    while (t.length < n) { x = (x * 1103515245 + 12345) >>> 0; t += words[x % words.length] + " "; }
    return t.slice(0, n);
  };
  const cost = (text: string): { work: number; shown: string; final: string } => {
    let shown = "";
    const s = screenedStream(DEFAULT_SCREEN_CONFIG, (t) => (shown += t));
    for (let i = 0; i < text.length; i += 3) s.push(text.slice(i, i + 3));
    const work = s.screenedChars;
    const { result } = s.end();
    return { work, shown, final: result.text };
  };
  const small = cost(make(2000)), big = cost(make(16000));
  // Per character, the work is bounded by the hold-back (131 here), not by the reply's length:
  // re-screening the whole reply every token would cost ~n/6 per character (2,700 at n = 16,000).
  assert.ok(big.work / 16000 < 200, `${big.work / 16000} characters screened per character`);
  assert.ok(big.work / small.work < 8 * 1.3, `work ${small.work} → ${big.work} for 8× the text`);
  // And the text shown is exactly the whole reply screened at once.
  assert.equal(big.shown, big.final);
  assert.equal(small.shown, small.final);
});

test("the incremental loop watcher finds a loop at the same point as findLoop on the text so far", async () => {
  const { LoopWatcher, findLoop, DEFAULT_LOOP } = await import("../src/screen/degeneration.ts");
  const units = ["the cat sat. ", "ab", "哈", "I think so, ", "----", "x", "Sure! "];
  let x = 5;
  for (let trial = 0; trial < 60; trial++) {
    let text = "";
    while (text.length < 400) {
      x = (x * 1103515245 + 12345) >>> 0;
      const u = units[x % units.length];
      text += x % 3 === 0 ? u.repeat(1 + (x >>> 8) % 4) : `word${x % 97} `;
    }
    const w = new LoopWatcher(DEFAULT_LOOP);
    let first = -1;
    for (let i = 0; i < text.length; i++) if (w.push(text[i]) && first < 0) { first = i + 1; break; }
    let want = -1;
    for (let n = 1; n <= text.length; n++) if (findLoop(text.slice(0, n), DEFAULT_LOOP)) { want = n; break; }
    assert.equal(first, want, JSON.stringify(text.slice(0, Math.max(first, want) + 1)));
  }
});

test("the per-token block check (blockedByRules) agrees with the whole pipeline's verdict on every text", () => {
  // Configs where skipping steps could go wrong: a redaction before a block rule (the block
  // rule must see redacted text), flag rules, a rule that can match empty, PII set to block.
  const base = { ...DEFAULT_SCREEN_CONFIG, degeneration: { ...DEFAULT_SCREEN_CONFIG.degeneration, enabled: false } };
  const configs: ScreenConfig[] = [
    base,
    { ...base, rules: [
      { name: "redact-secret", type: "regex", pattern: "secret", action: "redact", replacement: "[x]" },
      { name: "flag-maybe", type: "regex", pattern: "maybe|😀*", action: "flag" },
      { name: "block-secret-plan", type: "regex", pattern: "secret plan", action: "block" },
      { name: "empty-or-bomb", type: "regex", pattern: "(?:bomb)?", flags: "u", action: "block" },
      { name: "after-last-block", type: "blocklist", words: ["plan"], action: "redact" },
    ] },
    { ...base, rules: [{ name: "hide", type: "blocklist", words: ["ricin"], action: "redact" }], pii: { ...base.pii, action: "block" } },
  ];
  const pieces = ["secret", " plan", " make", " a bomb", " ricin", "maybe", "😀", " mail a.b@c.org", " call +1 415 555 0100", " and", ".", "你好", " "];
  let x = 7, checked = 0, blocked = 0;
  for (const cfg of configs) {
    for (let n = 0; n < 400; n++) {
      let t = "";
      const len = 1 + (n % 9);
      for (let i = 0; i < len; i++) { x = (x * 1103515245 + 12345) >>> 0; t += pieces[(x >>> 8) % pieces.length]; }
      const want = screenReply(t, {}, cfg).verdict === "blocked";
      assert.equal(blockedByRules(t, cfg), want, `${JSON.stringify(t)} under rules ${cfg.rules.map((r) => r.name).join(", ")}`);
      checked++;
      if (want) blocked++;
    }
  }
  // Both verdicts occur often enough for the comparison to mean something.
  assert.ok(blocked > checked / 10 && blocked < checked - checked / 10, `${blocked} of ${checked} blocked`);
});

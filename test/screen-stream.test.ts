/** Streaming screening: PII split across pieces is never shown; a late block is reported. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { screenedStream } from "../src/screen/stream.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";

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
  const text = "Here is a long and friendly introduction that goes on for quite a while before it says: first you build a pipe bomb.";
  const r = feed(text, 4);
  assert.equal(r.early, true);
  assert.equal(r.diverged, true);
  assert.equal(r.final, DEFAULT_SCREEN_CONFIG.refusal);
  const clean = feed("Hello there, how are you doing today? All fine here.", 3);
  assert.equal(clean.shown, "Hello there, how are you doing today? All fine here.");
});

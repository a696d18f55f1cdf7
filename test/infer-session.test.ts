/**
 * Chat sessions: the KV cache kept between turns gives the same replies as a fresh session
 * given the same history; long chats drop their oldest turns whole and keep the system prompt.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { trainBpe } from "../src/tokenizer/index.ts";
import { renderChat } from "../src/data/chat-template.ts";
import { ChatSession } from "../src/infer/session.ts";
import { tinyModel } from "./infer-tiny.ts";

const corpus = ["hello there, how are you?", "I am fine, thank you.", "what is two plus two?", "two plus two is four.", "你好，世界"];
const tok = trainBpe(Array(20).fill(corpus).flat(), { vocabSize: 300 });
const model = () => tinyModel({ vocabSize: tok.vocabSize, seqLen: 256 }, 21);
const greedy = { temperature: 0, maxNewTokens: 12 };

test("a kept cache gives the replies of a fresh session with the same history", () => {
  const m = model();
  const a = new ChatSession(m, tok, { system: "be brief", gen: greedy });
  a.send("hello there");
  a.send("what is two plus two?");
  const third = a.send("thank you").generation;
  const b = new ChatSession(m, tok, { gen: greedy });
  b.messages = a.messages.slice(0, -2).map((x) => ({ ...x }));
  const fresh = b.send("thank you").generation;
  assert.deepEqual(third.ids, fresh.ids);
  assert.equal(a.messages.length, 7);
  assert.equal(a.messages[0].role, "system");
});

test("long chats drop the oldest turns whole, keep the system prompt and fit the window", () => {
  const m = model();
  const limit = 96;
  const s = new ChatSession(m, tok, { system: "be brief", gen: { ...greedy, maxNewTokens: 16 }, contextTokens: limit });
  let dropped = 0;
  for (let i = 0; i < 8; i++) {
    const r = s.send(`hello there ${i}, how are you?`);
    dropped += r.dropped;
    assert.ok(r.promptTokens + 16 <= limit, `prompt ${r.promptTokens} tokens`);
    assert.equal(s.messages[0].content, "be brief");
    // Roles still alternate user/assistant after the system prompt.
    s.messages.slice(1).forEach((x, j) => assert.equal(x.role, j % 2 ? "assistant" : "user"));
    assert.equal(s.messages[s.messages.length - 2].content, `hello there ${i}, how are you?`);
    assert.ok(renderChat(tok, s.messages).ids.length <= limit);
  }
  assert.ok(dropped > 0, "some turns were dropped");
  // A message too long for the window is refused and leaves the history as it was.
  const before = s.messages.length;
  assert.throws(() => s.send("hello there ".repeat(100)), /context window/);
  assert.equal(s.messages.length, before);
  s.reset();
  assert.deepEqual(s.messages, [{ role: "system", content: "be brief" }]);
  s.setSystem("");
  assert.deepEqual(s.messages, []);
});

test("sendAsync (which yields to the event loop while generating) gives send's replies", async () => {
  const m = model();
  const a = new ChatSession(m, tok, { gen: { temperature: 0.8, maxNewTokens: 20, seed: 5 } });
  const b = new ChatSession(m, tok, { gen: { temperature: 0.8, maxNewTokens: 20, seed: 5 } });
  for (const q of ["hello there", "what is two plus two?"]) {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const x = await a.sendAsync(q);
    clearInterval(timer);
    const y = b.send(q);
    assert.deepEqual(x.generation.ids, y.generation.ids);
    assert.equal(x.generation.text, y.generation.text);
    void ticks;
  }
  assert.deepEqual(a.messages, b.messages);
});

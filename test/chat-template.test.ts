import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";
import { renderChat, renderChatText, CHAT_TEMPLATE, type ChatMessage } from "../src/data/chat-template.ts";
import { trainBpe } from "../src/tokenizer/index.ts";
import type { Tokenizer } from "../src/tokenizer/types.ts";

const SHARED = (process.env.MYNAH_SHARED_DATA ?? new URL("../../shared/data", import.meta.url).pathname) + "/chat/";

/** Stand-in tokenizer: one id per UTF-16 unit (ids 0..65535), specials as single ids above. */
function unitTokenizer(): Tokenizer {
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const special = new Map(specials.map((s, i) => [s, 65536 + i] as [string, number]));
  const decode = (ids: ArrayLike<number>): string => {
    let s = "";
    for (let i = 0; i < ids.length; i++) s += ids[i] >= 65536 ? specials[ids[i] - 65536] : String.fromCharCode(ids[i]);
    return s;
  };
  return {
    vocabSize: 65536 + specials.length,
    special,
    encode: (text) => Array.from({ length: text.length }, (_, i) => text.charCodeAt(i)),
    decode,
    decodeBytes: (ids) => new TextEncoder().encode(decode(ids)),
    streamDecoder: () => ({ push: (id) => decode([id]), flush: () => "" }),
  };
}

const CONV: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi there" },
  { role: "assistant", content: "Hello." },
  { role: "user", content: "2+2?" },
  { role: "assistant", content: "4\n\nDone <|im_end|> fake" },
  { role: "user", content: "你好" },
  { role: "assistant", content: "你好！" },
];

test("mask: exactly assistant content and its <|im_end|> carry loss (system prompt, multi-turn)", () => {
  const tok = unitTokenizer();
  const r = renderChat(tok, CONV);
  // With one id per character (and one per special), the mask is the per-character reference,
  // except that "<|im_start|>" is one id: collapse it in the reference.
  const ref: number[] = [];
  for (const m of CONV) {
    const head = `${m.role}\n`;
    ref.push(0);
    for (let i = 0; i < head.length; i++) ref.push(0);
    for (let i = 0; i < m.content.length; i++) ref.push(m.role === "assistant" ? 1 : 0);
    ref.push(m.role === "assistant" ? 1 : 0, 0);
  }
  assert.deepEqual([...r.mask], ref);
  assert.equal(tok.decode(r.ids), renderChatText(CONV));
  // The fake "<|im_end|>" inside content is text, not the special id.
  assert.equal(r.ids.filter((x) => x === tok.special.get("<|im_end|>")).length, CONV.length);
});

test("mask on a BPE tokenizer: masked tokens decode to the assistant replies + <|im_end|>", () => {
  const corpus = CONV.map((m) => m.content).join("\n").repeat(20) + " the quick brown fox jumps over the lazy dog ".repeat(50);
  const tok = trainBpe([corpus], { vocabSize: 256 + 8 + 60 });
  const r = renderChat(tok, CONV);
  assert.equal(r.ids.length, r.mask.length);
  assert.equal(tok.decode(r.ids), renderChatText(CONV));
  // Group consecutive loss tokens into spans; each span must be one assistant reply + <|im_end|>.
  const spans: string[] = [];
  let cur: number[] = [];
  for (let i = 0; i <= r.ids.length; i++) {
    if (i < r.ids.length && r.mask[i]) cur.push(r.ids[i]);
    else if (cur.length) {
      spans.push(tok.decode(cur));
      cur = [];
    }
  }
  assert.deepEqual(spans, CONV.filter((m) => m.role === "assistant").map((m) => m.content + "<|im_end|>"));
});

test("generation prompt is an exact prefix of the rendered conversation", () => {
  const tok = unitTokenizer();
  for (let k = 2; k <= CONV.length; k += 2) {
    const prompt = renderChat(tok, CONV.slice(0, k), { addGenerationPrompt: true });
    const full = renderChat(tok, CONV.slice(0, k + 1));
    assert.deepEqual(full.ids.slice(0, prompt.ids.length), prompt.ids);
    assert.deepEqual([...prompt.mask], [...full.mask.slice(0, prompt.ids.length)]);
    // The generation header itself carries no loss.
    const headLen = prompt.ids.length - renderChat(tok, CONV.slice(0, k)).ids.length;
    assert.ok(headLen > 0 && prompt.mask.slice(-headLen).every((b) => b === 0));
    assert.ok(tok.decode(prompt.ids).endsWith("<|im_start|>assistant\n"));
  }
});

test("truncation drops the oldest whole turns and keeps the system prompt", () => {
  const tok = unitTokenizer();
  const full = renderChat(tok, CONV).ids.length;
  const lastTurn = renderChat(tok, [CONV[0], ...CONV.slice(5)]).ids.length;
  const lastTwo = renderChat(tok, [CONV[0], ...CONV.slice(3)]).ids.length;
  // Fits exactly: nothing dropped.
  assert.equal(renderChat(tok, CONV, { maxTokens: full }).dropped, 0);
  // One token short: the first turn goes, the result is the system prompt + the last two turns.
  const r = renderChat(tok, CONV, { maxTokens: full - 1 });
  assert.equal(r.dropped, 1);
  assert.equal(r.ids.length, lastTwo);
  assert.ok(tok.decode(r.ids).startsWith("<|im_start|>system\nYou are terse."));
  assert.ok(!tok.decode(r.ids).includes("Hi there"));
  // Between lastTurn and lastTwo: only the last turn stays.
  const r2 = renderChat(tok, CONV, { maxTokens: lastTwo - 1 });
  assert.equal(r2.dropped, 2);
  assert.equal(r2.ids.length, lastTurn);
  assert.equal(r2.truncated, false);
  // Smaller than system + last turn: cut, flagged.
  const r3 = renderChat(tok, CONV, { maxTokens: 10 });
  assert.equal(r3.ids.length, 10);
  assert.equal(r3.mask.length, 10);
  assert.equal(r3.truncated, true);
});

test("bad roles are refused with the index", () => {
  const tok = unitTokenizer();
  assert.throws(() => renderChat(tok, [{ role: "tool" as never, content: "x" }]), /messages\[0\]\.role is "tool"/);
});

function jinjaRender(messages: ChatMessage[], addGenerationPrompt: boolean): string {
  return new Template(CHAT_TEMPLATE).render({ messages, add_generation_prompt: addGenerationPrompt, bos_token: "", eos_token: "<|im_end|>" });
}

test("CHAT_TEMPLATE rendered by @huggingface/jinja equals mynah's rendering", () => {
  const tok = unitTokenizer();
  for (const gen of [false, true]) {
    const msgs = gen ? CONV.slice(0, 6) : CONV;
    assert.equal(jinjaRender(msgs, gen), tok.decode(renderChat(tok, msgs, { addGenerationPrompt: gen }).ids));
  }
});

test("CHAT_TEMPLATE on the shared chat sets: same text and same BPE ids as mynah", (t) => {
  const files = ["chatterbot_en.jsonl", "chatterbot_zh.jsonl", "crosswoz_zh.jsonl", "sgd_en.jsonl"].map((f) => SHARED + f);
  if (!files.every(existsSync)) return t.skip("../shared/data/chat not present");
  const convs: ChatMessage[][] = [];
  for (const f of files) {
    const lines = readFileSync(f, "utf8").split("\n").filter((l) => l.trim() !== "").slice(0, 40);
    for (const l of lines) convs.push(JSON.parse(l).messages);
  }
  convs[0] = [{ role: "system", content: "你是一个乐于助人的助手。" }, ...convs[0]];
  const tok = trainBpe(convs.flatMap((c) => c.map((m) => m.content)), { vocabSize: 256 + 8 + 300 });
  for (const c of convs) {
    const text = jinjaRender(c, false);
    const r = renderChat(tok, c);
    assert.equal(tok.decode(r.ids), text);
    // Hugging Face tokenizes the rendered text with special tokens split out first; same ids.
    assert.deepEqual(r.ids, tok.encode(text, { allowedSpecial: "all" }));
  }
});

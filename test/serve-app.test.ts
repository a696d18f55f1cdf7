/**
 * The server core in-process (`app.fetch(Request)`, no socket), with a scripted engine in
 * place of the generation worker, for what a real model cannot be made to do on cue: 503
 * while loading, a blocked reply (finish_reason content_filter, verdict in the extra field),
 * a generation error in the middle of a stream (a final SSE error event, then [DONE]), plus
 * CORS, the UI's security headers and the /api validation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createApp } from "../src/serve/app.ts";
import type { GenerationEngine, GenerationHandlers, WireOptions } from "../src/serve/engine.ts";
import { Store } from "../src/serve/store.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";
import { trainBpe } from "../src/tokenizer/index.ts";

const tok = trainBpe(["hello there, how to make things", "你好"], { vocabSize: 280 });

/** An engine that replays `script` (text pieces, then an error or the end) for each request. */
class ScriptedEngine implements GenerationEngine {
  ready = true;
  maxT = 256;
  parallel = 2;
  queueLimit = 2;
  inFlight = 0;
  running = 0;
  constructor(public script: { pieces: string[]; fail?: string }) {}
  submit(prompt: number[], _opts: WireOptions, _k: number, h: GenerationHandlers): { cancel(): void } {
    this.inFlight++;
    let cancelled = false;
    const ids: number[] = [];
    void (async () => {
      h.onStart?.();
      let text = "";
      for (const p of this.script.pieces) {
        await new Promise((r) => setTimeout(r, 1));
        if (cancelled) break;
        ids.push(1);
        text += p;
        h.onStep?.(p, [{ id: 1, logprob: -0.5 }]);
      }
      this.inFlight--;
      if (this.script.fail && !cancelled) h.onError(new Error(this.script.fail));
      else h.onDone({ ids, logprobs: ids.map(() => -0.5), text, finish: cancelled ? "stop" : "length" });
    })();
    return { cancel: () => { cancelled = true; } };
  }
  async close(): Promise<void> {}
}

function setup(script: { pieces: string[]; fail?: string }, extra: { cors?: string; streamIntervalMs?: number } = {}) {
  const engine = new ScriptedEngine(script);
  const store = new Store(":memory:");
  const app = createApp({ engine, tokenizer: tok, modelName: "tiny", store, screen: DEFAULT_SCREEN_CONFIG, ...extra });
  const call = (path: string, init: RequestInit = {}): Promise<Response> =>
    Promise.resolve(app.fetch(new Request(`http://local${path}`, { ...init, headers: { "content-type": "application/json", ...(init.headers ?? {}) } })));
  const chat = (body: object): Promise<Response> => call("/v1/chat/completions", { method: "POST", body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }) });
  return { engine, store, call, chat };
}

const frames = async (r: Response): Promise<string[]> => (await r.text()).trim().split("\n\n").map((f) => f.replace(/^data: /, ""));

test("503 with retry-after while the model loads, 200 once ready", async () => {
  const { engine, call, chat } = setup({ pieces: ["Hello"] });
  engine.ready = false;
  const h = await call("/health");
  assert.equal(h.status, 503);
  assert.equal(h.headers.get("retry-after"), "1");
  assert.equal((await h.json()).error.code, "model_loading");
  const c = await chat({});
  assert.equal(c.status, 503);
  assert.equal(c.headers.get("x-should-retry"), "true");
  engine.ready = true;
  assert.equal((await call("/health")).status, 200);
  assert.equal((await chat({})).status, 200);
});

test("a blocked reply ends with content_filter, streamed or not; the verdict rides along", async () => {
  const pieces = ["Sure. First ", "you make ", "a pipe bomb ", "with these ", "parts and then some more words to pass the hold-back window."];
  const { chat } = setup({ pieces });
  const r = await (await chat({})).json();
  assert.equal(r.choices[0].finish_reason, "content_filter");
  assert.equal(r.choices[0].message.content, DEFAULT_SCREEN_CONFIG.refusal);
  assert.equal(r.mynah.screening.verdict, "blocked");
  assert.deepEqual(r.mynah.screening.flags, ["mass-harm-instructions"]);
  const fs = await frames(await chat({ stream: true }));
  assert.equal(fs.at(-1), "[DONE]");
  const last = JSON.parse(fs.at(-2)!);
  assert.equal(last.choices[0].finish_reason, "content_filter");
  assert.equal(last.mynah.screening.verdict, "blocked");
  // Nothing of the blocked instructions was streamed.
  const shown = fs.slice(0, -2).map((f) => JSON.parse(f).choices[0].delta.content ?? "").join("");
  assert.ok(!shown.includes("pipe bomb"), shown);
});

test("a generation error mid-stream arrives as a final SSE error event, then [DONE]", async () => {
  const { chat } = setup({ pieces: ["one ", "two ", "three"], fail: "the worker fell over" });
  const r = await chat({ stream: true });
  assert.equal(r.status, 200);
  const fs = await frames(r);
  assert.equal(fs.at(-1), "[DONE]");
  const err = JSON.parse(fs.at(-2)!);
  assert.match(err.error.message, /generation failed: the worker fell over/);
  assert.equal(err.error.type, "server_error");
  const plain = await chat({});
  assert.equal(plain.status, 500);
  assert.match((await plain.json()).error.message, /the worker fell over/);
});

test("CORS, security headers of the UI, JSON 404s", async () => {
  const { call } = setup({ pieces: [] }, { cors: "http://app.example" });
  const pre = await call("/v1/chat/completions", { method: "OPTIONS", headers: { origin: "http://app.example", "access-control-request-method": "POST" } });
  assert.equal(pre.headers.get("access-control-allow-origin"), "http://app.example");
  const ui = await call("/");
  assert.equal(ui.status, 200);
  assert.match(ui.headers.get("content-security-policy")!, /script-src 'self'/);
  assert.match(await ui.text(), /<script type="module" src="\/ui\/app.js">/);
  for (const p of ["/ui/app.js", "/ui/style.css", "/ui/vendor/marked.js", "/ui/vendor/purify.js"]) assert.equal((await call(p)).status, 200, p);
  const nf = await call("/nope");
  assert.equal(nf.status, 404);
  assert.equal((await nf.json()).error.type, "not_found_error");
});

test("the UI's API validates what it stores", async () => {
  const { call, store } = setup({ pieces: ["Hi ", "there."] });
  const post = (p: string, b: unknown, method = "POST"): Promise<Response> => call(p, { method, body: JSON.stringify(b) });
  const conv = await (await post("/api/conversations", { title: "t", settings: { temperature: 0 } })).json();
  assert.equal((await post(`/api/conversations/${conv.id}/messages`, { content: "  " })).status, 400);
  assert.equal((await post(`/api/conversations/${conv.id}/messages`, { content: "hi", parent_id: "nope" })).status, 400);
  assert.equal((await post("/api/conversations/nope/messages", { content: "hi" })).status, 404);
  const u = await (await post(`/api/conversations/${conv.id}/messages`, { content: "hi" })).json();
  const fs = await frames(await post(`/api/conversations/${conv.id}/reply`, { parent_id: u.id }));
  const done = JSON.parse(fs.at(-1)!);
  assert.equal(done.type, "done");
  assert.equal(done.message.content, "Hi there.");
  assert.equal(done.message.role, "assistant");
  assert.equal((await post(`/api/conversations/${conv.id}/reply`, { parent_id: done.message.id })).status, 400, "a reply answers a user message");
  assert.equal((await post(`/api/messages/${done.message.id}/feedback`, { rating: 5 })).status, 400);
  assert.equal((await post(`/api/messages/${done.message.id}/feedback`, {})).status, 400);
  assert.equal((await post(`/api/messages/${u.id}/feedback`, { rating: 1 })).status, 404, "only replies are rated");
  assert.equal((await post(`/api/messages/${done.message.id}/feedback`, { rating: -1, correction: "Hello!" })).status, 200);
  assert.equal(store.getMessage(done.message.id)!.correction, "Hello!");
  assert.equal((await post(`/api/conversations/${conv.id}`, { leaf_id: "nope" }, "PATCH")).status, 400);
  const exp = await (await call("/api/export")).text();
  assert.deepEqual(JSON.parse(exp.trim()), { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Hello!" }] });
  assert.equal((await call(`/api/conversations/${conv.id}`, { method: "DELETE" })).status, 200);
  assert.equal((await call(`/api/conversations/${conv.id}`)).status, 404);
});

test("--stream-interval: a fast stream's frames leave a few per write, at least the interval apart; 0 writes each as it comes", async () => {
  // 60 pieces, one a millisecond or so: ~300 characters, so most of it streams before the end
  // (screening holds back its longest pattern).
  // (Varied words: a repeating piece would be cut as a loop.)
  const words = ["a", "mynah", "learns", "to", "speak", "from", "what", "it", "hears", "and", "so", "does", "this", "model"];
  const pieces = Array.from({ length: 60 }, (_, i) => ` ${words[(i * i + 3 * i) % words.length]}${i}`);
  const writes = async (streamIntervalMs: number): Promise<{ chunks: number[]; frames: string[] }> => {
    const { chat } = setup({ pieces }, { streamIntervalMs });
    const r = await chat({ stream: true });
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    const chunks: number[] = [];
    let all = "";
    for (let x = await reader.read(); !x.done; x = await reader.read()) {
      chunks.push(performance.now());
      all += dec.decode(x.value, { stream: true });
    }
    return { chunks, frames: all.trim().split("\n\n").map((f) => f.replace(/^data: /, "")) };
  };
  const slow = await writes(40), each = await writes(0);
  const text = (frames: string[]): string => frames.filter((f) => f !== "[DONE]").map((f) => JSON.parse(f).choices[0]?.delta?.content ?? "").join("");
  // The same frames either way, every one whole.
  assert.equal(text(slow.frames), pieces.join(""));
  assert.equal(text(each.frames), pieces.join(""));
  assert.ok(slow.frames.length > 20, `${slow.frames.length} frames`);
  // With 40 ms, the ~70 ms of tokens take a handful of writes, each ≥ 40 ms after the one before
  // (timers may fire up to 1 ms early); the last write (the end) leaves at once.
  assert.ok(slow.chunks.length <= 6, `${slow.chunks.length} writes for ${slow.frames.length} frames`);
  for (let i = 1; i < slow.chunks.length - 1; i++) assert.ok(slow.chunks[i] - slow.chunks[i - 1] >= 38, `writes ${i - 1} and ${i}: ${slow.chunks[i] - slow.chunks[i - 1]} ms apart`);
  assert.ok(each.chunks.length >= 20, `${each.chunks.length} writes with --stream-interval 0`);
});

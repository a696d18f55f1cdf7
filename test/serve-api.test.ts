/**
 * The OpenAI-compatible API on a real server on 127.0.0.1, driven by the official `openai`
 * client: replies equal `mynah generate` (same seed, greedy), streaming frames, stop strings,
 * max_tokens → "length", usage, logprobs, errors as the client's APIError subclasses (400,
 * 401, 404, 413, 429), cancel on disconnect, continuous batching, and ≥ 20 kinds of bad
 * request each answered with the right 4xx while the server keeps serving.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { makeModelFolder, screenFileOf, startTestServer } from "./serve-helpers.ts";
import type { RunningServer } from "../src/serve/http.ts";

const KEY = "test-key-0123456789";
let model: string;
let server: RunningServer;
let client: OpenAI;

const mainTs = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
/** Runs the real CLI (`mynah ARGS`) in a child process and returns its stdout. */
function mynah(args: string[]): string {
  const code = `import { main } from ${JSON.stringify(mainTs)}; await main(["node", "mynah", ...process.argv.slice(1)]);`;
  return execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

before(async () => {
  model = makeModelFolder({ seqLen: 1024, nLayer: 4, nEmbd: 192 });
  server = await startTestServer(model, { apiKey: KEY, parallel: 4, queue: 2 });
  client = new OpenAI({ apiKey: KEY, baseURL: `${server.url}/v1`, maxRetries: 0 });
});
after(async () => { await server?.close(); });

const post = (path: string, body: string | object, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(server.url + path, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body) });

test("non-streamed and streamed chat completions equal `mynah generate` (greedy, same seed)", async () => {
  const want = mynah(["generate", "--model", model, "--chat", "--prompt", "Hello there", "--temperature", "0", "--max-new-tokens", "24", "--seed", "3", "--threads", "1", "--screen", screenFileOf(model)]).replace(/\n$/, "");
  // Any requested name is answered with the served model's id (the folder's name), streamed or not.
  const r = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello there" }], temperature: 0, max_tokens: 24, seed: 3 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, "model");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(r.choices[0].message.content, want);
  assert.ok(want.length > 0);
  const u = r.usage!;
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= 24);
  if (r.choices[0].finish_reason === "length") assert.equal(u.completion_tokens, 24);
  // The screening verdict travels in an extra field.
  const extra = (r as unknown as { mynah: { screening: { verdict: string; mean_logprob: number } } }).mynah;
  assert.match(extra.screening.verdict, /^(pass|flagged|redacted)$/);
  assert.ok(extra.screening.mean_logprob < 0);

  const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello there" }], temperature: 0, max_tokens: 24, seed: 3,
    stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  assert.ok(chunks.length >= 3);
  assert.deepEqual([...new Set(chunks.map((c) => c.model))], ["model"]);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  assert.equal(new Set(chunks.map((c) => c.created)).size, 1);
  assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
  assert.equal(chunks[0].choices[0].delta.role, "assistant");
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
  assert.equal(text, want);
  const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finals.length, 1);
  assert.equal(finals[0].choices[0].finish_reason, r.choices[0].finish_reason);
  const last = chunks[chunks.length - 1];
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, r.usage);
});

test("max_tokens ends with finish_reason length; stop strings cut the reply", async () => {
  const base = await client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: [{ type: "text", text: "Tell me" }, { type: "text", text: " about birds" }] }],
    temperature: 1, seed: 11, max_completion_tokens: 30, stop: ["<|never|>"] });
  const full = base.choices[0].message.content!;
  // Pick a stop string from the middle of the reply (no replacement characters).
  let at = -1, stop = "";
  for (let i = 3; i + 2 <= full.length; i++) {
    const s = full.slice(i, i + 2);
    if (!s.includes("\uFFFD") && full.indexOf(s) === i) { at = i; stop = s; break; }
  }
  assert.ok(at > 0, `no usable stop string in ${JSON.stringify(full)}`);
  const cut = await client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Tell me about birds" }],
    temperature: 1, seed: 11, max_tokens: 30, stop });
  assert.equal(cut.choices[0].message.content, full.slice(0, at));
  assert.equal(cut.choices[0].finish_reason, "stop");
  assert.equal(base.choices[0].finish_reason, "length");
  assert.equal(base.usage!.completion_tokens, 30);
  // The same seed gives the same reply.
  const again = await client.chat.completions.create({ model: "m", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Tell me about birds" }], temperature: 1, seed: 11, max_tokens: 30 });
  assert.equal(again.choices[0].message.content, full);
  const short = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "Tell me about birds" }], temperature: 0, max_tokens: 1 });
  assert.equal(short.usage!.completion_tokens, 1);
  assert.ok(short.choices[0].finish_reason === "length" || short.choices[0].finish_reason === "stop");
});

test("completions, logprobs, models, health, metrics", async () => {
  const want = mynah(["generate", "--model", model, "--prompt", "The mynah is", "--temperature", "0", "--max-new-tokens", "12", "--threads", "1", "--screen", screenFileOf(model)]).replace(/\n$/, "");
  const r = await client.completions.create({ model: "some-other-name", prompt: "The mynah is", temperature: 0, max_tokens: 12, logprobs: 2 });
  assert.equal(r.model, "model");
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].text, want);
  const lp = r.choices[0].logprobs!;
  assert.equal(lp.tokens!.length, r.usage!.completion_tokens);
  assert.ok(lp.token_logprobs!.every((x) => x! <= 0));
  // Greedy: the chosen token is the most likely one, so its logprob is the best alternative's.
  lp.top_logprobs!.forEach((alts, i) => {
    const vals = Object.values(alts!);
    assert.ok(vals.length >= 1 && vals.length <= 2);
    assert.ok(Math.abs(Math.max(...vals) - lp.token_logprobs![i]!) < 1e-9);
  });
  const chat = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], temperature: 0, max_tokens: 5, logprobs: true, top_logprobs: 3 });
  const content = chat.choices[0].logprobs!.content!;
  assert.equal(content.length, chat.usage!.completion_tokens);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob && t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob);
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-9);
  }
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["model"]);
  const h = await fetch(server.url + "/health");
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, "ok");
  const m = await (await fetch(server.url + "/metrics", { headers: { authorization: `Bearer ${KEY}` } })).text();
  assert.match(m, /mynah_requests_total\{route="\/v1\/chat\/completions",status="200"\} \d+/);
  assert.match(m, /mynah_generated_tokens_total [1-9]\d*/);
  assert.match(m, /mynah_queue_depth 0/);
  assert.match(m, /mynah_time_to_first_token_seconds_count [1-9]/);
});

test("errors arrive as the client's APIError subclasses", async () => {
  await assert.rejects(client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x" }], temperature: 5 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.status === 400 && (e.error as { param: string }).param === "temperature");
  const wrong = new OpenAI({ apiKey: "wrong-key-123456", baseURL: `${server.url}/v1`, maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(client.models.retrieve("gpt-4"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  await assert.rejects(client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x".repeat(1_100_000) }] }),
    (e: unknown) => e instanceof OpenAI.APIError && e.status === 413);
  await assert.rejects(client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hello ".repeat(2000) }] }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && /maximum context length is 1024 tokens.*resulted in \d+ tokens/.test(e.message));
  // 429: with 4 slots running and 2 requests waiting, the next ones are turned away at once.
  const held = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const res = await post("/v1/chat/completions", { messages: [{ role: "user", content: `n${i}` }], max_tokens: 900, temperature: 0, stream: true });
    const reader = res.body!.getReader();
    await reader.read(); // the first frame: the request is taken
    return reader;
  }));
  assert.equal(server.engine.inFlight, 6);
  const refused = await Promise.all(Array.from({ length: 3 }, () => client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "more" }], max_tokens: 5 })
    .then(() => "ok", (e: unknown) => e)));
  for (const e of refused) {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.headers?.get("retry-after"), "1");
    assert.equal(e.status, 429);
  }
  const streamed = await post("/v1/chat/completions", { messages: [{ role: "user", content: "more" }], max_tokens: 5, stream: true });
  assert.equal(streamed.status, 429);
  assert.equal((await streamed.json()).error.type, "rate_limit_error");
  for (const r of held) await r.cancel();
  for (let i = 0; i < 100 && server.engine.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(server.engine.inFlight, 0);
});

test("a client that disconnects cancels its generation", async () => {
  const before = server.engine.inFlight;
  assert.equal(before, 0);
  const metrics = async (): Promise<number> => Number(/mynah_generated_tokens_total (\d+)/.exec(await (await fetch(server.url + "/metrics", { headers: { authorization: `Bearer ${KEY}` } })).text())![1]);
  const t0 = await metrics();
  const ac = new AbortController();
  const res = await post("/v1/chat/completions", { messages: [{ role: "user", content: "go on" }], max_tokens: 1000, temperature: 0, stream: true }, {});
  const reader = res.body!.getReader();
  await reader.read(); // the role chunk
  ac.abort();
  await reader.cancel();
  for (let i = 0; i < 100 && server.engine.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(server.engine.inFlight, 0);
  const generated = (await metrics()) - t0;
  assert.ok(generated < 500, `the generation ran on after the disconnect: ${generated} tokens`);
  // Non-streamed: the connection closes while the reply is being generated.
  const t1 = await metrics();
  const gone = new AbortController();
  const pending = fetch(server.url + "/v1/chat/completions", { method: "POST", signal: gone.signal,
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ messages: [{ role: "user", content: "go on" }], max_tokens: 1000, temperature: 0 }) }).catch((e: Error) => e);
  for (let i = 0; i < 100 && server.engine.inFlight === 0; i++) await new Promise((r) => setTimeout(r, 5));
  gone.abort();
  assert.ok((await pending) instanceof Error);
  for (let i = 0; i < 100 && server.engine.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(server.engine.inFlight, 0);
  const generated2 = (await metrics()) - t1;
  assert.ok(generated2 < 500, `the non-streamed generation ran on after the disconnect: ${generated2} tokens`);
});

test("continuous batching: concurrent requests give the tokens each gives alone (seeded sampling)", async () => {
  const prompts = ["one", "two birds", "a longer prompt about the mynah", "你好", "five"];
  const req = (p: string, i: number) => ({ model: "m", messages: [{ role: "user" as const, content: p }], temperature: 1, seed: 100 + i, max_tokens: 20 + i * 7 });
  const alone = [];
  for (const [i, p] of prompts.entries()) alone.push((await client.chat.completions.create(req(p, i))).choices[0].message.content);
  assert.equal(new Set(alone).size, prompts.length);
  // 5 requests on 4 slots: the fifth joins when the first one leaves.
  const together = await Promise.all(prompts.map((p, i) => client.chat.completions.create(req(p, i))));
  assert.deepEqual(together.map((r) => r.choices[0].message.content), alone);
});

test("bad requests get the right 4xx and the server keeps serving", async () => {
  const ok = { messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
  const cases: [string, string | object, number, string | null][] = [
    ["malformed JSON", "{\"messages\": [", 400, null],
    ["JSON that is not an object", "[1, 2]", 400, null],
    ["empty body", "", 400, null],
    ["no messages", { model: "m" }, 400, "messages"],
    ["messages not an array", { messages: "hi" }, 400, "messages"],
    ["empty messages", { messages: [] }, 400, "messages"],
    ["a message that is not an object", { messages: ["hi"] }, 400, "messages[0]"],
    ["unknown role", { messages: [{ role: "wizard", content: "hi" }] }, 400, "messages[0].role"],
    ["missing content", { messages: [{ role: "user" }] }, 400, "messages[0].content"],
    ["content of the wrong type", { messages: [{ role: "user", content: 42 }] }, 400, "messages[0].content"],
    ["an image part", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }, 400, "messages[0].content[0].type"],
    ["ends with an assistant message", { messages: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] }, 400, "messages[1].role"],
    ["negative temperature", { ...ok, temperature: -1 }, 400, "temperature"],
    ["temperature as a string", { ...ok, temperature: "hot" }, 400, "temperature"],
    ["top_p 0", { ...ok, top_p: 0 }, 400, "top_p"],
    ["absurd top_p", { ...ok, top_p: 7 }, 400, "top_p"],
    ["max_tokens 0", { ...ok, max_tokens: 0 }, 400, "max_tokens"],
    ["fractional max_tokens", { ...ok, max_tokens: 2.5 }, 400, "max_tokens"],
    ["max_tokens beyond the context", { ...ok, max_tokens: 100000 }, 400, "max_tokens"],
    ["n = 2", { ...ok, n: 2 }, 400, "n"],
    ["frequency_penalty 3", { ...ok, frequency_penalty: 3 }, 400, "frequency_penalty"],
    ["presence_penalty -9", { ...ok, presence_penalty: -9 }, 400, "presence_penalty"],
    ["stop of the wrong type", { ...ok, stop: 5 }, 400, "stop"],
    ["five stop strings", { ...ok, stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
    ["seed as a string", { ...ok, seed: "x" }, 400, "seed"],
    ["stream not a boolean", { ...ok, stream: "yes" }, 400, "stream"],
    ["stream_options without stream", { ...ok, stream_options: { include_usage: true } }, 400, "stream_options"],
    ["top_logprobs without logprobs", { ...ok, top_logprobs: 2 }, 400, "top_logprobs"],
    ["top_logprobs 50", { ...ok, logprobs: true, top_logprobs: 50 }, 400, "top_logprobs"],
    ["tools", { ...ok, tools: [{ type: "function", function: { name: "f" } }] }, 400, "tools"],
    ["a prompt longer than the context", { messages: [{ role: "user", content: "bird ".repeat(3000) }] }, 400, "messages"],
  ];
  for (const [what, body, status, param] of cases) {
    const r = await post("/v1/chat/completions", body);
    const j = await r.json() as { error: { message: string; type: string; param: string | null; code: string | null } };
    assert.equal(r.status, status, `${what}: ${JSON.stringify(j)}`);
    assert.equal(j.error.type, "invalid_request_error", what);
    assert.equal(j.error.param, param, `${what}: ${j.error.message}`);
    assert.ok(j.error.message.length > 10, what);
    assert.equal(r.headers.get("x-should-retry"), "false", what);
  }
  const other: [string, () => Promise<Response>, number][] = [
    ["huge body", () => post("/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "x".repeat(2 << 20) }] })), 413],
    ["no key", () => fetch(server.url + "/v1/models"), 401],
    ["wrong key", () => fetch(server.url + "/v1/models", { headers: { authorization: "Bearer nope-nope-nope" } }), 401],
    ["unknown route", () => fetch(server.url + "/v1/embeddings", { method: "POST", headers: { authorization: `Bearer ${KEY}` } }), 404],
    ["completions without a prompt", () => post("/v1/completions", { max_tokens: 3 }), 400],
    ["completions with echo", () => post("/v1/completions", { prompt: "a", echo: true }), 400],
    ["completions with logprobs 9", () => post("/v1/completions", { prompt: "a", logprobs: 9 }), 400],
  ];
  for (const [what, call, status] of other) {
    const r = await call();
    const j = await r.json() as { error: { message: string } };
    assert.equal(r.status, status, `${what}: ${JSON.stringify(j)}`);
    assert.ok(j.error.message, what);
  }
  assert.ok(cases.length + other.length >= 20);
  const r = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "still there?" }], max_tokens: 3 });
  assert.equal(r.choices.length, 1);
  assert.equal((await fetch(server.url + "/health")).status, 200);
});

/**
 * The server core: a Hono app whose `fetch` is `(Request) => Promise<Response>`, tested
 * in-process; http.ts binds it to a port. Routes:
 *
 *   POST /v1/chat/completions, POST /v1/completions, GET /v1/models   OpenAI-compatible API
 *   GET /health (503 while loading), GET /metrics (Prometheus text)
 *   /api/...   the web UI's conversations, replies (SSE) and feedback, stored in SQLite
 *   GET /      the web UI (static files from src/serve/ui, marked and DOMPurify from node_modules)
 *
 * Limits (named here, documented in the README): request bodies up to MAX_BODY_BYTES (413
 * beyond), `parallel` running + `queue` waiting generations (429 with retry-after beyond).
 */
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import { getCookie } from "hono/cookie";
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderChat, type ChatMessage } from "../data/chat-template.ts";
import type { TokenEvent } from "../infer/batcher.ts";
import { fitContext } from "../infer/session.ts";
import type { ScreenConfig } from "../screen/index.ts";
import type { Tokenizer } from "../tokenizer/types.ts";
import { QueueFullError, type GenerationEngine, type WireOptions } from "./engine.ts";
import { ApiError, invalid } from "./errors.ts";
import { Metrics } from "./metrics.ts";
import { parseBody, parseChatRequest, parseCompletionRequest, type SamplingRequest } from "./requests.ts";
import type { RunReports } from "./reports.ts";
import type { Store, StoredMessage } from "./store.ts";
import { screeningInfo, startTurn, type TurnResult } from "./turn.ts";

/** Largest request body accepted (bytes); beyond it the answer is 413. */
export const MAX_BODY_BYTES = 1 << 20;
/** Seconds a client is told to wait after a 429. */
export const RETRY_AFTER_S = 1;

export interface AppOptions {
  engine: GenerationEngine;
  tokenizer: Tokenizer;
  /** The model's id in /v1/models and responses. */
  modelName: string;
  store: Store;
  screen: ScreenConfig;
  /** When set, every /v1, /api and /metrics request needs `Authorization: Bearer KEY`. */
  apiKey?: string;
  /** Allowed cross-origin origin (Access-Control-Allow-Origin), if any. */
  cors?: string;
  metrics?: Metrics;
  /** The run reports served at /reports (the model's run folder, --runs). */
  reports?: RunReports;
  /** Least time between two writes of one stream (ms; --stream-interval), default STREAM_INTERVAL_MS. */
  streamIntervalMs?: number;
}

/**
 * Default least time between two writes of one streamed reply (ms). A stream decoded faster
 * than this (16 streams of a small model: a token every ~1.5 ms each) sends the tokens of a
 * few steps per write, still one SSE frame per delta; a slower one sends every token as soon as
 * it is settled. Each write costs the HTTP thread and the kernel ~25 µs, which on a small
 * machine is CPU the generation worker needs; 5 ms is far below what a reader can see.
 */
export const STREAM_INTERVAL_MS = 5;

const sha = (s: string): Buffer => createHash("sha256").update(s).digest();
/** Constant-time key check (hashing first makes the lengths equal). */
function keyMatches(given: string, want: string): boolean {
  return timingSafeEqual(sha(given), sha(want));
}

const encoder = new TextEncoder();

/**
 * A server-sent-events response; `cancel` runs when the client goes away. Frames are written
 * at most once per `intervalMs` (STREAM_INTERVAL_MS): a frame sent when the last write is
 * older than that leaves at the end of this turn of the event loop (with any other frames of
 * the turn); one sent sooner waits for the interval to end, joined by those that follow.
 */
function sseResponse(start: (send: (data: unknown) => void, close: () => void) => void, cancel: () => void, intervalMs: number): Response {
  let closed = false;
  let pending = "";
  let lastWrite = -Infinity;
  /** Cancels the scheduled flush; null when none is scheduled. */
  let flushing: (() => void) | null = null;
  const unschedule = (): void => {
    flushing?.();
    flushing = null;
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const flush = (): void => {
        flushing = null;
        if (pending === "") return;
        lastWrite = performance.now();
        controller.enqueue(encoder.encode(pending));
        pending = "";
      };
      const send = (data: unknown): void => {
        if (closed) return;
        pending += `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
        if (flushing) return;
        const wait = lastWrite + intervalMs - performance.now();
        if (wait > 0) {
          const t = setTimeout(flush, wait);
          flushing = () => clearTimeout(t);
        } else {
          const t = setImmediate(flush);
          flushing = () => clearImmediate(t);
        }
      };
      const close = (): void => {
        if (closed) return;
        unschedule();
        flush();
        closed = true;
        controller.close();
      };
      start(send, close);
    },
    cancel() {
      closed = true;
      unschedule();
      pending = "";
      cancel();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" } });
}

/** UI static files: ours from src/serve/ui, the two libraries from node_modules. */
function uiFiles(): Map<string, { body: Buffer; type: string }> {
  const here = dirname(fileURLToPath(import.meta.url));
  // From dist/serve/ the sources sit at ../../src/serve/ui.
  const uiDir = here.endsWith(join("src", "serve")) ? join(here, "ui") : join(here, "..", "..", "src", "serve", "ui");
  const require = createRequire(import.meta.url);
  const files = new Map<string, { body: Buffer; type: string }>();
  const js = "text/javascript; charset=utf-8";
  files.set("/", { body: readFileSync(join(uiDir, "index.html")), type: "text/html; charset=utf-8" });
  files.set("/ui/app.js", { body: readFileSync(join(uiDir, "app.js")), type: js });
  files.set("/ui/style.css", { body: readFileSync(join(uiDir, "style.css")), type: "text/css; charset=utf-8" });
  files.set("/ui/vendor/marked.js", { body: readFileSync(require.resolve("marked")), type: js });
  files.set("/ui/vendor/purify.js", { body: readFileSync(join(dirname(require.resolve("dompurify")), "purify.es.mjs")), type: js });
  return files;
}

/**
 * The request body as text, at most MAX_BODY_BYTES (else 413). An oversized body is still
 * read to its end (up to DRAIN_LIMIT) before the answer, so the client sees the 413 rather
 * than a connection reset in the middle of its upload.
 */
async function readBody(req: Request): Promise<string> {
  const DRAIN_LIMIT = 64 * MAX_BODY_BYTES;
  const declared = Number(req.headers.get("content-length") ?? NaN);
  const tooLarge = (): ApiError => new ApiError(413, `the request body is larger than the server's limit of ${MAX_BODY_BYTES} bytes`, null, "request_too_large");
  if (declared > DRAIN_LIMIT) throw tooLarge();
  // A declared length within the limit: the body cannot be longer (node:http frames it by
  // that length), so it is read in one piece. Under @hono/node-server that reads the socket
  // directly; going through req.body builds a web Request and stream first, ~0.5 ms a request.
  if (Number.isFinite(declared) && declared <= MAX_BODY_BYTES) return req.text();
  if (!req.body) return "";
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    n += chunk.length;
    if (n <= MAX_BODY_BYTES) parts.push(chunk);
    else if (n > DRAIN_LIMIT) break;
  }
  if (n > MAX_BODY_BYTES) throw tooLarge();
  return Buffer.concat(parts).toString("utf8");
}

/** Report pages run no script at all; their charts are inline SVG with inline styles. */
const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

function seedOf(s: number | undefined): number {
  if (s === undefined) return randomBytes(4).readUInt32BE() % 2 ** 31;
  return ((s % 2 ** 31) + 2 ** 31) % 2 ** 31;
}

/** The engine options of a request, after checking the prompt fits the context window. */
function wireOptions(r: SamplingRequest, promptTokens: number, maxT: number, param: string): WireOptions {
  if (promptTokens >= maxT) {
    throw invalid(`This model's maximum context length is ${maxT} tokens. However, your ${param} resulted in ${promptTokens} tokens ` +
      `(at least one must be left for the reply). Please shorten the ${param}.`, param, "context_length_exceeded");
  }
  if (r.maxTokens !== undefined && promptTokens + r.maxTokens > maxT) {
    throw invalid(`This model's maximum context length is ${maxT} tokens. However, you requested ${promptTokens + r.maxTokens} tokens ` +
      `(${promptTokens} in the ${param}, ${r.maxTokens} for the completion). Please reduce the length of the ${param} or the completion.`,
      "max_tokens", "context_length_exceeded");
  }
  return {
    temperature: r.temperature, topK: r.topK, topP: r.topP, repetitionPenalty: r.repetitionPenalty,
    frequencyPenalty: r.frequencyPenalty, presencePenalty: r.presencePenalty,
    maxNewTokens: r.maxTokens ?? maxT - promptTokens, seed: seedOf(r.seed), stopStrings: r.stop,
  };
}

/** OpenAI's chat logprobs of some tokens. */
function chatLogprobs(tok: Tokenizer, tokens: TokenEvent[]): { content: unknown[] } {
  const one = (id: number, logprob: number): { token: string; logprob: number; bytes: number[] } =>
    ({ token: tok.decode([id]), logprob, bytes: [...tok.decodeBytes([id])] });
  return { content: tokens.map((t) => ({ ...one(t.id, t.logprob), top_logprobs: (t.top ?? []).map((a) => one(a.id, a.logprob)) })) };
}

/** Legacy completions logprobs. */
function completionLogprobs(tok: Tokenizer, tokens: TokenEvent[], offset0: number): Record<string, unknown> {
  let off = offset0;
  const text_offset: number[] = [];
  for (const t of tokens) { text_offset.push(off); off += tok.decode([t.id]).length; }
  return {
    tokens: tokens.map((t) => tok.decode([t.id])),
    token_logprobs: tokens.map((t) => t.logprob),
    // Keyed by text as OpenAI does; two ids with the same text (partial UTF-8) keep the likelier.
    top_logprobs: tokens.map((t) => {
      const o: Record<string, number> = {};
      for (const a of t.top ?? []) { const k = tok.decode([a.id]); if (!(k in o)) o[k] = a.logprob; }
      return o;
    }),
    text_offset,
  };
}

export function createApp(o: AppOptions): Hono {
  const { engine, tokenizer: tok, store, screen } = o;
  const streamInterval = o.streamIntervalMs ?? STREAM_INTERVAL_MS;
  const metrics = o.metrics ?? new Metrics();
  const app = new Hono();
  const files = uiFiles();

  app.onError((err, c) => {
    if (err instanceof ApiError) return err.response();
    if (err instanceof QueueFullError) return new ApiError(429, err.message, null, "rate_limit_exceeded", "rate_limit_error", { "retry-after": String(RETRY_AFTER_S) }).response();
    console.error(`[mynah serve] ${c.req.method} ${c.req.path}: ${(err as Error).stack ?? err}`);
    return new ApiError(500, `internal error: ${(err as Error).message}`).response();
  });
  app.notFound((c) => new ApiError(404, `no route ${c.req.method} ${c.req.path}`, null, "not_found").response());

  app.use("*", async (c, next) => {
    await next();
    metrics.countRequest(c.req.routePath === "/*" ? "other" : c.req.routePath, c.res.status);
  });
  if (o.cors) app.use("*", cors({ origin: o.cors, allowHeaders: ["Authorization", "Content-Type"], allowMethods: ["GET", "POST", "PATCH", "DELETE", "OPTIONS"] }));
  if (o.apiKey) {
    const key = o.apiKey;
    const auth = async (c: Context, next: () => Promise<void>): Promise<void> => {
      const h = c.req.header("authorization") ?? "";
      const m = /^Bearer\s+(.+)$/i.exec(h);
      if (!m) throw new ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.", null, "missing_api_key");
      if (!keyMatches(m[1].trim(), key)) throw new ApiError(401, "Incorrect API key provided.", null, "invalid_api_key");
      await next();
    };
    for (const p of ["/v1/*", "/api/*", "/metrics"]) app.use(p, auth);
    // Report pages are opened by the browser as pages (no header): the key also counts as the
    // cookie the web UI sets for /reports (see ui/app.js); scripts and curl send the header.
    const pageAuth = async (c: Context, next: () => Promise<void>): Promise<void> => {
      const cookie = getCookie(c, "mynah-api-key");
      if (cookie !== undefined && !c.req.header("authorization")) {
        if (!keyMatches(cookie, key)) throw new ApiError(401, "Incorrect API key (cookie mynah-api-key).", null, "invalid_api_key");
        return next();
      }
      return auth(c, next);
    };
    for (const p of ["/reports", "/reports/*"]) app.use(p, pageAuth);
  }
  const needReady = (): void => {
    if (!engine.ready) throw new ApiError(503, "the model is still loading; try again shortly", null, "model_loading", "server_error", { "retry-after": String(RETRY_AFTER_S) });
  };
  /** Streams answer 429 up front: once the SSE response has started, its status is 200. */
  const needRoom = (): void => {
    if (engine.inFlight >= engine.parallel + engine.queueLimit) throw new QueueFullError(engine.inFlight);
  };
  const readJson = async (c: Context): Promise<Record<string, unknown>> => parseBody(await readBody(c.req.raw));

  // ---- health, metrics, models ------------------------------------------------------------
  app.get("/health", (c) => engine.ready
    ? c.json({ status: "ok", model: o.modelName, running: engine.running, waiting: Math.max(0, engine.inFlight - engine.running) })
    : new ApiError(503, "the model is still loading", null, "model_loading", "server_error", { "retry-after": String(RETRY_AFTER_S) }).response());
  app.get("/metrics", (c) => c.text(metrics.render({ running: engine.running, waiting: Math.max(0, engine.inFlight - engine.running), ready: engine.ready }), 200,
    { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
  const created = Math.floor(Date.now() / 1000);
  const modelObject = { id: o.modelName, object: "model", created, owned_by: "mynah" };
  app.get("/v1/models", (c) => c.json({ object: "list", data: [modelObject] }));
  app.get("/v1/models/:id", (c) => {
    if (c.req.param("id") !== o.modelName) throw new ApiError(404, `The model '${c.req.param("id")}' does not exist (this server serves '${o.modelName}')`, "model", "model_not_found");
    return c.json(modelObject);
  });

  /** Stores an API exchange as a conversation (source 'api') so its feedback data is kept too. */
  const storeApiExchange = (messages: ChatMessage[], r: TurnResult, settings: Record<string, unknown>): void => {
    const system = messages[0]?.role === "system" ? messages[0].content : "";
    const firstUser = messages.find((m) => m.role === "user")?.content ?? "API request";
    // Committed with the other exchanges of the next GROUP_COMMIT_MS (store.later): one sync
    // to disk for the group; the reply has already been sent.
    store.later(() => {
      const conv = store.createConversation({ title: firstUser.slice(0, 80), system, settings, source: "api" });
      let parent: string | null = null;
      for (const m of messages) {
        if (m.role === "system") continue;
        parent = store.addMessage(conv.id, { parent_id: parent, role: m.role, content: m.content, model: null, settings: null, finish_reason: null, screen_verdict: null,
          screen: null, mean_logprob: null, prompt_tokens: null, completion_tokens: null, ttft_ms: null, duration_ms: null }).id;
      }
      store.addMessage(conv.id, replyRow(parent, r, settings));
    });
  };
  const replyRow = (parent: string | null, r: TurnResult, settings: Record<string, unknown>): Parameters<Store["addMessage"]>[1] => ({
    parent_id: parent, role: "assistant", content: r.text, model: o.modelName, settings, finish_reason: r.finish,
    screen_verdict: r.screen.verdict, screen: screeningInfo(r.screen, r.replaced), mean_logprob: r.screen.meanLogprob,
    prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, ttft_ms: r.ttftMs, duration_ms: r.durationMs,
  });

  // ---- POST /v1/chat/completions -------------------------------------------------------------
  app.post("/v1/chat/completions", async (c) => {
    const req = parseChatRequest(await readJson(c));
    needReady();
    const ids = renderChat(tok, req.messages, { addGenerationPrompt: true }).ids;
    const opts = wireOptions(req, ids.length, engine.maxT, "messages");
    const id = `chatcmpl-${randomUUID().replaceAll("-", "")}`;
    const createdAt = Math.floor(Date.now() / 1000);
    // The served model's id, whatever name the request used (as OpenAI-compatible servers answer).
    const model = o.modelName;
    const settings = { temperature: opts.temperature, top_p: opts.topP, top_k: opts.topK, max_tokens: opts.maxNewTokens, seed: opts.seed,
      frequency_penalty: opts.frequencyPenalty, presence_penalty: opts.presencePenalty, repetition_penalty: opts.repetitionPenalty, stop: opts.stopStrings };
    const wantLogprobs = req.topLogprobs !== undefined;
    const usage = (r: TurnResult): Record<string, number> => ({ prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens });
    const finishOf = (r: TurnResult): string => (r.finish === "cancelled" ? "stop" : r.finish);

    if (!req.stream) {
      const all: TokenEvent[] = [];
      const turn = startTurn(engine, screen, ids, opts, req.topLogprobs ?? 0, { onDelta: (_t, tokens) => all.push(...tokens) }, metrics);
      c.req.raw.signal?.addEventListener("abort", () => turn.cancel());
      const r = await turn.done;
      storeApiExchange(req.messages, r, settings);
      return c.json({
        id, object: "chat.completion", created: createdAt, model, system_fingerprint: null,
        choices: [{ index: 0, message: { role: "assistant", content: r.text, refusal: null }, logprobs: wantLogprobs ? chatLogprobs(tok, all) : null, finish_reason: finishOf(r) }],
        usage: usage(r),
        mynah: { screening: screeningInfo(r.screen, r.replaced), ttft_ms: r.ttftMs, duration_ms: r.durationMs },
      });
    }
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> =>
      ({ id, object: "chat.completion.chunk", created: createdAt, model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }] });
    needRoom();
    let turn: ReturnType<typeof startTurn> | undefined;
    return sseResponse((send, close) => {
      send(chunk({ role: "assistant", content: "" }, null));
      turn = startTurn(engine, screen, ids, opts, req.topLogprobs ?? 0, {
        onDelta: (text, tokens) => {
          if (!text && !(wantLogprobs && tokens.length)) return;
          send(chunk({ content: text }, null, wantLogprobs ? { logprobs: chatLogprobs(tok, tokens) } : {}));
        },
      }, metrics);
      turn.done.then((r) => {
        const last = chunk({}, finishOf(r));
        last.mynah = { screening: screeningInfo(r.screen, r.replaced), ...(r.replaced ? { text: r.text } : {}), ttft_ms: r.ttftMs, duration_ms: r.durationMs };
        send(last);
        if (req.includeUsage) send({ id, object: "chat.completion.chunk", created: createdAt, model, system_fingerprint: null, choices: [], usage: usage(r) });
        send("[DONE]");
        close();
        if (r.finish !== "cancelled") storeApiExchange(req.messages, r, settings);
      }, (err: Error) => {
        send({ error: { message: `generation failed: ${err.message}`, type: "server_error", param: null, code: "generation_error" } });
        send("[DONE]");
        close();
      });
    }, () => turn?.cancel(), streamInterval);
  });

  // ---- POST /v1/completions ------------------------------------------------------------------
  app.post("/v1/completions", async (c) => {
    const req = parseCompletionRequest(await readJson(c));
    needReady();
    const ids = tok.encode(req.prompt);
    const opts = wireOptions(req, ids.length, engine.maxT, "prompt");
    const id = `cmpl-${randomUUID().replaceAll("-", "")}`;
    const createdAt = Math.floor(Date.now() / 1000);
    // The served model's id, whatever name the request used (as OpenAI-compatible servers answer).
    const model = o.modelName;
    const wantLogprobs = req.topLogprobs !== undefined;
    const usage = (r: TurnResult): Record<string, number> => ({ prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens });
    const finishOf = (r: TurnResult): string => (r.finish === "cancelled" ? "stop" : r.finish);
    if (!req.stream) {
      const all: TokenEvent[] = [];
      const turn = startTurn(engine, screen, ids, opts, req.topLogprobs ?? 0, { onDelta: (_t, tokens) => all.push(...tokens) }, metrics);
      c.req.raw.signal?.addEventListener("abort", () => turn.cancel());
      const r = await turn.done;
      return c.json({
        id, object: "text_completion", created: createdAt, model, system_fingerprint: null,
        choices: [{ index: 0, text: r.text, logprobs: wantLogprobs ? completionLogprobs(tok, all, 0) : null, finish_reason: finishOf(r) }],
        usage: usage(r), mynah: { screening: screeningInfo(r.screen, r.replaced) },
      });
    }
    needRoom();
    let turn: ReturnType<typeof startTurn> | undefined;
    let offset = 0;
    return sseResponse((send, close) => {
      const chunk = (text: string, finish: string | null, lp: unknown = null): Record<string, unknown> =>
        ({ id, object: "text_completion", created: createdAt, model, choices: [{ index: 0, text, logprobs: lp, finish_reason: finish }] });
      turn = startTurn(engine, screen, ids, opts, req.topLogprobs ?? 0, {
        onDelta: (text, tokens) => {
          if (!text && !(wantLogprobs && tokens.length)) return;
          send(chunk(text, null, wantLogprobs ? completionLogprobs(tok, tokens, offset) : null));
          offset += text.length;
        },
      }, metrics);
      turn.done.then((r) => {
        const last = chunk("", finishOf(r));
        last.mynah = { screening: screeningInfo(r.screen, r.replaced), ...(r.replaced ? { text: r.text } : {}) };
        send(last);
        if (req.includeUsage) send({ id, object: "text_completion", created: createdAt, model, choices: [], usage: usage(r) });
        send("[DONE]");
        close();
      }, (err: Error) => {
        send({ error: { message: `generation failed: ${err.message}`, type: "server_error", param: null, code: "generation_error" } });
        send("[DONE]");
        close();
      });
    }, () => turn?.cancel(), streamInterval);
  });

  // ---- the web UI's API ---------------------------------------------------------------------
  const conversationOr404 = (id: string) => {
    const conv = store.getConversation(id);
    if (!conv) throw new ApiError(404, `no conversation ${id}`, "id", "not_found");
    return conv;
  };
  const str = (b: Record<string, unknown>, k: string, max = 100_000): string | undefined => {
    const v = b[k];
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw invalid(`'${k}' must be a string`, k, "invalid_type");
    if (v.length > max) throw invalid(`'${k}' is longer than ${max} characters`, k, "invalid_value");
    return v;
  };
  const settingsOf = (b: Record<string, unknown>): Record<string, unknown> | undefined => {
    if (b.settings === undefined) return undefined;
    if (typeof b.settings !== "object" || b.settings === null || Array.isArray(b.settings)) throw invalid("'settings' must be an object", "settings", "invalid_type");
    return b.settings as Record<string, unknown>;
  };

  app.get("/api/info", (c) => c.json({ model: o.modelName, ready: engine.ready, context: engine.maxT, parallel: engine.parallel, reports: o.reports?.runs.length ?? 0 }));
  app.get("/api/conversations", (c) => c.json({ data: store.listConversations(c.req.query("q") ?? "") }));
  app.post("/api/conversations", async (c) => {
    const b = await readJson(c);
    return c.json(store.createConversation({ title: str(b, "title", 200), system: str(b, "system"), settings: settingsOf(b) }), 201);
  });
  app.get("/api/conversations/:id", (c) => {
    const conv = conversationOr404(c.req.param("id"));
    return c.json({ conversation: conv, messages: store.messages(conv.id) });
  });
  app.patch("/api/conversations/:id", async (c) => {
    const conv = conversationOr404(c.req.param("id"));
    const b = await readJson(c);
    const leaf = str(b, "leaf_id", 100);
    if (leaf !== undefined) {
      const m = store.getMessage(leaf);
      if (!m || m.conversation_id !== conv.id) throw invalid(`'leaf_id' ${leaf} is not a message of this conversation`, "leaf_id", "invalid_value");
    }
    return c.json(store.updateConversation(conv.id, { title: str(b, "title", 200), system: str(b, "system"), settings: settingsOf(b), leaf_id: leaf }));
  });
  app.delete("/api/conversations/:id", (c) => {
    if (!store.deleteConversation(c.req.param("id"))) throw new ApiError(404, `no conversation ${c.req.param("id")}`, "id", "not_found");
    return c.json({ deleted: true });
  });
  /** Adds a user message under parent_id (null: the first turn; a sibling of another message: an edit). */
  app.post("/api/conversations/:id/messages", async (c) => {
    const conv = conversationOr404(c.req.param("id"));
    const b = await readJson(c);
    const content = str(b, "content");
    if (!content || !content.trim()) throw invalid("'content' must be a non-empty string", "content", "invalid_value");
    const parent = b.parent_id === null || b.parent_id === undefined ? null : str(b, "parent_id", 100)!;
    if (parent) {
      const p = store.getMessage(parent);
      if (!p || p.conversation_id !== conv.id) throw invalid(`'parent_id' must be a message of this conversation`, "parent_id", "invalid_value");
    }
    if (conv.title === "New chat" && parent === null) store.updateConversation(conv.id, { title: content.trim().slice(0, 60) });
    return c.json(store.addMessage(conv.id, { parent_id: parent, role: "user", content, model: null, settings: null, finish_reason: null, screen_verdict: null,
      screen: null, mean_logprob: null, prompt_tokens: null, completion_tokens: null, ttft_ms: null, duration_ms: null }), 201);
  });
  /**
   * Streams a reply to user message `parent_id` as SSE events {"type": "delta", "text"}, then
   * {"type": "done", "message"} (stored); a second reply to the same message is an alternative.
   * The oldest turns are dropped (system prompt kept) when the branch outgrows the context.
   */
  app.post("/api/conversations/:id/reply", async (c) => {
    const conv = conversationOr404(c.req.param("id"));
    const b = await readJson(c);
    needReady();
    const parentId = str(b, "parent_id", 100);
    const parent = parentId ? store.getMessage(parentId) : undefined;
    if (!parent || parent.conversation_id !== conv.id || parent.role !== "user") throw invalid("'parent_id' must be a user message of this conversation", "parent_id", "invalid_value");
    const branch = store.branch(parent.id);
    const history: ChatMessage[] = [...(conv.system ? [{ role: "system" as const, content: conv.system }] : []),
      ...branch.map((m) => ({ role: m.role, content: m.role === "assistant" && m.correction ? m.correction : m.content }))];
    const s = conv.settings as Record<string, unknown>;
    const samplingReq = parseChatRequest({ messages: [{ role: "user", content: "x" }], temperature: s.temperature ?? 0.7, top_p: s.top_p ?? 0.95, top_k: s.top_k ?? 40,
      max_tokens: s.max_tokens ?? 200, seed: s.seed, repetition_penalty: s.repetition_penalty, frequency_penalty: s.frequency_penalty, presence_penalty: s.presence_penalty });
    const maxT = engine.maxT;
    const reserve = Math.min(samplingReq.maxTokens ?? 200, Math.floor(maxT / 2));
    let fit;
    try { fit = fitContext(tok, history, maxT, reserve); } catch (err) { throw invalid((err as Error).message, "content", "context_length_exceeded"); }
    const opts = wireOptions({ ...samplingReq, maxTokens: Math.min(samplingReq.maxTokens ?? 200, maxT - fit.ids.length) }, fit.ids.length, maxT, "conversation");
    const settings = { temperature: opts.temperature, top_p: opts.topP, top_k: opts.topK, max_tokens: opts.maxNewTokens, seed: opts.seed };
    needRoom();
    let turn: ReturnType<typeof startTurn> | undefined;
    return sseResponse((send, close) => {
      turn = startTurn(engine, screen, fit.ids, opts, 0, { onDelta: (text) => { if (text) send({ type: "delta", text }); } }, metrics);
      turn.done.then((r) => {
        const saved: StoredMessage = store.addMessage(conv.id, replyRow(parent.id, r, settings));
        send({ type: "done", message: saved, dropped: fit.dropped });
        close();
      }, (err: Error) => {
        send({ type: "error", error: { message: `generation failed: ${err.message}` } });
        close();
      });
    }, () => turn?.cancel(), streamInterval);
  });
  app.post("/api/messages/:id/feedback", async (c) => {
    const b = await readJson(c);
    const fb: { rating?: number; correction?: string | null } = {};
    if (b.rating !== undefined) {
      if (b.rating !== -1 && b.rating !== 0 && b.rating !== 1) throw invalid("'rating' must be -1, 0 or 1", "rating", "invalid_value");
      fb.rating = b.rating;
    }
    if (b.correction !== undefined) fb.correction = b.correction === null ? null : str(b, "correction")!;
    if (fb.rating === undefined && fb.correction === undefined) throw invalid("give 'rating' and/or 'correction'", null, "missing_required_parameter");
    const m = store.getMessage(c.req.param("id"));
    if (!m || m.role !== "assistant") throw new ApiError(404, `no assistant message ${c.req.param("id")}`, "id", "not_found");
    store.setFeedback(m.id, fb);
    return c.json({ ok: true, message: store.getMessage(m.id) });
  });
  /** Every UI conversation's shown branch as OpenAI-messages JSONL (corrections replace replies). */
  app.get("/api/export", (c) => {
    const lines: string[] = [];
    for (const conv of store.listConversations("", "ui")) {
      const msgs = store.branch(conv.leaf_id).map((m) => ({ role: m.role, content: m.role === "assistant" && m.correction ? m.correction : m.content }));
      if (msgs.length) lines.push(JSON.stringify({ messages: [...(conv.system ? [{ role: "system", content: conv.system }] : []), ...msgs] }));
    }
    return c.body(lines.map((l) => l + "\n").join(""), 200, { "content-type": "application/jsonl; charset=utf-8", "content-disposition": "attachment; filename=\"mynah-conversations.jsonl\"" });
  });

  // ---- run reports ---------------------------------------------------------------------------
  const page = (c: Context, html: string): Response =>
    c.body(html, 200, { "content-type": "text/html; charset=utf-8", "content-security-policy": REPORT_CSP, "x-content-type-options": "nosniff", "cache-control": "no-cache" });
  if (o.reports) app.get("/reports", (c) => page(c, o.reports!.index(o.modelName)));
  if (o.reports) app.get("/reports/:id", async (c) => {
    const id = c.req.param("id");
    const html = /^[1-9][0-9]{0,5}$/.test(id) ? await o.reports?.page(Number(id)) : null;
    if (!html) throw new ApiError(404, `no run report ${id} (the list is at /reports)`, "id", "not_found");
    return page(c, html);
  });

  // ---- the web UI ----------------------------------------------------------------------------
  for (const [path, f] of files) {
    app.get(path, (c) => c.body(new Uint8Array(f.body), 200, { "content-type": f.type, "content-security-policy": CSP, "x-content-type-options": "nosniff", "cache-control": "no-cache" }));
  }
  return app;
}

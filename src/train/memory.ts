/**
 * How much memory a training run will need, before anything is allocated: `--max-memory`
 * refuses a run whose estimate exceeds the limit, and every run prints its estimate.
 *
 * The estimate is exact for what the model allocates (it counts the same buffers createGPT and
 * the optimizer do) and adds what this process already holds (Node, code, the tokenized data:
 * its resident set when the estimate is made):
 *   parameters 4·P bytes, gradients 4·P, optimizer state 8·P (AdamW m and v; with Muon too,
 *   its momentum lives in m), activations (saved per layer + the backward's scratch, see
 *   model/gpt.ts: activationFloats), logits (one chunk of rows, plus the chunked head
 *   gradient), and the process now.
 * Buffers are touched every step, so the resident peak is close to their sum; what it leaves
 * out (allocator slack, the native pool's stacks, Muon's per-matrix scratch, a sample's KV
 * cache) is a few percent (test/memory.test.ts measures it against the peak RSS).
 */
import { activationFloats } from "../model/gpt.ts";
import type { ModelConfig } from "../model/config.ts";
import { bufferLength, paramSpecs } from "../model/params.ts";

export interface MemoryEstimate {
  /** Bytes of each part. */
  parameters: number;
  gradients: number;
  optimizer: number;
  activations: number;
  logits: number;
  /** What the process holds already (runtime, code, data), or 0 when parameters are loaded and counted here. */
  process: number;
  total: number;
}

/**
 * The estimate for micro-batches of [B, T]. `processBytes`: the resident set now (default:
 * this process's). `paramsLoaded`: the parameters already sit in memory (SFT from a checkpoint),
 * so they are part of processBytes and not counted again.
 */
export function estimateTrainingMemory(c: ModelConfig, B: number, T: number,
                                       o: { recompute?: boolean; processBytes?: number; paramsLoaded?: boolean } = {}): MemoryEstimate {
  const P = bufferLength(paramSpecs(c));
  const a = activationFloats(c, B * T, o.recompute ?? false);
  const e = {
    parameters: o.paramsLoaded ? 0 : 4 * P,
    gradients: 4 * P,
    optimizer: 8 * P,
    activations: 4 * (a.layers + a.scratch),
    logits: 4 * a.logits,
    process: o.processBytes ?? process.memoryUsage().rss,
  };
  return { ...e, total: e.parameters + e.gradients + e.optimizer + e.activations + e.logits + e.process };
}

/** "1.2 GB", "350 MB" (binary units, as the kernel and --max-memory count). */
export function formatBytes(n: number): string {
  const mb = n / 2 ** 20;
  return mb >= 1024 ? `${(mb / 1024).toFixed(2)} GB` : `${mb.toFixed(0)} MB`;
}

/** One line: the total and its parts. */
export function describeEstimate(e: MemoryEstimate): string {
  const parts: [string, number][] = [["parameters", e.parameters], ["gradients", e.gradients], ["optimizer state", e.optimizer],
    ["activations", e.activations], ["logits", e.logits], ["runtime and data", e.process]];
  return `${formatBytes(e.total)} (` + parts.filter(([, v]) => v > 0).map(([k, v]) => `${k} ${formatBytes(v)}`).join(", ") + ")";
}

/**
 * Parses a size as typed after --max-memory: a number with a unit K, M, G or T (binary: 1G =
 * 2³⁰ bytes; "GB", "GiB" and lower case are accepted). Returns bytes; throws a message naming
 * the flag and the value otherwise.
 */
export function parseMemorySize(text: string, flag = "--max-memory"): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`${flag} ${text}: expected a size with a unit, e.g. 8G, 512M or 1.5GB`);
  const bytes = Number(m[1]) * 2 ** (10 * ("kmgt".indexOf(m[2].toLowerCase()) + 1));
  if (!(bytes > 0)) throw new Error(`${flag} ${text}: must be more than 0`);
  return bytes;
}

/** The refusal when the estimate exceeds `limit` bytes (null when it fits or there is no limit). */
export function memoryRefusal(e: MemoryEstimate, limit: number | undefined, typed: string | undefined, recompute: boolean): string | null {
  if (!limit || e.total <= limit) return null;
  const hints = [recompute ? null : "add --recompute", "lower --batch-size (with --grad-accum to keep the tokens per step)", "lower --seq-len", "or choose a smaller model"];
  return `--max-memory ${typed ?? formatBytes(limit)}: this run needs an estimated ${describeEstimate(e)}; ` + hints.filter(Boolean).join(", ");
}

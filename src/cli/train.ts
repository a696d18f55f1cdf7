/**
 * `mynah train`: pretraining from text files or prepared shards. Parses flags into
 * PretrainOptions and calls pretrain(); Ctrl-C saves a checkpoint and stops cleanly.
 */
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { PRESETS } from "../model/config.ts";
import { DEFAULT_OPTIMIZER, type OptimizerKind } from "../train/optim.ts";
import { pretrain } from "../train/pretrain.ts";
import type { ScheduleKind } from "../train/schedule.ts";
import { memorySize, runInterruptible } from "./run-training.ts";

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`expected an integer, got "${v}"`);
  return n;
};
const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`expected a number, got "${v}"`);
  return n;
};

interface Flags {
  data?: string[]; valFraction: number; preset: string; layers?: number; heads?: number; kvHeads?: number; width?: number;
  ffn?: number; context?: number; qkNorm?: boolean; tied?: boolean; batchSize: number; seqLen: number; steps: number;
  lr: number; minLr?: number; warmup: number; schedule: string; gradAccum: number; clip: number; optimizer: string;
  muonLr: number; weightDecay: number; evalEvery: number; evalBatches: number; sampleEvery: number; sampleTokens: number;
  checkpointEvery: number; keep: number; out: string; resume?: boolean; seed: number; threads?: number; logEvery: number; recompute?: boolean; maxMemory?: string;
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("Pretrain a Llama-shaped model on text files (character level) or on shards from `mynah data prepare`.")
    .option("--data <paths...>", "text files, or one folder prepared by `mynah data prepare`")
    .option("--val-fraction <f>", "text files: fraction of the tokens (at the end) held out for validation", num, 0.1)
    .option("--preset <name>", `model size: ${Object.keys(PRESETS).join(", ")}`, "small")
    .option("--layers <n>", "transformer blocks (overrides the preset)", int)
    .option("--heads <n>", "attention heads (must divide --width)", int)
    .option("--kv-heads <n>", "key/value heads for grouped-query attention (must divide --heads)", int)
    .option("--width <n>", "model width (channels)", int)
    .option("--ffn <n>", "MLP hidden width (default: Llama's rule, 8/3 × width rounded up to 32)", int)
    .option("--context <n>", "context length (default: --seq-len)", int)
    .option("--qk-norm", "Qwen3-style QK-norm")
    .option("--tied", "tie lm_head to the embedding")
    .option("--batch-size <n>", "sequences per micro-batch", int, 12)
    .option("--seq-len <n>", "tokens per sequence", int, 64)
    .option("--steps <n>", "optimizer steps", int, 2000)
    .option("--lr <x>", "peak AdamW learning rate", num, 1e-3)
    .option("--min-lr <x>", "final learning rate (default: lr / 10)", num)
    .option("--warmup <n>", "linear warmup steps", int, 100)
    .option("--schedule <kind>", "cosine or wsd (warmup-stable-decay)", "cosine")
    .option("--grad-accum <n>", "micro-batches per optimizer step", int, 1)
    .option("--clip <x>", "global gradient-norm clip (0 = off)", num, 1)
    .option("--optimizer <kind>", "adamw, or muon (Muon for hidden matrices, AdamW for the rest)", "adamw")
    .option("--muon-lr <x>", "peak Muon learning rate", num, DEFAULT_OPTIMIZER.muonLr)
    .option("--weight-decay <x>", "decoupled weight decay (not on norm gains)", num, DEFAULT_OPTIMIZER.weightDecay)
    .option("--eval-every <n>", "validation every n steps (0 = only at the end)", int, 250)
    .option("--eval-batches <n>", "batches per validation", int, 20)
    .option("--sample-every <n>", "print a sample every n steps (0 = never)", int, 0)
    .option("--sample-tokens <n>", "tokens per sample", int, 200)
    .option("--checkpoint-every <n>", "checkpoint every n steps (0 = only at the end)", int, 500)
    .option("--keep <n>", "checkpoints kept (0 = all)", int, 3)
    .option("--out <dir>", "run folder: checkpoints, metrics.jsonl", "runs/train")
    .option("--resume", "continue from the run folder's latest checkpoint")
    .option("--seed <n>", "random seed (weights, data order, samples)", int, 1337)
    .option("--threads <n>", "compute threads (default: MYNAH_THREADS or every CPU)", int)
    .option("--log-every <n>", "when not on a terminal, print a line every n steps", int, 10)
    .option("--recompute", "keep only each block's input and recompute the block in the backward: ~3× less activation memory for ~1/5 more arithmetic, same gradients")
    .option("--max-memory <size>", "refuse to start when the estimated peak memory exceeds this (e.g. 8G, 512M)")
    .action(async (f: Flags) => {
      const threads = f.threads ?? (process.env.MYNAH_THREADS ? int(process.env.MYNAH_THREADS) : 0);
      setThreads(threads);
      await runInterruptible("train", async (signal) => {
        const maxMemory = f.maxMemory === undefined ? undefined : { bytes: memorySize(f.maxMemory), typed: f.maxMemory };
        await pretrain({
          data: f.data ?? [], valFraction: f.valFraction,
          model: { preset: f.preset, layers: f.layers, heads: f.heads, kvHeads: f.kvHeads, width: f.width, ffn: f.ffn,
                   context: f.context, qkNorm: f.qkNorm, tiedEmbeddings: f.tied },
          loop: {
            steps: f.steps, batchSize: f.batchSize, seqLen: f.seqLen, gradAccum: f.gradAccum,
            schedule: f.schedule as ScheduleKind, warmup: f.warmup, minLrRatio: (f.minLr ?? f.lr / 10) / f.lr,
            optimizer: { ...DEFAULT_OPTIMIZER, kind: f.optimizer as OptimizerKind, lr: f.lr, muonLr: f.muonLr, weightDecay: f.weightDecay },
            clip: f.clip, evalEvery: f.evalEvery, sampleEvery: f.sampleEvery, checkpointEvery: f.checkpointEvery, seed: f.seed,
          },
          evalBatches: f.evalBatches, sampleTokens: f.sampleEvery > 0 ? f.sampleTokens : 0,
          out: f.out, resume: Boolean(f.resume), keep: f.keep,
          write: (s) => process.stdout.write(s), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery,
          signal, recompute: Boolean(f.recompute), maxMemory,
        });
      });
    });
}

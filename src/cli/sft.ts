/**
 * `mynah sft --from CHECKPOINT --data CONVERSATIONS...`: supervised fine-tuning on
 * conversations (loss on the assistant replies only), with checkpoints, --resume and the
 * held-out assistant-token loss before and after. Parses flags and calls sft().
 */
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { INPUT_FORMATS, type InputFormat } from "../data/readers.ts";
import { DEFAULT_OPTIMIZER, type OptimizerKind } from "../train/optim.ts";
import type { ScheduleKind } from "../train/schedule.ts";
import { sft } from "../train/sft.ts";
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
  from: string; data: string[]; tokenizer?: string; format: string; valFraction: number; evalConversations: number; packing: string;
  batchSize: number; seqLen?: number; steps: number; lr: number; minLr?: number; warmup: number; schedule: string; gradAccum: number;
  clip: number; optimizer: string; muonLr: number; weightDecay: number; evalEvery: number; checkpointEvery: number; keep: number;
  out: string; resume?: boolean; seed: number; threads?: number; logEvery: number; recompute?: boolean; maxMemory?: string; skipBad?: boolean;
}

export function registerSft(program: Command): void {
  program
    .command("sft")
    .description("Fine-tune a pretrained checkpoint on conversations (chat JSONL, ShareGPT, Alpaca, Parquet); loss on assistant replies only")
    .requiredOption("--from <dir>", "checkpoint folder, run folder (its latest checkpoint), or model folder (with --tokenizer)")
    .requiredOption("--data <paths...>", "conversation files, folders or globs")
    .option("--tokenizer <dir>", "tokenizer folder, when --from does not record one")
    .option("--format <format>", `record format: ${INPUT_FORMATS.filter((f) => f !== "text").join(", ")}`, "auto")
    .option("--val-fraction <f>", "conversations held out (by content) for the before/after loss", num, 0.1)
    .option("--eval-conversations <n>", "held-out conversations scored per evaluation (0 = all)", int, 200)
    .option("--packing <mode>", "packed (several conversations per row) or padded (one per row)", "packed")
    .option("--batch-size <n>", "rows per micro-batch", int, 8)
    .option("--seq-len <n>", "tokens per row (conversations longer are cut by whole turns; default: the model's context)", int)
    .option("--steps <n>", "optimizer steps", int, 300)
    .option("--lr <x>", "peak learning rate", num, 3e-4)
    .option("--min-lr <x>", "final learning rate (default: lr / 10)", num)
    .option("--warmup <n>", "linear warmup steps", int, 20)
    .option("--schedule <kind>", "cosine or wsd", "cosine")
    .option("--grad-accum <n>", "micro-batches per optimizer step", int, 1)
    .option("--clip <x>", "global gradient-norm clip (0 = off)", num, 1)
    .option("--optimizer <kind>", "adamw or muon", "adamw")
    .option("--muon-lr <x>", "peak Muon learning rate", num, DEFAULT_OPTIMIZER.muonLr)
    .option("--weight-decay <x>", "decoupled weight decay", num, 0)
    .option("--eval-every <n>", "held-out loss every n steps (0 = only at the end)", int, 50)
    .option("--checkpoint-every <n>", "checkpoint every n steps (0 = only at the end)", int, 100)
    .option("--keep <n>", "checkpoints kept (0 = all)", int, 3)
    .option("--out <dir>", "run folder: checkpoints, metrics.jsonl", "runs/sft")
    .option("--resume", "continue from the run folder's latest checkpoint")
    .option("--seed <n>", "random seed (split, order)", int, 1337)
    .option("--threads <n>", "compute threads (default: MYNAH_THREADS or every CPU)", int)
    .option("--log-every <n>", "when not on a terminal, print a line every n steps", int, 10)
    .option("--recompute", "keep only each block's input and recompute the block in the backward: ~3× less activation memory for ~1/5 more arithmetic, same gradients")
    .option("--max-memory <size>", "refuse to start when the estimated peak memory exceeds this (e.g. 8G, 512M)")
    .option("--skip-bad", "skip and count bad records instead of stopping at the first")
    .action(async (f: Flags) => {
      if (!INPUT_FORMATS.includes(f.format as InputFormat) || f.format === "text") throw new Error(`--format: ${f.format} is not a conversation format`);
      if (f.packing !== "packed" && f.packing !== "padded") throw new Error(`--packing: ${f.packing} is not packed or padded`);
      setThreads(f.threads ?? (process.env.MYNAH_THREADS ? int(process.env.MYNAH_THREADS) : 0));
      let shown = 0;
      await runInterruptible("sft", async (signal) => {
        const maxMemory = f.maxMemory === undefined ? undefined : { bytes: memorySize(f.maxMemory), typed: f.maxMemory };
        await sft({
          from: f.from, data: f.data, tokenizer: f.tokenizer, format: f.format as InputFormat, valFraction: f.valFraction,
          evalConversations: f.evalConversations, packing: f.packing as "packed" | "padded",
          loop: {
            steps: f.steps, batchSize: f.batchSize, seqLen: f.seqLen ?? 0, gradAccum: f.gradAccum,
            schedule: f.schedule as ScheduleKind, warmup: f.warmup, minLrRatio: (f.minLr ?? f.lr / 10) / f.lr,
            optimizer: { ...DEFAULT_OPTIMIZER, kind: f.optimizer as OptimizerKind, lr: f.lr, muonLr: f.muonLr, weightDecay: f.weightDecay },
            clip: f.clip, evalEvery: f.evalEvery, sampleEvery: 0, checkpointEvery: f.checkpointEvery, seed: f.seed,
          },
          out: f.out, resume: Boolean(f.resume), keep: f.keep, skipBad: Boolean(f.skipBad),
          onSkip: (e) => {
            if (shown++ < 10) process.stderr.write(`skipped ${e.message}\n`);
          },
          write: (s) => process.stdout.write(s), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery,
          signal, recompute: Boolean(f.recompute), maxMemory,
        });
      });
    });
}

/**
 * `mynah sft --from CHECKPOINT --data CONVERSATIONS...`: supervised fine-tuning on
 * conversations (loss on the assistant replies only), with checkpoints, --resume and the
 * held-out assistant-token loss before and after. Parses flags and calls sft().
 */
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { INPUT_FORMATS, type InputFormat } from "../data/readers.ts";
import { sft } from "../train/sft.ts";
import { addCheckpointFlags, addLoopFlags, memorySize, precisionOption, runInterruptible, runOptionsFrom } from "./run-training.ts";
import type { Precision } from "../model/gpt.ts";
import { choiceOption, intOption, numOption, threadsOption } from "./options.ts";


interface Flags {
  from: string; data: string[]; tokenizer?: string; format: string; valFraction: number; evalConversations: number; packing: string;
  batchSize: number; seqLen?: number; steps: number; lr: number; minLr?: number; warmup: number; schedule: string; gradAccum: number;
  clip: number; optimizer: string; muonLr: number; weightDecay: number; evalEvery: number; checkpointEvery: number; keep: number;
  out: string; resume?: boolean; force?: boolean; seed: number; threads: number; logEvery: number; recompute?: boolean; maxMemory?: string; skipBad?: boolean; precision?: Precision;
}

export function registerSft(program: Command): void {
  const cmd = program
    .command("sft")
    .description("Fine-tune a pretrained checkpoint on conversations (chat JSONL, ShareGPT, Alpaca, Parquet); loss on assistant replies only")
    .requiredOption("--from <dir>", "checkpoint folder, run folder (its latest checkpoint), or model folder (with --tokenizer)")
    .requiredOption("--data <paths...>", "conversation files, folders or globs")
    .option("--tokenizer <dir>", "tokenizer folder, when --from does not record one")
    .addOption(choiceOption("--format <format>", "record format", INPUT_FORMATS.filter((f) => f !== "text"), "auto"))
    .addOption(numOption("--val-fraction <x>", "conversations held out (by content) for the before/after loss", { min: 0, max: 0.5 }, 0.1))
    .addOption(intOption("--eval-conversations <n>", "held-out conversations scored per evaluation (0 = all)", { min: 0 }, 200))
    .addOption(choiceOption("--packing <mode>", "packed (several conversations per row) or padded (one per row)", ["packed", "padded"], "packed"))
    .addOption(intOption("--batch-size <n>", "rows per micro-batch", { min: 1 }, 8))
    .addOption(intOption("--seq-len <n>", "tokens per row (conversations longer are cut by whole turns; default: the model's context)", { min: 1 }))
    .addOption(intOption("--eval-every <n>", "held-out loss every n steps (0 = only at the end)", { min: 0 }, 50))
    .option("--out <dir>", "run folder: checkpoints, metrics.jsonl", "runs/sft")
    .option("--resume", "continue from the run folder's latest checkpoint")
    .option("--force", "without --resume: replace a run already in --out (its checkpoints and metrics.jsonl)")
    .addOption(intOption("--seed <n>", "random seed (split, order)", { min: 0, max: 2 ** 32 - 1 }, 1337))
    .addOption(threadsOption())
    .addOption(intOption("--log-every <n>", "when not on a terminal, print a line every n steps", { min: 1 }, 10))
    .option("--recompute", "keep only each block's input and recompute the block in the backward: ~3× less activation memory for ~1/5 more arithmetic, same gradients")
    .option("--max-memory <size>", "refuse to start when the estimated peak memory exceeds this (e.g. 8G, 512M)")
    .option("--skip-bad", "skip and count bad records instead of stopping at the first")
    .addOption(precisionOption());
  addCheckpointFlags(addLoopFlags(cmd, { steps: 300, lr: 3e-4, warmup: 20 }))
    .action(async (f: Flags) => {
      setThreads(f.threads);
      await runInterruptible("sft", async (signal) => {
        const maxMemory = f.maxMemory === undefined ? undefined : { bytes: memorySize(f.maxMemory), typed: f.maxMemory };
        await sft({
          from: f.from, data: f.data, tokenizer: f.tokenizer, format: f.format as InputFormat, valFraction: f.valFraction,
          evalConversations: f.evalConversations, packing: f.packing as "packed" | "padded",
          ...runOptionsFrom(f, signal),
          recompute: Boolean(f.recompute), maxMemory, precision: f.precision,
        });
      });
    });
}

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
import { memorySize, precisionOption, runInterruptible } from "./run-training.ts";
import type { Precision } from "../model/gpt.ts";
import { choiceOption, intOption, numOption, threadsOption } from "./options.ts";
import { sampleWhileTraining } from "../infer/train-sample.ts";


interface Flags {
  data?: string[]; valFraction: number; preset: string; layers?: number; heads?: number; kvHeads?: number; width?: number;
  ffn?: number; context?: number; qkNorm?: boolean; tied?: boolean; batchSize: number; seqLen: number; steps: number;
  lr: number; minLr?: number; warmup: number; schedule: string; gradAccum: number; clip: number; optimizer: string;
  muonLr: number; weightDecay: number; evalEvery: number; evalBatches: number; sampleEvery: number; sampleTokens: number;
  checkpointEvery: number; keep: number; out: string; resume?: boolean; force?: boolean; seed: number; threads: number; logEvery: number; recompute?: boolean; maxMemory?: string; precision?: Precision;
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("Pretrain a Llama-shaped model on text files (character level) or on shards from `mynah data prepare`.")
    .option("--data <paths...>", "text files, or one folder prepared by `mynah data prepare`")
    .addOption(numOption("--val-fraction <x>", "text files: fraction of the tokens (at the end) held out for validation", { min: 0, max: 0.5 }, 0.1))
    .addOption(choiceOption("--preset <name>", "model size (the flags below override its parts)", Object.keys(PRESETS), "small"))
    .addOption(intOption("--layers <n>", "transformer blocks (overrides the preset)", { min: 1 }))
    .addOption(intOption("--heads <n>", "attention heads (must divide --width)", { min: 1 }))
    .addOption(intOption("--kv-heads <n>", "key/value heads for grouped-query attention (must divide --heads)", { min: 1 }))
    .addOption(intOption("--width <n>", "model width (channels)", { min: 2 }))
    .addOption(intOption("--ffn <n>", "MLP hidden width (default: Llama's rule, 8/3 × width rounded up to 32)", { min: 1 }))
    .addOption(intOption("--context <n>", "context length (default: --seq-len)", { min: 2 }))
    .option("--qk-norm", "Qwen3-style QK-norm")
    .option("--tied", "tie lm_head to the embedding")
    .addOption(intOption("--batch-size <n>", "sequences per micro-batch", { min: 1 }, 12))
    .addOption(intOption("--seq-len <n>", "tokens per sequence", { min: 1 }, 64))
    .addOption(intOption("--steps <n>", "optimizer steps", { min: 1 }, 2000))
    .addOption(numOption("--lr <x>", "peak AdamW learning rate", { min: 0, minExclusive: true }, 1e-3))
    .addOption(numOption("--min-lr <x>", "final learning rate (default: lr / 10)", { min: 0 }))
    .addOption(intOption("--warmup <n>", "linear warmup steps", { min: 0 }, 100))
    .addOption(choiceOption("--schedule <kind>", "learning-rate schedule: cosine, or wsd (warmup-stable-decay)", ["cosine", "wsd"], "cosine"))
    .addOption(intOption("--grad-accum <n>", "micro-batches per optimizer step", { min: 1 }, 1))
    .addOption(numOption("--clip <x>", "global gradient-norm clip (0 = off)", { min: 0 }, 1))
    .addOption(choiceOption("--optimizer <kind>", "adamw, or muon (Muon for hidden matrices, AdamW for the rest)", ["adamw", "muon"], "adamw"))
    .addOption(numOption("--muon-lr <x>", "peak Muon learning rate", { min: 0, minExclusive: true }, DEFAULT_OPTIMIZER.muonLr))
    .addOption(numOption("--weight-decay <x>", "decoupled weight decay (not on norm gains)", { min: 0 }, DEFAULT_OPTIMIZER.weightDecay))
    .addOption(intOption("--eval-every <n>", "validation every n steps (0 = only at the end)", { min: 0 }, 250))
    .addOption(intOption("--eval-batches <n>", "batches per validation", { min: 0 }, 20))
    .addOption(intOption("--sample-every <n>", "print a sample every n steps (0 = never)", { min: 0 }, 0))
    .addOption(intOption("--sample-tokens <n>", "tokens per sample (at most the model's context)", { min: 1 }, 200))
    .addOption(intOption("--checkpoint-every <n>", "checkpoint every n steps (0 = only at the end)", { min: 0 }, 500))
    .addOption(intOption("--keep <n>", "checkpoints kept (0 = all)", { min: 0 }, 3))
    .option("--out <dir>", "run folder: checkpoints, metrics.jsonl", "runs/train")
    .option("--resume", "continue from the run folder's latest checkpoint")
    .option("--force", "without --resume: replace a run already in --out (its checkpoints and metrics.jsonl)")
    .addOption(intOption("--seed <n>", "random seed (weights, data order, samples)", { min: 0, max: 2 ** 32 - 1 }, 1337))
    .addOption(threadsOption())
    .addOption(intOption("--log-every <n>", "when not on a terminal, print a line every n steps", { min: 1 }, 10))
    .option("--recompute", "keep only each block's input and recompute the block in the backward: ~3× less activation memory for ~1/5 more arithmetic, same gradients")
    .option("--max-memory <size>", "refuse to start when the estimated peak memory exceeds this (e.g. 8G, 512M)")
    .addOption(precisionOption())
    .action(async (f: Flags) => {
      setThreads(f.threads);
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
          evalBatches: f.evalBatches, sampleTokens: f.sampleEvery > 0 ? f.sampleTokens : 0, sampler: sampleWhileTraining,
          out: f.out, resume: Boolean(f.resume), force: Boolean(f.force), keep: f.keep,
          write: (s) => process.stdout.write(s), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery,
          signal, recompute: Boolean(f.recompute), maxMemory, precision: f.precision,
        });
      });
    });
}

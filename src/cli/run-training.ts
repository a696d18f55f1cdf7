/**
 * What `mynah train` and `mynah sft` share around a run: Ctrl-C (or SIGTERM) asks the loop to
 * stop after the current step and save a checkpoint; a second Ctrl-C is ignored until then.
 * Settings refused before training print one line and exit with status 2.
 */
import type { Command, Option } from "commander";
import { PRECISIONS } from "../model/gpt.ts";
import { SettingsError } from "../core/errors.ts";
import { parseMemorySize } from "../train/memory.ts";
import { DEFAULT_OPTIMIZER, type OptimizerKind } from "../train/optim.ts";
import type { LoopOptions } from "../train/loop.ts";
import type { ScheduleKind } from "../train/schedule.ts";
import { choiceOption, intOption, numOption } from "./options.ts";

/**
 * The optimizer, schedule and checkpoint flags that `sft` and `dpo` share (their defaults
 * differ: steps, peak learning rate, warmup).
 */
export function addLoopFlags(cmd: Command, d: { steps: number; lr: number; warmup: number }): Command {
  return cmd
    .addOption(intOption("--steps <n>", "optimizer steps", { min: 1 }, d.steps))
    .addOption(numOption("--lr <x>", "peak learning rate", { min: 0, minExclusive: true }, d.lr))
    .addOption(numOption("--min-lr <x>", "final learning rate (default: lr / 10)", { min: 0 }))
    .addOption(intOption("--warmup <n>", "linear warmup steps", { min: 0 }, d.warmup))
    .addOption(choiceOption("--schedule <kind>", "learning-rate schedule", ["cosine", "wsd"], "cosine"))
    .addOption(intOption("--grad-accum <n>", "micro-batches per optimizer step", { min: 1 }, 1))
    .addOption(numOption("--clip <x>", "global gradient-norm clip (0 = off)", { min: 0 }, 1))
    .addOption(choiceOption("--optimizer <kind>", "adamw or muon", ["adamw", "muon"], "adamw"))
    .addOption(numOption("--muon-lr <x>", "peak Muon learning rate", { min: 0, minExclusive: true }, DEFAULT_OPTIMIZER.muonLr))
    .addOption(numOption("--weight-decay <x>", "decoupled weight decay", { min: 0 }, 0));
}

/** `--precision fp32|bf16`, as `train`, `sft` and `dpo` have it (no default: a resume keeps the checkpoint's). */
export function precisionOption(): Option {
  return choiceOption("--precision <p>", "matrix-product operands: fp32, or bf16 (the GEMMs, and attention's on AMX; float32 accumulation, " +
    "weights, optimizer, norms, softmax and loss; faster where the CPU has bf16 matrix units) (default: fp32, or the checkpoint's with --resume)", PRECISIONS);
}

/** `--checkpoint-every` and `--keep`, as `sft` and `dpo` have them. */
export function addCheckpointFlags(cmd: Command): Command {
  return cmd
    .addOption(intOption("--checkpoint-every <n>", "checkpoint every n steps (0 = only at the end)", { min: 0 }, 100))
    .addOption(intOption("--keep <n>", "checkpoints kept (0 = all)", { min: 0 }, 3));
}

export async function runInterruptible(command: string, run: (signal: AbortSignal) => Promise<unknown>): Promise<void> {
  const ctl = new AbortController();
  const onInt = (): void => {
    if (ctl.signal.aborted) return;
    process.stderr.write("\nstopping after this step (saving a checkpoint)…\n");
    ctl.abort();
  };
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onInt);
  try {
    await run(ctl.signal);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`mynah ${command}: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onInt);
  }
}

/** `--max-memory SIZE` in bytes; a bad value is refused like any other setting (exit status 2). */
export function memorySize(typed: string): number {
  try {
    return parseMemorySize(typed);
  } catch (err) {
    throw new SettingsError((err as Error).message);
  }
}

/** The values of addLoopFlags and addCheckpointFlags, as commander parses them. */
export interface LoopFlags {
  steps: number; batchSize: number; seqLen?: number; gradAccum: number; schedule: string; warmup: number; minLr?: number; lr: number;
  optimizer: string; muonLr: number; weightDecay: number; clip: number; evalEvery: number; checkpointEvery: number; seed: number;
  out: string; resume?: boolean; force?: boolean; keep: number; skipBad?: boolean; logEvery: number;
}

/** The loop settings and run options shared by `sft` and `dpo`, from their flags. */
export function runOptionsFrom(f: LoopFlags, signal: AbortSignal) {
  let shown = 0;
  const loop: Omit<LoopOptions, "peakFlops"> = {
    steps: f.steps, batchSize: f.batchSize, seqLen: f.seqLen ?? 0, gradAccum: f.gradAccum,
    schedule: f.schedule as ScheduleKind, warmup: f.warmup, minLrRatio: (f.minLr ?? f.lr / 10) / f.lr,
    optimizer: { ...DEFAULT_OPTIMIZER, kind: f.optimizer as OptimizerKind, lr: f.lr, muonLr: f.muonLr, weightDecay: f.weightDecay },
    clip: f.clip, evalEvery: f.evalEvery, sampleEvery: 0, checkpointEvery: f.checkpointEvery, seed: f.seed,
  };
  return {
    loop, out: f.out, resume: Boolean(f.resume), force: Boolean(f.force), keep: f.keep, skipBad: Boolean(f.skipBad),
    onSkip: (e: Error): void => {
      if (shown++ < 10) process.stderr.write(`skipped ${e.message}\n`);
    },
    write: (t: string): void => void process.stdout.write(t), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery, signal,
  };
}

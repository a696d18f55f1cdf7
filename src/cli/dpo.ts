/**
 * `mynah dpo --from SFT_RUN --data PREFS... --out RUN`: Direct Preference Optimization on
 * preference pairs (TRL shape, Anthropic HH transcripts, `mynah feedback export`), with the
 * reference log-probs cached in the run folder, checkpoints, --resume and held-out reward
 * accuracy before and after. Parses flags and calls dpo().
 */
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { DPO_LOSSES, type DpoLossKind } from "../train/dpo-loss.ts";
import { dpo } from "../train/dpo.ts";
import { engineSampler } from "./replies.ts";
import { addCheckpointFlags, addLoopFlags, precisionOption, runInterruptible, runOptionsFrom } from "./run-training.ts";
import type { Precision } from "../model/gpt.ts";
import { choiceOption, intOption, numOption, threadsOption } from "./options.ts";


interface Flags {
  from: string; data: string[]; tokenizer?: string; loss: string; beta: number; labelSmoothing: number; rpoAlpha: number; lengthNorm: string;
  valFraction: number; evalPairs: number; klPrompts: number; klMaxTokens: number;
  batchSize: number; seqLen?: number; steps: number; lr: number; minLr?: number; warmup: number; schedule: string; gradAccum: number;
  clip: number; optimizer: string; muonLr: number; weightDecay: number; evalEvery: number; checkpointEvery: number; keep: number;
  out: string; resume?: boolean; force?: boolean; seed: number; threads: number; logEvery: number; skipBad?: boolean; precision?: Precision;
}

export function registerDpo(program: Command): void {
  const cmd = program
    .command("dpo")
    .description("Preference tuning (Direct Preference Optimization) of a fine-tuned model on chosen/rejected reply pairs")
    .requiredOption("--from <dir>", "SFT checkpoint folder, run folder (its latest checkpoint), or model folder (with --tokenizer)")
    .requiredOption("--data <paths...>", "preference files, folders or globs (TRL prompt/chosen/rejected, Anthropic HH, feedback export)")
    .option("--tokenizer <dir>", "tokenizer folder, when --from does not record one")
    .addOption(choiceOption("--loss <kind>", `DPO loss: ${DPO_LOSSES.join(", ")}`, DPO_LOSSES, "sigmoid"))
    .addOption(numOption("--beta <x>", "strength of the pull towards the reference (β)", { min: 0, minExclusive: true }, 0.1))
    .addOption(numOption("--label-smoothing <x>", "assumed fraction of flipped labels (sigmoid loss only; conservative DPO)", { min: 0, max: 0.5 }, 0))
    .addOption(numOption("--rpo-alpha <x>", "add this times the chosen replies' NLL to the loss (TRL's rpo_alpha; keeps chosen replies likely)", { min: 0 }, 0))
    .addOption(choiceOption("--length-norm <mode>", "mean instead of summed reply log-probs: on, off, or auto (on for ipo)", ["on", "off", "auto"], "auto"))
    .addOption(numOption("--val-fraction <x>", "prompts held out (by content) for the before/after figures", { min: 0, max: 0.5 }, 0.1))
    .addOption(intOption("--eval-pairs <n>", "held-out pairs scored per evaluation (0 = all)", { min: 0 }, 200))
    .addOption(intOption("--kl-prompts <n>", "held-out prompts for the KL-to-reference estimate at the end (0 = skip)", { min: 0 }, 32))
    .addOption(intOption("--kl-max-tokens <n>", "longest sampled reply for the KL estimate", { min: 1 }, 64))
    .addOption(intOption("--batch-size <n>", "preference pairs per micro-batch (two rows each)", { min: 1 }, 8))
    .addOption(intOption("--seq-len <n>", "most tokens per prompt + reply (longer prompts lose their oldest turns; default: the model's context)", { min: 1 }))
    .addOption(intOption("--eval-every <n>", "held-out figures every n steps (0 = only at the end)", { min: 0 }, 50))
    .option("--out <dir>", "run folder: checkpoints, reference-logps.json, metrics.jsonl", "runs/dpo")
    .option("--resume", "continue from the run folder's latest checkpoint")
    .option("--force", "without --resume: replace a run already in --out (its checkpoints and metrics.jsonl; the reference log-probs cache is kept, keyed by pair)")
    .addOption(intOption("--seed <n>", "random seed (split, order)", { min: 0, max: 2 ** 32 - 1 }, 1337))
    .addOption(threadsOption())
    .addOption(intOption("--log-every <n>", "when not on a terminal, print a line every n steps", { min: 1 }, 10))
    .option("--skip-bad", "skip and count bad records instead of stopping at the first")
    .addOption(precisionOption());
  addCheckpointFlags(addLoopFlags(cmd, { steps: 200, lr: 1e-4, warmup: 10 }))
    .action(async (f: Flags) => {
      if (!DPO_LOSSES.includes(f.loss as DpoLossKind)) throw new Error(`--loss: ${f.loss} is not one of ${DPO_LOSSES.join(", ")}`);
      if (!["on", "off", "auto"].includes(f.lengthNorm)) throw new Error(`--length-norm: ${f.lengthNorm} is not on, off or auto`);
      if (f.klMaxTokens < 1) throw new Error(`--kl-max-tokens must be at least 1, got ${f.klMaxTokens}`);
      setThreads(f.threads);
      await runInterruptible("dpo", async (signal) => {
        await dpo({
          from: f.from, data: f.data, tokenizer: f.tokenizer, loss: f.loss as DpoLossKind, beta: f.beta, labelSmoothing: f.labelSmoothing, rpoAlpha: f.rpoAlpha,
          lengthNorm: f.lengthNorm === "auto" ? "auto" : f.lengthNorm === "on",
          valFraction: f.valFraction, evalPairs: f.evalPairs, klPrompts: f.klPrompts, klMaxTokens: f.klMaxTokens, sampler: engineSampler,
          ...runOptionsFrom(f, signal),
          precision: f.precision,
        });
      });
    });
}

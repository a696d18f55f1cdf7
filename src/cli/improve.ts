/**
 * `mynah improve --db FEEDBACK_DB --from MODEL --out RUN` (or `--feedback DIR`): one command
 * for the loop. Exports the chat server's feedback (src/serve/feedback-export.ts) into
 * RUN/feedback, then SFT on the corrected conversations and DPO on the preference pairs, and
 * prints what changed on held-out prompts. Refuses, saying how much there is, when the
 * feedback is too thin. Parses flags and calls improve().
 */
import { join } from "node:path";
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { exportFeedback } from "../serve/feedback-export.ts";
import { DPO_LOSSES, type DpoLossKind } from "../train/dpo-loss.ts";
import { improve } from "../train/improve.ts";
import { engineGreedy, engineSampler } from "./replies.ts";
import { runInterruptible } from "./run-training.ts";
import { choiceOption, intOption, numOption, threadsOption } from "./options.ts";


interface Flags {
  db?: string; feedback?: string; from: string; out: string; force?: boolean; tokenizer?: string; minConversations: number; minPairs: number; valFraction: number;
  sftSteps: number; sftLr: number; dpoSteps: number; dpoLr: number; batchSize: number; seqLen?: number; loss: string; beta: number; rpoAlpha: number;
  seed: number; threads: number; logEvery: number;
}

export function registerImprove(program: Command): void {
  program
    .command("improve")
    .description("Learn from the chat's feedback: export it, SFT on corrected replies, DPO on preferred/rejected replies, and show what changed")
    .option("--db <file>", "the chat server's database (exported to RUN/feedback first)")
    .option("--feedback <dir>", "an exported feedback folder (conversations.jsonl, preferences.jsonl) instead of --db")
    .requiredOption("--from <dir>", "the model the feedback was collected on (checkpoint, run or model folder)")
    .requiredOption("--out <dir>", "run folder: feedback/, sft/, dpo/, improve-summary.json")
    .option("--force", "replace the sft/ and dpo/ runs of an earlier round in --out")
    .option("--tokenizer <dir>", "tokenizer folder, when --from does not record one")
    .addOption(intOption("--min-conversations <n>", "fewest corrected conversations worth an SFT stage", { min: 1 }, 20))
    .addOption(intOption("--min-pairs <n>", "fewest preference pairs worth a DPO stage", { min: 1 }, 20))
    .addOption(numOption("--val-fraction <x>", "prompts held out for the before/after comparison", { min: 0, max: 0.5 }, 0.15))
    .addOption(intOption("--sft-steps <n>", "SFT optimizer steps", { min: 1 }, 100))
    .addOption(numOption("--sft-lr <x>", "SFT peak learning rate", { min: 0, minExclusive: true }, 3e-4))
    .addOption(intOption("--dpo-steps <n>", "DPO optimizer steps", { min: 1 }, 100))
    .addOption(numOption("--dpo-lr <x>", "DPO peak learning rate", { min: 0, minExclusive: true }, 1e-4))
    .addOption(intOption("--batch-size <n>", "conversations (SFT) or pairs (DPO) per step", { min: 1 }, 8))
    .addOption(intOption("--seq-len <n>", "most tokens per row (default: the model's context)", { min: 1 }))
    .addOption(choiceOption("--loss <kind>", `DPO loss: ${DPO_LOSSES.join(", ")}`, DPO_LOSSES, "sigmoid"))
    .addOption(numOption("--beta <x>", "DPO β", { min: 0, minExclusive: true }, 0.1))
    .addOption(numOption("--rpo-alpha <x>", "weight of the chosen replies' NLL in the DPO loss (0 = plain DPO)", { min: 0 }, 1))
    .addOption(intOption("--seed <n>", "random seed (split, order)", { min: 0, max: 2 ** 32 - 1 }, 1337))
    .addOption(threadsOption())
    .addOption(intOption("--log-every <n>", "when not on a terminal, print a line every n steps", { min: 1 }, 25))
    .action(async (f: Flags) => {
      if ((f.db === undefined) === (f.feedback === undefined)) throw new Error("give one of --db (the chat server's database) or --feedback (an exported folder)");
      if (!DPO_LOSSES.includes(f.loss as DpoLossKind)) throw new Error(`--loss: ${f.loss} is not one of ${DPO_LOSSES.join(", ")}`);
      for (const [flag, v] of [["--min-conversations", f.minConversations], ["--min-pairs", f.minPairs], ["--sft-steps", f.sftSteps], ["--dpo-steps", f.dpoSteps], ["--batch-size", f.batchSize]] as const) {
        if (v < 1) throw new Error(`${flag} must be at least 1, got ${v}`);
      }
      setThreads(f.threads);
      let feedback = f.feedback!;
      if (f.db !== undefined) {
        feedback = join(f.out, "feedback");
        const e = exportFeedback({ db: f.db, out: feedback });
        process.stdout.write(`exported ${e.conversations} conversations and ${e.preferences} preference pairs from ${f.db} → ${feedback}\n`);
      }
      await runInterruptible("improve", async (signal) => {
        await improve({
          feedback, from: f.from, tokenizer: f.tokenizer, out: f.out, force: Boolean(f.force), minConversations: f.minConversations, minPairs: f.minPairs, valFraction: f.valFraction,
          sftSteps: f.sftSteps, sftLr: f.sftLr, dpoSteps: f.dpoSteps, dpoLr: f.dpoLr, batchSize: f.batchSize, seqLen: f.seqLen ?? 0,
          loss: f.loss as DpoLossKind, beta: f.beta, rpoAlpha: f.rpoAlpha, seed: f.seed, sampler: engineSampler, greedy: engineGreedy,
          write: (s) => process.stdout.write(s), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery, signal,
        });
      });
    });
}

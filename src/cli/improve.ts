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
  db?: string; feedback?: string; from: string; out: string; tokenizer?: string; minConversations: number; minPairs: number; valFraction: number;
  sftSteps: number; sftLr: number; dpoSteps: number; dpoLr: number; batchSize: number; seqLen?: number; loss: string; beta: number; rpoAlpha: number;
  seed: number; threads?: number; logEvery: number;
}

export function registerImprove(program: Command): void {
  program
    .command("improve")
    .description("Learn from the chat's feedback: export it, SFT on corrected replies, DPO on preferred/rejected replies, and show what changed")
    .option("--db <file>", "the chat server's database (exported to RUN/feedback first)")
    .option("--feedback <dir>", "an exported feedback folder (conversations.jsonl, preferences.jsonl) instead of --db")
    .requiredOption("--from <dir>", "the model the feedback was collected on (checkpoint, run or model folder)")
    .requiredOption("--out <dir>", "run folder: feedback/, sft/, dpo/, improve-summary.json")
    .option("--tokenizer <dir>", "tokenizer folder, when --from does not record one")
    .option("--min-conversations <n>", "fewest corrected conversations worth an SFT stage", int, 20)
    .option("--min-pairs <n>", "fewest preference pairs worth a DPO stage", int, 20)
    .option("--val-fraction <f>", "prompts held out for the before/after comparison", num, 0.15)
    .option("--sft-steps <n>", "SFT optimizer steps", int, 100)
    .option("--sft-lr <x>", "SFT peak learning rate", num, 3e-4)
    .option("--dpo-steps <n>", "DPO optimizer steps", int, 100)
    .option("--dpo-lr <x>", "DPO peak learning rate", num, 1e-4)
    .option("--batch-size <n>", "conversations (SFT) or pairs (DPO) per step", int, 8)
    .option("--seq-len <n>", "most tokens per row (default: the model's context)", int)
    .option("--loss <kind>", `DPO loss: ${DPO_LOSSES.join(", ")}`, "sigmoid")
    .option("--beta <x>", "DPO β", num, 0.1)
    .option("--rpo-alpha <x>", "weight of the chosen replies' NLL in the DPO loss (0 = plain DPO)", num, 1)
    .option("--seed <n>", "random seed (split, order)", int, 1337)
    .option("--threads <n>", "compute threads (default: MYNAH_THREADS or every CPU)", int)
    .option("--log-every <n>", "when not on a terminal, print a line every n steps", int, 25)
    .action(async (f: Flags) => {
      if ((f.db === undefined) === (f.feedback === undefined)) throw new Error("give one of --db (the chat server's database) or --feedback (an exported folder)");
      if (!DPO_LOSSES.includes(f.loss as DpoLossKind)) throw new Error(`--loss: ${f.loss} is not one of ${DPO_LOSSES.join(", ")}`);
      for (const [flag, v] of [["--min-conversations", f.minConversations], ["--min-pairs", f.minPairs], ["--sft-steps", f.sftSteps], ["--dpo-steps", f.dpoSteps], ["--batch-size", f.batchSize]] as const) {
        if (v < 1) throw new Error(`${flag} must be at least 1, got ${v}`);
      }
      setThreads(f.threads ?? (process.env.MYNAH_THREADS ? int(process.env.MYNAH_THREADS) : 0));
      let feedback = f.feedback!;
      if (f.db !== undefined) {
        feedback = join(f.out, "feedback");
        const e = exportFeedback({ db: f.db, out: feedback });
        process.stdout.write(`exported ${e.conversations} conversations and ${e.preferences} preference pairs from ${f.db} → ${feedback}\n`);
      }
      await runInterruptible("improve", async (signal) => {
        await improve({
          feedback, from: f.from, tokenizer: f.tokenizer, out: f.out, minConversations: f.minConversations, minPairs: f.minPairs, valFraction: f.valFraction,
          sftSteps: f.sftSteps, sftLr: f.sftLr, dpoSteps: f.dpoSteps, dpoLr: f.dpoLr, batchSize: f.batchSize, seqLen: f.seqLen ?? 0,
          loss: f.loss as DpoLossKind, beta: f.beta, rpoAlpha: f.rpoAlpha, seed: f.seed, sampler: engineSampler, greedy: engineGreedy,
          write: (s) => process.stdout.write(s), tty: Boolean(process.stdout.isTTY), logEvery: f.logEvery, signal,
        });
      });
    });
}

/**
 * `mynah speedrun`: builds a small bilingual chat model from nothing (generated corpus →
 * tokenizer → pretraining → fine-tuning → evaluation → report card), then opens the chat.
 */
import type { Command } from "commander";
import { runSpeedrun, planFor, STAGES, type StageName } from "../speedrun/pipeline.ts";
import { loadChatModel } from "../infer/load.ts";
import { ChatSession } from "../infer/session.ts";
import { DEFAULT_SCREEN_CONFIG } from "../screen/index.ts";
import { runChatRepl } from "./chat-repl.ts";
import { setThreads } from "../core/native.ts";
import { join } from "node:path";
import { writeReport } from "../eval/report.ts";

export function registerSpeedrun(program: Command): void {
  program
    .command("speedrun")
    .description("Build a small bilingual chat model from nothing on this machine, evaluate it, and chat with it")
    .option("--run-dir <dir>", "folder for every stage's output", "runs/speedrun")
    .option("--minutes <n>", "time budget in minutes (sets corpus, model and training time)", "15")
    .option("--seed <n>", "seed of the corpus and of training", "1")
    .option("--stage <names...>", `run only these stages (${STAGES.join(", ")}), reusing the others' output in the run folder`)
    .option("--no-chat", "do not open the chat at the end")
    .option("--threads <n>", "compute threads (0 = all CPUs)", "0")
    .action(async (o: { runDir: string; minutes: string; seed: string; stage?: string[]; chat: boolean; threads: string }) => {
      const minutes = Number(o.minutes), seed = Number(o.seed);
      if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${JSON.stringify(o.minutes)}`);
      if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${JSON.stringify(o.seed)}`);
      for (const s of o.stage ?? []) if (!STAGES.includes(s as StageName)) throw new Error(`unknown stage ${s}; stages: ${STAGES.join(", ")}`);
      try {
        setThreads(Number(o.threads));
      } catch {
        // No native build: the reference backend runs (slowly) instead.
      }
      const t0 = performance.now();
      const log = (line: string): void => {
        const t = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
        process.stderr.write(line.startsWith("\n") ? `\n[${t}s] ${line.slice(1)}\n` : `[${t}s] ${line}\n`);
      };
      const plan = planFor(minutes, seed);
      log(`mynah speedrun: ${minutes} minute budget, run folder ${o.runDir}`);
      const r = await runSpeedrun({
        runDir: o.runDir, plan, only: o.stage as StageName[] | undefined, log,
        writeRunReport: async (dir) => {
          await writeReport({ runs: [dir], out: join(dir, "run-report.html"), title: "mynah speedrun" });
          return "run-report.html";
        },
      });
      if (r.report) process.stdout.write("\n" + r.report);
      const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
      if (!o.chat || !tty) {
        process.stderr.write(`\nChat with it:  npx mynah chat --model ${r.modelDir}\n`);
        return;
      }
      process.stdout.write(`\nYour model is ready (${r.modelDir}). Ask it things like "What is 27 + 58?", "3 千米等于多少米？", "What is the capital of Peru?".\n`);
      const { model, tokenizer } = loadChatModel(r.modelDir);
      const session = new ChatSession(model, tokenizer, { gen: { temperature: 0, maxNewTokens: 64 } });
      await runChatRepl({ session, screen: DEFAULT_SCREEN_CONFIG, screenLog: join(r.modelDir, "screen-log.jsonl"), input: process.stdin, output: process.stdout, tty: true });
    });
}

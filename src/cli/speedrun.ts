/**
 * `mynah speedrun`: builds a small bilingual chat model from nothing (generated corpus →
 * tokenizer → pretraining → fine-tuning → evaluation → report card), then opens the chat.
 */
import { Option, type Command } from "commander";
import { runSpeedrun, planFor, STAGES, type StageName } from "../speedrun/pipeline.ts";
import { loadChatModel } from "../infer/load.ts";
import { ChatSession } from "../infer/session.ts";
import { DEFAULT_SCREEN_CONFIG } from "../screen/index.ts";
import { runChatRepl } from "./chat-repl.ts";
import { runInterruptible } from "./run-training.ts";
import { intOption, numOption, threadsOption } from "./options.ts";
import { setThreads } from "../core/native.ts";
import { join } from "node:path";
import { writeReport } from "../eval/report.ts";

export function registerSpeedrun(program: Command): void {
  program
    .command("speedrun")
    .description("Build a small bilingual chat model from nothing on this machine, evaluate it, and chat with it")
    .option("--run-dir <dir>", "folder for every stage's output", "runs/speedrun")
    .addOption(numOption("--minutes <x>", "time budget in minutes (sets corpus, model and training time)", { min: 0, minExclusive: true, max: 10080 }, 15))
    .addOption(intOption("--seed <n>", "seed of the corpus and of training", { min: 0, max: 2 ** 31 - 1 }, 1))
    .addOption(new Option("--stage <names...>", "run only these stages, reusing the others' output in the run folder").choices(STAGES))
    .option("--no-chat", "do not open the chat at the end")
    .addOption(threadsOption())
    .action(async (o: { runDir: string; minutes: number; seed: number; stage?: StageName[]; chat: boolean; threads: number }) => {
      const { minutes, seed } = o;
      setThreads(o.threads); // throws, saying how to build them, when the native kernels are missing
      const t0 = performance.now();
      const log = (line: string): void => {
        const t = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
        process.stderr.write(line.startsWith("\n") ? `\n[${t}s] ${line.slice(1)}\n` : `[${t}s] ${line}\n`);
      };
      const plan = planFor(minutes, seed);
      log(`mynah speedrun: ${minutes} minute budget, run folder ${o.runDir}`);
      // Ctrl-C (or SIGTERM): the training stage in progress saves a checkpoint and the run stops,
      // as in `mynah train`; `--stage` resumes it.
      let r: Awaited<ReturnType<typeof runSpeedrun>> | undefined;
      await runInterruptible("speedrun", async (signal) => {
        r = await runSpeedrun({
          runDir: o.runDir, plan, only: o.stage, log, signal,
          writeRunReport: async (dir) => {
            await writeReport({ runs: [dir], out: join(dir, "run-report.html"), title: "mynah speedrun" });
            return "run-report.html";
          },
        });
      });
      if (!r) return;
      if (r.interrupted) {
        process.exitCode = 130;
        return;
      }
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

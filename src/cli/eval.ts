/**
 * `mynah eval --model DIR [--model DIR2 ...] --task KIND:PATH... [--out results.json]`:
 * scores models on task files, side by side.
 */
import type { Command } from "commander";
import { setThreads } from "../core/native.ts";
import { DEFAULT_SCREEN_CONFIG, loadScreenConfig } from "../screen/index.ts";
import { parseExtractor } from "../eval/extract.ts";
import { parseTaskSpec, TASK_KINDS } from "../eval/tasks.ts";
import { resultsTable, runEval } from "../eval/run.ts";
import type { EvalSettings } from "../eval/tasks-run.ts";
import { choiceOption, intOption, numberOption, SAMPLING_RULES, threadsOption } from "./options.ts";

interface EvalFlags {
  model: string[]; task: string[]; out?: string; limit?: number; batch: number; chat: string; samples: number; temperature?: number;
  topK: number; topP: number; maxNewTokens: number; seed: number; extract: string; screen?: string; perSkill: number; threads: number;
}

/** Flags (each already checked by its parser, cli/options.ts) → settings. */
export function evalSettings(o: EvalFlags): EvalSettings {
  // Several samples of greedy decoding would all be the same: sampling then defaults to 0.8.
  const temperature = o.temperature ?? (o.samples > 1 ? 0.8 : 0);
  if (o.samples > 1 && temperature === 0) throw new Error("--samples > 1 needs --temperature > 0 (greedy decoding gives the same reply every time)");
  return {
    batch: o.batch,
    limit: o.limit ?? Infinity,
    chat: o.chat as EvalSettings["chat"],
    samples: o.samples, temperature,
    topK: o.topK,
    topP: o.topP,
    maxNewTokens: o.maxNewTokens,
    seed: o.seed,
    extract: parseExtractor(o.extract),
    extractSpec: o.extract,
    screen: o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG,
    screenSpec: o.screen ?? "default",
    perSkill: o.perSkill,
  };
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("Score models on task files (bits per byte, chat loss, multiple choice, exact match, skills, screening), side by side")
    .requiredOption("--model <dirs...>", "model folders (or run folders: their latest checkpoint); several are compared")
    .requiredOption("--task <specs...>", `tasks as KIND:PATH (kinds: ${TASK_KINDS.join(", ")}; bpb/chat-loss/screen take PATH,PATH… or folders/globs; skills takes no file)`)
    .option("--out <file>", "write the results here as JSON (atomically)")
    .addOption(intOption("--limit <n>", "at most n questions / documents / prompts per task (quick runs)", { min: 1 }))
    .addOption(intOption("--batch <n>", "sequences per forward pass (scoring) or prompts decoded together (generation)", { min: 1 }, 16))
    .addOption(choiceOption("--chat <mode>", "ask questions as chat turns: auto (when the model has the chat template), on, off", ["auto", "on", "off"], "auto"))
    .addOption(intOption("--samples <n>", "exact: replies sampled per question (pass@k); 1 = greedy", { min: 1 }, 1))
    .addOption(numberOption("--temperature <x>", "sampling temperature for exact/screen (default 0 = greedy; 0.8 with --samples > 1)", SAMPLING_RULES.temperature))
    .addOption(numberOption("--top-k <n>", "sample among the k most likely tokens (0 = all)", SAMPLING_RULES["top-k"], 0))
    .addOption(numberOption("--top-p <x>", "nucleus sampling threshold", SAMPLING_RULES["top-p"], 1))
    .addOption(numberOption("--max-new-tokens <n>", "longest reply for exact, screen and skills", SAMPLING_RULES["max-new-tokens"], 256))
    .addOption(numberOption("--seed <n>", "seed of sampling and of the skills' fresh questions", SAMPLING_RULES.seed, 1234))
    .option("--extract <how>", "exact: answer extraction: auto (#### X, 'answer is X', else the last number), last-number, or a regex whose first group is the answer", "auto")
    .option("--screen <file>", "screen: screening rules, JSON or YAML (default: built-in rules)")
    .addOption(intOption("--per-skill <n>", "skills: fresh questions per skill", { min: 1 }, 50))
    .addOption(threadsOption())
    .action(async (o: EvalFlags) => {
      const settings = evalSettings(o);
      const tasks = o.task.map(parseTaskSpec);
      try {
        setThreads(o.threads);
      } catch {
        // No native build: the reference backend runs on this thread.
      }
      const tty = Boolean(process.stderr.isTTY);
      let live = false;
      const endLive = (): void => { if (live) process.stderr.write("\n"); live = false; };
      const res = await runEval({
        models: o.model, tasks, settings, out: o.out,
        command: ["mynah", ...process.argv.slice(2)].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" "),
        progress: (text) => {
          if (tty) { process.stderr.write(`\r\x1b[2K${text}`); live = true; }
        },
        log: (line) => { endLive(); process.stderr.write(line + "\n"); },
      });
      endLive();
      process.stdout.write("\n" + resultsTable(res));
      if (o.out) process.stderr.write(`results: ${o.out}\n`);
    });
}

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

interface EvalFlags {
  model: string[]; task: string[]; out?: string; limit?: string; batch: string; chat: string; samples: string; temperature?: string;
  topK: string; topP: string; maxNewTokens: string; seed: string; extract: string; screen?: string; perSkill: string; threads: string;
}

const int = (v: string, flag: string, min: number): number => {
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) throw new Error(`--${flag} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return x;
};
const real = (v: string, flag: string, ok: (x: number) => boolean, want: string): number => {
  const x = Number(v);
  if (!Number.isFinite(x) || !ok(x)) throw new Error(`--${flag} must be ${want}, got ${JSON.stringify(v)}`);
  return x;
};

/** Flags → settings, every value checked before anything runs. */
export function evalSettings(o: EvalFlags): EvalSettings {
  if (!["auto", "on", "off"].includes(o.chat)) throw new Error(`--chat must be auto, on or off, got ${JSON.stringify(o.chat)}`);
  const samples = int(o.samples, "samples", 1);
  // Several samples of greedy decoding would all be the same: sampling then defaults to 0.8.
  const temperature = o.temperature !== undefined ? real(o.temperature, "temperature", (x) => x >= 0, "a number ≥ 0") : samples > 1 ? 0.8 : 0;
  if (samples > 1 && temperature === 0) throw new Error("--samples > 1 needs --temperature > 0 (greedy decoding gives the same reply every time)");
  return {
    batch: int(o.batch, "batch", 1),
    limit: o.limit !== undefined ? int(o.limit, "limit", 1) : Infinity,
    chat: o.chat as EvalSettings["chat"],
    samples, temperature,
    topK: int(o.topK, "top-k", 0),
    topP: real(o.topP, "top-p", (x) => x > 0 && x <= 1, "in (0, 1]"),
    maxNewTokens: int(o.maxNewTokens, "max-new-tokens", 1),
    seed: int(o.seed, "seed", 0),
    extract: parseExtractor(o.extract),
    extractSpec: o.extract,
    screen: o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG,
    screenSpec: o.screen ?? "default",
    perSkill: int(o.perSkill, "per-skill", 1),
  };
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("Score models on task files (bits per byte, chat loss, multiple choice, exact match, skills, screening), side by side")
    .requiredOption("--model <dirs...>", "model folders (or run folders: their latest checkpoint); several are compared")
    .requiredOption("--task <specs...>", `tasks as KIND:PATH (kinds: ${TASK_KINDS.join(", ")}; bpb/chat-loss/screen take PATH,PATH… or folders/globs; skills takes no file)`)
    .option("--out <file>", "write the results here as JSON (atomically)")
    .option("--limit <n>", "at most n questions / documents / prompts per task (quick runs)")
    .option("--batch <n>", "sequences per forward pass (scoring) or prompts decoded together (generation)", "16")
    .option("--chat <mode>", "ask questions as chat turns: auto (when the model has the chat template), on, off", "auto")
    .option("--samples <k>", "exact: replies sampled per question (pass@k); 1 = greedy", "1")
    .option("--temperature <t>", "sampling temperature for exact/screen (default 0 = greedy; 0.8 with --samples > 1)")
    .option("--top-k <k>", "sample among the k most likely tokens (0 = all)", "0")
    .option("--top-p <p>", "nucleus sampling threshold", "1")
    .option("--max-new-tokens <n>", "longest reply for exact, screen and skills", "256")
    .option("--seed <n>", "seed of sampling and of the skills' fresh questions", "1234")
    .option("--extract <how>", "exact: answer extraction: auto (#### X, 'answer is X', else the last number), last-number, or a regex whose first group is the answer", "auto")
    .option("--screen <file>", "screen: screening rules, JSON or YAML (default: built-in rules)")
    .option("--per-skill <n>", "skills: fresh questions per skill", "50")
    .option("--threads <n>", "compute threads (0 = all CPUs)", "0")
    .action(async (o: EvalFlags) => {
      const settings = evalSettings(o);
      const tasks = o.task.map(parseTaskSpec);
      const threads = int(o.threads, "threads", 0);
      try {
        setThreads(threads);
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

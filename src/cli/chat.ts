/**
 * `mynah chat --model DIR`: interactive multi-turn chat, replies streamed and screened.
 * `mynah generate --model DIR --prompt TEXT`: one-shot completion, raw text or one chat turn.
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadChatModel } from "../infer/load.ts";
import { parseWeightDtype } from "../infer/weight-dtype.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { ChatSession } from "../infer/session.ts";
import { DEFAULT_GENERATE, generate, type GenerateOptions } from "../infer/generate.ts";
import { renderChat } from "../data/chat-template.ts";
import { DEFAULT_SCREEN_CONFIG, loadScreenConfig, logScreen } from "../screen/index.ts";
import { screenedStream } from "../screen/stream.ts";
import { runChatRepl, describeScreening } from "./chat-repl.ts";

/** --model accepts a model or checkpoint folder, or a run folder (its latest checkpoint). */
function modelFolder(dir: string): string {
  if (!existsSync(join(dir, "config.json")) && existsSync(dir)) return latestCheckpoint(dir) ?? dir;
  return dir;
}

interface SamplingFlags {
  temperature: string; topK: string; topP: string; repetitionPenalty: string; maxNewTokens: string; seed?: string;
}

function samplingOptions(o: SamplingFlags): Partial<GenerateOptions> {
  const num = (v: string, name: string, int = false): number => {
    const x = Number(v);
    if (!Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`--${name} must be ${int ? "an integer" : "a number"}, got ${JSON.stringify(v)}`);
    return x;
  };
  return {
    temperature: num(o.temperature, "temperature"),
    topK: num(o.topK, "top-k", true),
    topP: num(o.topP, "top-p"),
    repetitionPenalty: num(o.repetitionPenalty, "repetition-penalty"),
    maxNewTokens: num(o.maxNewTokens, "max-new-tokens", true),
    ...(o.seed !== undefined ? { seed: num(o.seed, "seed", true) } : {}),
  };
}

function addSamplingFlags(cmd: Command, temperature: string): Command {
  return cmd
    .option("--temperature <t>", "sampling temperature (0 = greedy)", temperature)
    .option("--top-k <k>", "sample among the k most likely tokens (0 = all)", "40")
    .option("--top-p <p>", "nucleus sampling: smallest set of tokens reaching probability p", "0.95")
    .option("--repetition-penalty <r>", "penalty on tokens already in the context (1 = off)", "1.0")
    .option("--max-new-tokens <n>", "longest reply in tokens", "200")
    .option("--seed <n>", "random seed (default: from the clock)")
    .option("--screen <file>", "screening rules, JSON or YAML (default: built-in rules)")
    .option("--screen-log <file>", "append screening results here as JSON lines (default: DIR/screen-log.jsonl)")
    .option("--threads <n>", "compute threads (0 = all CPUs)", "0")
    .option("--dtype <dtype>", "weight storage for inference: f32, f16 or q8_0 (default: the model folder's mynah.dtype, else f32)");
}

export function registerChat(program: Command): void {
  addSamplingFlags(
    program
      .command("chat")
      .description("Chat with a model: streamed, screened replies; /help lists the commands (works with piped stdin too)")
      .requiredOption("--model <dir>", "model folder: a checkpoint with its tokenizer (e.g. runs/speedrun/sft), or a run folder (its latest checkpoint)")
      .option("--system <text>", "system prompt")
      .option("--context <n>", "context window in tokens (default: the model's)"),
    "0.7",
  ).action(async (o: SamplingFlags & { model: string; system?: string; context?: string; screen?: string; screenLog?: string; threads: string; dtype?: string }) => {
    o.model = modelFolder(o.model);
    const dtype = o.dtype === undefined ? undefined : parseWeightDtype(o.dtype);
    const { model, tokenizer } = loadChatModel(o.model, { threads: Number(o.threads), dtype });
    const session = new ChatSession(model, tokenizer, {
      system: o.system,
      gen: samplingOptions(o),
      contextTokens: o.context ? Number(o.context) : undefined,
    });
    await runChatRepl({
      session,
      screen: o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG,
      screenLog: o.screenLog ?? join(o.model, "screen-log.jsonl"),
      input: process.stdin,
      output: process.stdout,
      tty: Boolean(process.stdin.isTTY && process.stdout.isTTY),
    });
  });

  addSamplingFlags(
    program
      .command("generate")
      .description("One-shot generation: continue a raw prompt, or answer it as one chat turn with --chat")
      .requiredOption("--model <dir>", "model folder")
      .requiredOption("--prompt <text>", "the prompt")
      .option("--chat", "render the prompt as a user message with the chat template")
      .option("--system <text>", "system prompt (with --chat)")
      .option("--stop <text...>", "stop strings"),
    "0",
  ).action((o: SamplingFlags & { model: string; prompt: string; chat?: boolean; system?: string; stop?: string[]; screen?: string; screenLog?: string; threads: string; dtype?: string }) => {
    o.model = modelFolder(o.model);
    const dtype = o.dtype === undefined ? undefined : parseWeightDtype(o.dtype);
    const { model, tokenizer } = loadChatModel(o.model, { threads: Number(o.threads), dtype });
    const ids = o.chat
      ? renderChat(tokenizer, [...(o.system ? [{ role: "system" as const, content: o.system }] : []), { role: "user", content: o.prompt }], { addGenerationPrompt: true }).ids
      : tokenizer.encode(o.prompt);
    const screen = o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG;
    const stream = screenedStream(screen, (t) => process.stdout.write(t));
    const gen = generate(model, tokenizer, ids, {
      ...DEFAULT_GENERATE, seed: Date.now() % 2 ** 31, ...samplingOptions(o),
      stopStrings: o.stop ?? [],
      onText: (t) => stream.push(t),
      shouldStop: () => stream.stopEarly,
    });
    const { result, diverged } = stream.end({ tokenLogprobs: gen.logprobs });
    if (diverged) process.stdout.write(`\n[screening replaced the text above]\n${result.text}`);
    process.stdout.write("\n");
    process.stderr.write(`[${gen.ids.length} tokens, finish: ${gen.finish}; ${describeScreening(result)}]\n`);
    logScreen(o.screenLog ?? join(o.model, "screen-log.jsonl"), result, { prompt: o.prompt, finish: gen.finish });
  });
}

/**
 * `mynah chat --model DIR`: interactive multi-turn chat, replies streamed and screened.
 * `mynah generate --model DIR --prompt TEXT`: one-shot completion, raw text or one chat turn.
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadChatModel } from "../infer/load.ts";
import { WEIGHT_DTYPES, type WeightDtype } from "../infer/weight-dtype.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { ChatSession } from "../infer/session.ts";
import { DEFAULT_GENERATE, generate, type GenerateOptions } from "../infer/generate.ts";
import { renderChat } from "../data/chat-template.ts";
import { DEFAULT_SCREEN_CONFIG, loadScreenConfig, logScreen } from "../screen/index.ts";
import { screenedStream } from "../screen/stream.ts";
import { runChatRepl, describeScreening } from "./chat-repl.ts";
import { choiceOption, intOption, numberOption, SAMPLING_RULES, threadsOption } from "./options.ts";

/** --model accepts a model or checkpoint folder, or a run folder (its latest checkpoint). */
function modelFolder(dir: string): string {
  if (!existsSync(join(dir, "config.json")) && existsSync(dir)) return latestCheckpoint(dir) ?? dir;
  return dir;
}

interface SamplingFlags {
  temperature: number; topK: number; topP: number; repetitionPenalty: number; maxNewTokens: number; seed?: number; threads: number;
}

/** The sampling settings of the flags (each already checked by its parser, src/cli/options.ts). */
function samplingOptions(o: SamplingFlags): Partial<GenerateOptions> {
  return {
    temperature: o.temperature, topK: o.topK, topP: o.topP, repetitionPenalty: o.repetitionPenalty, maxNewTokens: o.maxNewTokens,
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
  };
}

function addSamplingFlags(cmd: Command, temperature: number): Command {
  return cmd
    .addOption(numberOption("--temperature <x>", "sampling temperature (0 = greedy)", SAMPLING_RULES.temperature, temperature))
    .addOption(numberOption("--top-k <n>", "sample among the k most likely tokens (0 = all)", SAMPLING_RULES["top-k"], 40))
    .addOption(numberOption("--top-p <x>", "nucleus sampling: smallest set of tokens reaching probability p", SAMPLING_RULES["top-p"], 0.95))
    .addOption(numberOption("--repetition-penalty <x>", "penalty on tokens already in the context (1 = off)", SAMPLING_RULES["repetition-penalty"], 1))
    .addOption(numberOption("--max-new-tokens <n>", "longest reply in tokens", SAMPLING_RULES["max-new-tokens"], 200))
    .addOption(numberOption("--seed <n>", "random seed (default: from the clock)", SAMPLING_RULES.seed))
    .option("--screen <file>", "screening rules, JSON or YAML, merged over the built-in rules")
    .option("--screen-log <file>", "append screening results here as JSON lines (default: DIR/screen-log.jsonl)")
    .addOption(threadsOption())
    .addOption(choiceOption("--dtype <dtype>", "weight storage for inference (default: the model folder's mynah.dtype, else f32)", WEIGHT_DTYPES))
}

export function registerChat(program: Command): void {
  addSamplingFlags(
    program
      .command("chat")
      .description("Chat with a model: streamed, screened replies; /help lists the commands (works with piped stdin too)")
      .requiredOption("--model <dir>", "model folder: a checkpoint with its tokenizer (e.g. runs/speedrun/sft), or a run folder (its latest checkpoint)")
      .option("--system <text>", "system prompt")
      .addOption(intOption("--context <n>", "context window in tokens (default: the model's)", { min: 2 })),
    0.7,
  ).action(async (o: SamplingFlags & { model: string; system?: string; context?: number; screen?: string; screenLog?: string; dtype?: string }) => {
    o.model = modelFolder(o.model);
    const screen = o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG;
    const { model, tokenizer } = loadChatModel(o.model, { threads: o.threads, dtype: o.dtype as WeightDtype | undefined });
    if (o.context !== undefined && o.context > model.config.seqLen)
      throw new Error(`--context ${o.context} is longer than the model's context window (${model.config.seqLen} tokens)`);
    const session = new ChatSession(model, tokenizer, {
      system: o.system,
      gen: samplingOptions(o),
      contextTokens: o.context,
    });
    await runChatRepl({
      session,
      screen,
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
    0,
  ).action((o: SamplingFlags & { model: string; prompt: string; chat?: boolean; system?: string; stop?: string[]; screen?: string; screenLog?: string; dtype?: string }) => {
    o.model = modelFolder(o.model);
    const screen = o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG;
    const { model, tokenizer } = loadChatModel(o.model, { threads: o.threads, dtype: o.dtype as WeightDtype | undefined });
    if (o.chat && !tokenizer.special.has("<|im_start|>"))
      throw new Error(`--chat: ${o.model} has no chat turns (its tokenizer has no <|im_start|> token, e.g. a character-level model); leave out --chat to continue the prompt as text`);
    const ids = o.chat
      ? renderChat(tokenizer, [...(o.system ? [{ role: "system" as const, content: o.system }] : []), { role: "user", content: o.prompt }], { addGenerationPrompt: true }).ids
      : tokenizer.encode(o.prompt);
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

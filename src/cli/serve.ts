/**
 * `mynah serve --model DIR`: the OpenAI-compatible API and the web chat UI on one port, with
 * conversations and feedback stored in SQLite. Parses and checks flags, calls startServer().
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_SCREEN_CONFIG, loadScreenConfig } from "../screen/index.ts";
import { defaultDb, startServer } from "../serve/http.ts";
import { STREAM_INTERVAL_MS } from "../serve/app.ts";
import { latestCheckpoint } from "../train/checkpoint.ts";
import { choiceOption, intOption } from "./options.ts";
import { WEIGHT_DTYPES, type WeightDtype } from "../infer/weight-dtype.ts";

interface Flags {
  model: string; host: string; port: number; apiKey?: string; db?: string; parallel: number; queue: number;
  screen?: string; threads: number; dtype?: WeightDtype; cors?: string; context?: number; runs?: string[]; streamInterval: number;
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description("Serve a model: OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models), web chat UI at /, /health, /metrics")
    .requiredOption("--model <dir>", "model folder (a checkpoint with its tokenizer), or a run folder (its latest checkpoint)")
    .option("--host <addr>", "address to listen on (a non-loopback address needs --api-key)", "127.0.0.1")
    .addOption(intOption("--port <n>", "port (0 = any free port)", { min: 0, max: 65535 }, 8080))
    .option("--api-key <key>", "require 'Authorization: Bearer KEY' on the API and UI data (default: $MYNAH_API_KEY)")
    .option("--db <file>", "SQLite file for conversations and feedback (default: mynah.db next to the model; :memory: keeps nothing)")
    .addOption(intOption("--parallel <n>", "generations decoded together (KV cache slots)", { min: 1, max: 256 }, 4))
    .addOption(intOption("--queue <n>", "requests that may wait for a slot before the server answers 429", { min: 0, max: 100000 }, 64))
    .option("--screen <file>", "screening rules, JSON or YAML (default: built-in rules)")
    .addOption(intOption("--threads <n>", "compute threads of the generation worker (0 = sized per step: every CPU when the step's matrices are big enough to pay for a second thread, else 1)",
      { min: 0, max: 4096 }, 0).env("MYNAH_THREADS"))
    .addOption(choiceOption("--dtype <dtype>", "weight storage for decoding (default: the model folder's mynah.dtype, else f32)", WEIGHT_DTYPES))
    .option("--cors <origin>", "allow browser requests from this origin (e.g. http://localhost:3000, or *)")
    .addOption(intOption("--context <n>", "context window in tokens (default: the model's)", { min: 2 }))
    .addOption(intOption("--stream-interval <ms>", "least time between two writes of one streamed reply: a faster stream sends a few tokens per write (0 = every token as it comes)",
      { min: 0, max: 1000 }, STREAM_INTERVAL_MS))
    .option("--runs <dirs...>", "more run folders (train/sft/dpo --out, speedrun --run-dir) or eval results files whose reports to serve at /reports, besides the model's own run")
    .action(async (o: Flags) => {
      let model = o.model;
      if (!existsSync(model)) throw new Error(`--model ${o.model}: no such folder`);
      if (!existsSync(join(model, "config.json"))) model = latestCheckpoint(model) ?? model;
      for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
        if (!existsSync(join(model, f))) throw new Error(`--model ${o.model}: ${f} is missing in ${model} (give a model or checkpoint folder with its tokenizer)`);
      }
      const { port, parallel, queue, threads, context: contextTokens } = o;
      const apiKey = o.apiKey ?? process.env.MYNAH_API_KEY ?? undefined;
      if (apiKey !== undefined && apiKey.length < 8) throw new Error("--api-key must be at least 8 characters");
      const screen = o.screen ? loadScreenConfig(o.screen) : DEFAULT_SCREEN_CONFIG;
      const db = o.db ?? defaultDb(model);
      const server = await startServer({ model, host: o.host, port, apiKey, db, parallel, queue, screen, threads, dtype: o.dtype, cors: o.cors, contextTokens, runs: o.runs, streamIntervalMs: o.streamInterval });
      process.stderr.write(`mynah serve: loading ${model} (${parallel} slots, queue ${queue}, database ${db})\n`);
      const stop = (): void => { void server.close().then(() => process.exit(0)); };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      try {
        await server.loaded;
      } catch (err) {
        await server.close();
        throw new Error(`--model ${o.model}: ${(err as Error).message}`);
      }
      process.stderr.write(`mynah serve: ready (backend ${server.engine.backend}, context ${server.engine.maxT} tokens)\n`);
      process.stdout.write(`Open the chat UI at ${server.url}/  ·  OpenAI API at ${server.url}/v1${apiKey ? "  (API key required)" : ""}\n`);
      if (server.reports.runs.length) process.stdout.write(`Run reports (${server.reports.runs.map((r) => r.name).join(", ")}) at ${server.url}/reports\n`);
    });
}

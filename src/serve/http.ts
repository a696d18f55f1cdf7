/**
 * The thin node:http side: binds the app's `fetch` to a port (@hono/node-server) and starts
 * the generation worker. `startServer` is what `mynah serve`, the tests and the bench call.
 */
import type { WeightDtype } from "../infer/weight-dtype.ts";
import { serve, type ServerType } from "@hono/node-server";
import type { AddressInfo } from "node:net";
import { basename, dirname, join } from "node:path";
import { loadTokenizer } from "../tokenizer/index.ts";
import { DEFAULT_SCREEN_CONFIG, type ScreenConfig } from "../screen/index.ts";
import { createApp } from "./app.ts";
import { WorkerEngine } from "./engine.ts";
import { Metrics } from "./metrics.ts";
import { RunReports, runFolderOf } from "./reports.ts";
import { Store } from "./store.ts";

export interface ServeOptions {
  /** A model folder (config.json, model.safetensors, tokenizer.json). */
  model: string;
  host?: string;
  /** 0 = any free port. */
  port?: number;
  apiKey?: string;
  /** SQLite file; ":memory:" keeps nothing. Default: mynah.db beside the model folder. */
  db?: string;
  parallel?: number;
  queue?: number;
  screen?: ScreenConfig;
  threads?: number;
  /** Weight storage for decoding: f32, f16 or q8_0 (default: the model folder's mynah.dtype, else f32). */
  dtype?: WeightDtype;
  cors?: string;
  /** Context window (default: the model's). */
  contextTokens?: number;
  /** More run folders (or eval results files) whose reports are served at /reports, besides the model's own run folder. */
  runs?: string[];
  /** Least time between two writes of one streamed reply, ms (default STREAM_INTERVAL_MS in app.ts). */
  streamIntervalMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  engine: WorkerEngine;
  store: Store;
  reports: RunReports;
  /** Resolves once the model is loaded (the server answers 503 until then). */
  loaded: Promise<void>;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);
export const isLoopback = (host: string): boolean => LOOPBACK.has(host) || host.startsWith("127.");

/** Default database: mynah.db next to the model folder. */
export const defaultDb = (model: string): string => join(dirname(model.replace(/\/+$/, "")), "mynah.db");

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const host = o.host ?? "127.0.0.1";
  if (!isLoopback(host) && !o.apiKey) {
    throw new Error(`--host ${host} is not a loopback address: set --api-key (or MYNAH_API_KEY) before serving on the network`);
  }
  // The runs whose reports are served: the model's own run folder, then --runs (checked now).
  const own = runFolderOf(o.model);
  const reports = new RunReports([...(own ? [{ path: own, flag: "--model" }] : []), ...(o.runs ?? []).map((path) => ({ path, flag: "--runs" }))]);
  const tokenizer = loadTokenizer(o.model);
  const store = new Store(o.db ?? defaultDb(o.model));
  const engine = new WorkerEngine({ modelDir: o.model, parallel: o.parallel ?? 4, queue: o.queue ?? 64, threads: o.threads ?? 0, contextTokens: o.contextTokens, dtype: o.dtype });
  const metrics = new Metrics();
  const app = createApp({ engine, tokenizer, modelName: basename(o.model.replace(/\/+$/, "")), store, screen: o.screen ?? DEFAULT_SCREEN_CONFIG,
    apiKey: o.apiKey, cors: o.cors, metrics, reports, streamIntervalMs: o.streamIntervalMs });
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: o.port ?? 8080 }, () => resolve(s));
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    port, engine, store, reports, loaded: engine.loaded,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await engine.close();
      store.close();
    },
  };
}

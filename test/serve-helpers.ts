/**
 * Test helpers for the server: a small model folder made in-process (a BPE tokenizer trained
 * on a few sentences, random Llama weights) and a server started on 127.0.0.1 with a free port.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe, saveTokenizer } from "../src/tokenizer/index.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { validateConfig, type ModelConfig } from "../src/model/config.ts";
import { saveModelFolder } from "../src/model/weights.ts";
import { startServer, type RunningServer, type ServeOptions } from "../src/serve/http.ts";

const TEXT = [
  "The mynah is a bird that can talk. It lives in India and in China.",
  "Hello there! How are you today? I am fine, thank you.",
  "A model learns from data; the data comes from people who talk to it.",
  "你好，今天天气很好。我们去公园吧。",
];

/** Writes DIR/model (config.json, model.safetensors, tokenizer files); returns the folder. */
export function makeModelFolder(opts: { seqLen?: number; nLayer?: number; nEmbd?: number; seed?: number } = {}): string {
  const root = mkdtempSync(join(tmpdir(), "mynah-serve-"));
  const dir = join(root, "model");
  const tok = trainBpe(TEXT, { vocabSize: 300 });
  saveTokenizer(dir, tok);
  const config: ModelConfig = validateConfig({
    nLayer: opts.nLayer ?? 2, nHead: 4, nKvHead: 2, nEmbd: opts.nEmbd ?? 64, ffnHidden: 128, vocabSize: tok.vocabSize,
    contextLength: opts.seqLen ?? 128, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false,
  });
  const params = createParams(config);
  initParams(params, opts.seed ?? 7);
  saveModelFolder(dir, params);
  return dir;
}

export async function startTestServer(model: string, o: Partial<ServeOptions> = {}): Promise<RunningServer> {
  const s = await startServer({ model, host: "127.0.0.1", port: 0, db: ":memory:", parallel: 4, queue: 8, threads: 1, ...o });
  await s.loaded;
  return s;
}

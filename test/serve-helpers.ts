/**
 * Test helpers for the server: a small model folder made in-process (a BPE tokenizer trained
 * on a few sentences, random Llama weights) and a server started on 127.0.0.1 with a free port.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trainBpe, saveTokenizer } from "../src/tokenizer/index.ts";
import { createParams, headWeight, initParams } from "../src/model/params.ts";
import { writeFileSync } from "node:fs";
import { makeRng } from "../src/infer/rng.ts";
import { DEFAULT_SCREEN_CONFIG, loadScreenConfig } from "../src/screen/index.ts";
import { defaultFfnHidden, validateConfig, type ModelConfig } from "../src/model/config.ts";
import { saveModelFolder } from "../src/model/weights.ts";
import { startServer, type RunningServer, type ServeOptions } from "../src/serve/http.ts";

const TEXT = [
  "The mynah is a bird that can talk. It lives in India and in China.",
  "Hello there! How are you today? I am fine, thank you.",
  "A model learns from data; the data comes from people who talk to it.",
  "你好，今天天气很好。我们去公园吧。",
];

/** Writes DIR/model (config.json, model.safetensors, tokenizer files); returns the folder. */
export function makeModelFolder(opts: { seqLen?: number; nLayer?: number; nEmbd?: number; nHead?: number; nKvHead?: number; vocabSize?: number; seed?: number } = {}): string {
  const root = mkdtempSync(join(tmpdir(), "mynah-serve-"));
  const dir = join(root, "model");
  // A bigger vocabulary needs more distinct text: add pseudo-random words.
  const rng = makeRng(opts.seed ?? 7);
  const words = Array.from({ length: opts.vocabSize && opts.vocabSize > 300 ? 6000 : 0 }, () =>
    Array.from({ length: 2 + rng.int(7) }, () => "etaoinshrdlucmfwypvbgkjqxz"[Math.min(25, Math.floor(-Math.log(1 - rng.next()) * 5))]).join(""));
  const tok = trainBpe([...TEXT, words.join(" ")], { vocabSize: Math.max(300, opts.vocabSize ?? 300) });
  saveTokenizer(dir, tok);
  const config: ModelConfig = validateConfig({
    nLayer: opts.nLayer ?? 2, nHead: opts.nHead ?? 4, nKvHead: opts.nKvHead ?? 2, nEmbd: opts.nEmbd ?? 64, ffnHidden: defaultFfnHidden(opts.nEmbd ?? 64),
    vocabSize: Math.max(opts.vocabSize ?? 0, tok.vocabSize),
    contextLength: opts.seqLen ?? 128, ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false,
  });
  const params = createParams(config);
  initParams(params, opts.seed ?? 7);
  // Readable replies: the output rows of special tokens and of ids that are not printable
  // ASCII are zeroed, so greedy decoding (some logit is > 0) picks printable text and never
  // ends a reply early (the tests decide the length with max_tokens).
  const head = headWeight(params), C = config.nEmbd;
  const specials = new Set(tok.special.values());
  for (let id = 0; id < config.vocabSize; id++) {
    if (id >= tok.vocabSize || specials.has(id) || !/^[\x20-\x7e]+$/.test(tok.decode([id]))) head.fill(0, id * C, (id + 1) * C);
  }
  saveModelFolder(dir, params);
  // Screening without the loop detector: a random model's greedy text loops, and the tests
  // that hold slots busy need replies that run to max_tokens.
  writeFileSync(join(root, "screen.json"), JSON.stringify({ degeneration: { ...DEFAULT_SCREEN_CONFIG.degeneration, enabled: false } }));
  return dir;
}

/** The screening rules written beside a model made by makeModelFolder. */
export const screenFileOf = (model: string): string => join(model, "..", "screen.json");

export async function startTestServer(model: string, o: Partial<ServeOptions> = {}): Promise<RunningServer> {
  const s = await startServer({ model, screen: loadScreenConfig(screenFileOf(model)), host: "127.0.0.1", port: 0, db: ":memory:", parallel: 4, queue: 8, threads: 1, ...o });
  await s.loaded;
  return s;
}

/**
 * `npm run bench [names...]`: runs each benchmark (all by default), printing its table with
 * the peer side by side, and writes bench/results/<name>.json.
 * Each bench module exports `run(): Promise<unknown>` returning its JSON results.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const BENCHES: Record<string, string> = {
  gemm: "./gemm.ts",
  train: "./train.ts",
  tokenizer: "./tokenizer.ts",
  data: "./data.ts",
  decode: "./decode.ts",
  ops: "./ops.ts",
  eval: "./eval.ts",
  serve: "./serve.ts",
  hf: "./hf.ts",
  memory: "./memory.ts",
};

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const names = wanted.length ? wanted : Object.keys(BENCHES);
for (const name of names) {
  const path = BENCHES[name];
  if (!path) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(BENCHES).join(", ")}`);
  let mod: { run?: () => Promise<unknown> };
  try {
    mod = await import(path);
  } catch (err) {
    console.log(`\n## ${name}: not available (${(err as Error).message.split("\n")[0]})`);
    continue;
  }
  console.log(`\n## ${name}`);
  const result = await mod.run!();
  mkdirSync(join(here, "results"), { recursive: true });
  writeFileSync(join(here, "results", `${name}.json`), JSON.stringify(result, null, 2) + "\n");
}

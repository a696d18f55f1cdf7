/**
 * One implementation per concept: the RoPE tables are built in one place (core/tensor-utils.ts)
 * and used by both the training forward (model/gpt.ts) and the KV-cached decoder
 * (model/decode.ts), so the two cannot drift apart (a decoder rotating by other angles than
 * training did would answer from a subtly different model).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ropeTables } from "../src/core/tensor-utils.ts";
import { createCache, type DecodeModel } from "../src/model/decode.ts";

const srcDir = join(import.meta.dirname, "..", "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []);
}

test("ropeTables is defined once in src/ and imported by the model files", () => {
  const defs = sources(srcDir).filter((f) => /function\s+ropeTables\b/.test(readFileSync(f, "utf8")));
  assert.deepEqual(defs.map((f) => f.slice(srcDir.length + 1)), ["core/tensor-utils.ts"]);
  for (const f of ["model/gpt.ts", "model/decode.ts"]) {
    assert.match(readFileSync(join(srcDir, f), "utf8"), /import \{ ropeTables \} from "\.\.\/core\/tensor-utils\.ts"/, f);
  }
});

test("the decoder's cache tables are the training tables, bit for bit", () => {
  const config = { nLayer: 1, nHead: 4, nKvHead: 2, nEmbd: 64, ffnHidden: 96, vocabSize: 10, seqLen: 300, ropeTheta: 500000, normEps: 1e-5 };
  const cache = createCache({ config } as unknown as DecodeModel, 1);
  const { cos, sin } = ropeTables(300, 16, 500000);
  assert.deepEqual(cache.cos, cos);
  assert.deepEqual(cache.sin, sin);
});

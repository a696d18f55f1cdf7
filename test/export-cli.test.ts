/**
 * `mynah export --format gguf` and `mynah tokenizer train --pattern`, run in-process: flags are
 * checked before anything is written, the GGUF and Modelfile land where asked, the output names
 * the pre-tokenizer, and --check-text reports the measured mismatch for a pattern llama.cpp
 * does not have. (The file's behaviour in llama.cpp is test/gguf-llamacpp.test.ts.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerExport } from "../src/cli/export.ts";
import { registerTokenizer } from "../src/cli/tokenizer.ts";
import { parseGguf } from "../src/interop/gguf.ts";
import { loadTokenizer } from "../src/tokenizer/index.ts";
import { validateConfig } from "../src/model/config.ts";
import { createParams } from "../src/model/params.ts";
import { saveModelFolder } from "../src/model/weights.ts";
import { CL100K_PATTERN } from "../src/tokenizer/pattern.ts";
import { inProcessCli } from "./helpers/cli.ts";

/** Runs `mynah <args>` in-process; returns what it printed. */
const mynah = inProcessCli(registerExport, registerTokenizer);

test("export CLI: bad flags are refused by name; gguf + Modelfile written; --check-text measures the mismatch", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-export-cli-"));
  try {
    const text = "The model GPT模型 reads 中文 and English. 我们用PyTorch训练，然后导出。\n".repeat(200);
    writeFileSync(join(dir, "a.txt"), text);
    for (const pattern of ["mynah", "cl100k"]) {
      const tok = join(dir, `tok-${pattern}`);
      assert.match(await mynah("tokenizer", "train", "--vocab-size", "300", "--pattern", pattern, "--out", tok, join(dir, "a.txt")), /trained/);
      assert.equal(loadTokenizer(tok).spec.pattern === CL100K_PATTERN, pattern === "cl100k");
      // a model folder around the tokenizer (weights need not be trained for the file format)
      const model = join(dir, `model-${pattern}`);
      const config = validateConfig({ nLayer: 1, nHead: 2, nKvHead: 1, nEmbd: 32, ffnHidden: 64, vocabSize: 320, contextLength: 64,
        ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: true, qkNorm: false });
      mkdirSync(model);
      saveModelFolder(model, createParams(config));
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) writeFileSync(join(model, f), readFileSync(join(tok, f)));
      const out = join(dir, `${pattern}.gguf`);
      await assert.rejects(mynah("export", "--model", model, "--format", "gguf", "--dtype", "q4", "--out", out), /--dtype: "q4" is not one of f32, f16, q8_0/);
      await assert.rejects(mynah("export", "--model", model, "--format", "onnx", "--out", out), /option '--format <format>' argument 'onnx' is invalid/);
      await assert.rejects(mynah("export", "--model", model, "--format", "gguf", "--pre", "llama4", "--out", out), /--pre: "llama4"/);
      await assert.rejects(mynah("export", "--model", join(dir, "nope"), "--format", "gguf", "--out", out), /--model: .*nope is not a folder/);
      assert.ok(!existsSync(out), "nothing written for refused flags");
      const msg = await mynah("export", "--model", model, "--format", "gguf", "--dtype", "q8_0", "--out", out, "--check-text", join(dir, "a.txt"));
      const g = parseGguf(readFileSync(out), out);
      assert.equal(g.kv.get("tokenizer.ggml.pre"), "dbrx");
      assert.equal(g.kv.get("general.file_type"), 7);
      assert.equal(g.tensors.find((t) => t.name === "output.weight"), undefined, "tied: no output tensor");
      if (pattern === "cl100k") assert.match(msg, /splits text exactly as this tokenizer does/);
      else assert.match(msg, /on --check-text: \d+ of 200 lines \(\d+\.\d%\) tokenize differently in llama\.cpp/);
    }
    const mf = readFileSync(join(dir, "Modelfile"), "utf8");
    assert.match(mf, /^FROM \.\/mynah\.gguf$/m, "the first export's Modelfile");
    assert.match(readFileSync(join(dir, "cl100k.Modelfile"), "utf8"), /^FROM \.\/cl100k\.gguf$/m, "a second GGUF in the folder gets its own");
    await assert.rejects(mynah("tokenizer", "train", "--pattern", "llama4", "--out", join(dir, "t"), join(dir, "a.txt")), /option '--pattern <name>' argument 'llama4' is invalid/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

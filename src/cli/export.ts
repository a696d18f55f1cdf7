/**
 * `mynah export --model DIR --format gguf --dtype f32|f16|q8_0 --out FILE.gguf`: a model
 * folder as a GGUF file for llama.cpp / Ollama (src/interop/gguf.ts), with an Ollama
 * Modelfile beside it.
 */
import type { Command } from "commander";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { exportGguf, GGUF_DTYPES, LLAMA_CPP_PRE, preMismatch, type GgufDtype } from "../interop/gguf.ts";

const FORMATS = ["gguf"] as const;

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("Write a model folder in another format: gguf (llama.cpp, Ollama, LM Studio) with an Ollama Modelfile beside it")
    .requiredOption("--model <dir>", "model folder (config.json, model.safetensors, tokenizer.json)")
    .requiredOption("--format <format>", `output format: ${FORMATS.join(", ")}`)
    .requiredOption("--out <file>", "output file (FILE.gguf)")
    .option("--dtype <dtype>", `gguf weights: ${GGUF_DTYPES.join(", ")} (norms stay f32)`, "f16")
    .option("--name <name>", "general.name stored in the file (default: the model folder's name)")
    .option("--pre <name>", `llama.cpp pre-tokenizer (default: the one matching the tokenizer's pattern): ${LLAMA_CPP_PRE.map((p) => p.pre).join(", ")}`)
    .option("--check-text <files...>", "text files on which to measure how often llama.cpp's tokenization differs from mynah's (when the pattern has no exact llama.cpp match)")
    .action((o: { model: string; format: string; out: string; dtype: string; name?: string; pre?: string; checkText?: string[] }) => {
      if (!(FORMATS as readonly string[]).includes(o.format)) throw new Error(`--format: ${JSON.stringify(o.format)} is not one of ${FORMATS.join(", ")}`);
      if (!(GGUF_DTYPES as readonly string[]).includes(o.dtype)) throw new Error(`--dtype: ${JSON.stringify(o.dtype)} is not one of ${GGUF_DTYPES.join(", ")}`);
      if (!existsSync(o.model) || !statSync(o.model).isDirectory()) throw new Error(`--model: ${o.model} is not a folder`);
      if (o.pre !== undefined && !LLAMA_CPP_PRE.some((p) => p.pre === o.pre)) throw new Error(`--pre: ${JSON.stringify(o.pre)} is not one of ${LLAMA_CPP_PRE.map((p) => p.pre).join(", ")}`);
      if (!existsSync(dirname(o.out) || ".")) throw new Error(`--out: the folder ${dirname(o.out)} does not exist`);
      for (const f of o.checkText ?? []) if (!existsSync(f)) throw new Error(`--check-text: ${f} does not exist`);
      const t0 = Date.now();
      const r = exportGguf({ model: o.model, out: o.out, dtype: o.dtype as GgufDtype, name: o.name, pre: o.pre });
      const mib = (r.bytes / 2 ** 20).toFixed(1);
      const fallback = Object.entries(r.types).filter(([, t]) => (o.dtype === "q8_0" ? t !== 8 : false)).map(([n]) => n);
      console.log(`wrote ${r.file}: ${mib} MiB, GGUF v3, ${r.arch} architecture, ${r.tensors} tensors, ${o.dtype} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      if (fallback.length) console.log(`  ${fallback.length} matrices kept in f16 (rows not a multiple of 32): ${fallback.slice(0, 4).join(", ")}${fallback.length > 4 ? ", …" : ""}`);
      if (r.preExact) {
        console.log(`tokenizer: tokenizer.ggml.pre = ${r.pre}: llama.cpp splits text exactly as this tokenizer does`);
      } else {
        console.log(`tokenizer: tokenizer.ggml.pre = ${r.pre} (closest llama.cpp pre-tokenizer; this tokenizer's pattern has no exact match,`);
        console.log("  so llama.cpp may tokenize some text differently: for mynah's default pattern under dbrx, 0 of 8,375 EN/ZH lines");
        console.log("  differed in mynah's tests (docs/formats.md); pass --check-text FILE to measure it on your own text.");
        console.log("  Train with `mynah tokenizer train --pattern cl100k|llama3|qwen2|gpt2` for an exact match; see docs/formats.md)");
        if (o.checkText?.length) {
          const m = preMismatch(r.tokenizer, r.pre, o.checkText.map((f) => readFileSync(f, "utf8")));
          console.log(`  on --check-text: ${m.differ} of ${m.lines} lines (${((100 * m.differ) / Math.max(1, m.lines)).toFixed(1)}%) tokenize differently in llama.cpp; ` +
            `tokens ${m.tokens} (mynah) vs ${m.tokensLlama} (llama.cpp)`);
        }
      }
      console.log(`chat template: ${r.chatTemplate === undefined ? "none" : "tokenizer.chat_template set"}; Ollama Modelfile: ${r.modelfile}`);
      console.log(`run it: llama-cli -m ${r.file}   or   ollama create NAME -f ${r.modelfile} && ollama run NAME`);
    });
}

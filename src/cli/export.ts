/**
 * `mynah export --model DIR --format hf|gguf --out PATH`: a mynah model in another ecosystem's
 * format. `hf`: a Hugging Face folder (src/interop/hf-export.ts; `--dtype f32|bf16|f16`).
 * `gguf`: one GGUF file for llama.cpp / Ollama / LM Studio with an Ollama Modelfile beside it
 * (src/interop/gguf.ts; `--dtype f32|f16|q8_0`). Every flag is checked before anything is written.
 */
import type { Command } from "commander";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { EXPORT_DTYPES, exportHf, type ExportDtype } from "../interop/hf-export.ts";
import { exportGguf, GGUF_DTYPES, LLAMA_CPP_PRE, preMismatch, type GgufDtype } from "../interop/gguf.ts";
import { choiceOption } from "./options.ts";

const FORMATS = ["hf", "gguf"] as const;
/** Each format's weight types, and its default. */
const DTYPES = { hf: { all: EXPORT_DTYPES as readonly string[], default: "f32" }, gguf: { all: GGUF_DTYPES as readonly string[], default: "f16" } };

interface Flags {
  model: string; format: "hf" | "gguf"; out: string; dtype?: string; tokenizer?: string;
  name?: string; pre?: string; checkText?: string[];
}

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("Write a model in another format: hf (a Hugging Face folder), gguf (llama.cpp, Ollama, LM Studio; with an Ollama Modelfile)")
    .requiredOption("--model <dir>", "model folder, checkpoint folder, or run folder (its latest checkpoint)")
    .requiredOption("--out <path>", "hf: output folder (must not exist or be empty); gguf: output file (FILE.gguf)")
    .addOption(choiceOption("--format <format>", "output format", FORMATS, "hf"))
    .option("--dtype <dtype>", `weight type: hf ${EXPORT_DTYPES.join("|")} (default f32); gguf ${GGUF_DTYPES.join("|")} (default f16; norms stay f32)`)
    .option("--tokenizer <dir>", "hf: tokenizer folder, when the model folder has no tokenizer.json")
    .option("--name <name>", "gguf: general.name stored in the file (default: the model folder's name)")
    .option("--pre <name>", `gguf: llama.cpp pre-tokenizer (default: the one matching the tokenizer's pattern): ${LLAMA_CPP_PRE.map((p) => p.pre).join(", ")}`)
    .option("--check-text <files...>", "gguf: text files on which to measure how often llama.cpp's tokenization differs from mynah's (when the pattern has no exact llama.cpp match)")
    .action((o: Flags) => {
      const dtypes = DTYPES[o.format];
      const dtype = o.dtype ?? dtypes.default;
      if (!dtypes.all.includes(dtype)) throw new Error(`--dtype: ${JSON.stringify(dtype)} is not one of ${dtypes.all.join(", ")} (for --format ${o.format})`);
      const only = (flag: string, given: unknown, format: string): void => {
        if (given !== undefined && o.format !== format) throw new Error(`${flag} applies to --format ${format} only`);
      };
      only("--tokenizer", o.tokenizer, "hf");
      only("--name", o.name, "gguf");
      only("--pre", o.pre, "gguf");
      only("--check-text", o.checkText, "gguf");
      if (o.format === "hf") {
        const r = exportHf({ model: o.model, out: o.out, dtype: dtype as ExportDtype, tokenizer: o.tokenizer });
        console.log(`exported ${r.model} as ${r.architecture} (${r.dtype}, ${(r.bytes / 1e6).toFixed(1)} MB of weights) to ${r.out}: ${r.files.join(", ")}`);
        return;
      }
      exportGgufCommand({ ...o, dtype: dtype as GgufDtype });
    });
}

function exportGgufCommand(o: Flags & { dtype: GgufDtype }): void {
  if (!existsSync(o.model) || !statSync(o.model).isDirectory()) throw new Error(`--model: ${o.model} is not a folder`);
  if (o.pre !== undefined && !LLAMA_CPP_PRE.some((p) => p.pre === o.pre)) throw new Error(`--pre: ${JSON.stringify(o.pre)} is not one of ${LLAMA_CPP_PRE.map((p) => p.pre).join(", ")}`);
  if (!existsSync(dirname(o.out) || ".")) throw new Error(`--out: the folder ${dirname(o.out)} does not exist`);
  for (const f of o.checkText ?? []) if (!existsSync(f)) throw new Error(`--check-text: ${f} does not exist`);
  const t0 = Date.now();
  const r = exportGguf({ model: o.model, out: o.out, dtype: o.dtype, name: o.name, pre: o.pre });
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
}

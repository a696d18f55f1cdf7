/**
 * `mynah export --model DIR --format FORMAT --out DIR`: a mynah model in another ecosystem's
 * format. `hf`: a Hugging Face folder (src/interop/hf-export.ts). `gguf` (llama.cpp, Ollama)
 * is added beside it by src/interop/gguf.ts.
 */
import type { Command } from "commander";
import { EXPORT_DTYPES, exportHf, type ExportDtype } from "../interop/hf-export.ts";

const FORMATS = ["hf", "gguf"] as const;

interface Flags { model: string; format: string; out: string; dtype: string; tokenizer?: string }

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("Write a model (model folder, checkpoint, or run folder's latest) in another format: hf = Hugging Face folder")
    .requiredOption("--model <dir>", "model folder, checkpoint folder, or run folder (its latest checkpoint)")
    .requiredOption("--out <dir>", "output folder (must not exist or be empty)")
    .option("--format <format>", `output format: ${FORMATS.join(", ")}`, "hf")
    .option("--dtype <dtype>", `hf: weight type, ${EXPORT_DTYPES.join(", ")}`, "f32")
    .option("--tokenizer <dir>", "tokenizer folder, when the model folder has no tokenizer.json")
    .action((o: Flags) => {
      if (!(FORMATS as readonly string[]).includes(o.format)) throw new Error(`--format ${o.format}: expected one of ${FORMATS.join(", ")}`);
      if (!(EXPORT_DTYPES as readonly string[]).includes(o.dtype)) throw new Error(`--dtype ${o.dtype}: expected one of ${EXPORT_DTYPES.join(", ")}`);
      switch (o.format) {
        case "hf": {
          const r = exportHf({ model: o.model, out: o.out, dtype: o.dtype as ExportDtype, tokenizer: o.tokenizer });
          console.log(`exported ${r.model} as ${r.architecture} (${r.dtype}, ${(r.bytes / 1e6).toFixed(1)} MB of weights) to ${r.out}: ${r.files.join(", ")}`);
          break;
        }
        case "gguf":
          // src/interop/gguf.ts (branch i11-gguf) handles this format.
          throw new Error("--format gguf: not available in this build");
      }
    });
}

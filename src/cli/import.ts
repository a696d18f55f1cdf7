/**
 * `mynah import HF_DIR --out DIR`: a Hugging Face model folder (Llama, Qwen2, Qwen3; F32/F16/
 * BF16, sharded or not) copied into mynah's layout (src/interop/hf-import.ts). Chat and SFT
 * also read such folders directly with --model / --from.
 */
import type { Command } from "commander";
import { importHf } from "../interop/hf-import.ts";

export function registerImport(program: Command): void {
  program
    .command("import")
    .description("Copy a Hugging Face model folder (Llama, Qwen2, Qwen3 safetensors) into mynah's layout (float32, one file)")
    .argument("<hf-dir>", "Hugging Face model folder: config.json, model.safetensors or shards, tokenizer files")
    .requiredOption("--out <dir>", "output model folder (must not exist or be empty)")
    .action((from: string, o: { out: string }) => {
      const r = importHf({ from, out: o.out });
      const c = r.config;
      console.log(`imported ${from}: ${(r.parameters / 1e6).toFixed(1)}M parameters, ${c.nLayer} layers, width ${c.nEmbd}, ` +
        `${r.dtypes.join("+")} in ${r.files} file${r.files > 1 ? "s" : ""}; tokenizer ${r.tokenizerVocab ?? "none"}` +
        `${r.chatTemplate ? " with its chat template" : ""} → ${r.out}`);
    });
}

/**
 * `mynah export --model DIR --format hf --out DIR`: a mynah model folder (or checkpoint, or run
 * folder: its latest checkpoint) written as a Hugging Face folder that transformers, vLLM and
 * mynah itself load:
 *
 *   config.json              LlamaForCausalLM (Qwen3ForCausalLM with QK-norm, Qwen2ForCausalLM
 *                            with q/k/v biases), torch_dtype, bos/eos ids
 *   model.safetensors        --dtype f32 | bf16 | f16 (round to nearest even), {"format": "pt"}
 *   generation_config.json   bos_token_id, eos_token_id (every end-of-turn id), pad_token_id
 *   tokenizer.json           as the model folder has it, byte for byte
 *   tokenizer_config.json    the folder's, with the chat template the model was tuned with
 *   README.md                a model card: architecture, size, training data and tokens, eval
 *
 * Every file goes into a temporary folder beside --out, which is renamed into place at the
 * end: a failure leaves no half-written export. f32 export → import is bit-exact; bf16/f16
 * export → import gives exactly the rounded values, and exporting those again the same bytes.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fsyncDir, writeAtomic } from "../core/atomic-write.ts";
import { toBf16, toF16, writeSafetensors, type WritableTensor } from "../core/safetensors.ts";
import { headDimOf, parameterCount, toHfConfig, type ModelConfig } from "../model/config.ts";
import { loadModelFolder, paramTensors } from "../model/weights.ts";
import { loadTokenizer } from "../tokenizer/io.ts";
import { CHAT_TEMPLATE, endOfTurnIds, chatPadId } from "../data/chat-template.ts";

export type ExportDtype = "f32" | "bf16" | "f16";
export const EXPORT_DTYPES: readonly ExportDtype[] = ["f32", "bf16", "f16"];
const TORCH_DTYPE: Record<ExportDtype, string> = { f32: "float32", bf16: "bfloat16", f16: "float16" };

export class ExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExportError";
  }
}

export interface ExportResult {
  out: string;
  /** The model folder exported (a run folder resolves to its latest checkpoint). */
  model: string;
  config: ModelConfig;
  architecture: string;
  dtype: ExportDtype;
  bytes: number;
  files: string[];
}

/** A run folder (with `latest`) resolves to its latest checkpoint; anything else is itself. */
export function resolveModelDir(dir: string): string {
  const latest = join(dir, "latest");
  if (!existsSync(join(dir, "config.json")) && existsSync(latest)) return join(dir, readFileSync(latest, "utf8").trim());
  return dir;
}

function readJson(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new ExportError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

/** Model card text from what the folder records (config "mynah", state.json, the run's metrics.jsonl). */
function modelCard(dir: string, c: ModelConfig, arch: string, dtype: ExportDtype, extra: Record<string, unknown>): string {
  const mynah = (extra.mynah ?? {}) as Record<string, unknown>;
  const state = readJson(join(dir, "state.json"));
  const opts = (state?.options ?? {}) as Record<string, unknown>;
  const lines: string[] = [];
  const fmt = (n: number): string => n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : String(n);
  lines.push("---", "library_name: transformers", "pipeline_tag: text-generation", "tags:", "- mynah", "---", "");
  lines.push(`# ${basename(resolve(dir))}`, "");
  lines.push(`A ${fmt(parameterCount(c))}-parameter ${arch} model built with mynah (a TypeScript toolkit for building chat models on one machine) and exported as a Hugging Face folder (${TORCH_DTYPE[dtype]} weights).`, "");
  lines.push("## Architecture", "", "| | |", "|---|---|");
  lines.push(`| layers | ${c.nLayer} |`, `| width | ${c.nEmbd} |`, `| heads / key-value heads | ${c.nHead} / ${c.nKvHead} (head size ${headDimOf(c)}) |`);
  lines.push(`| MLP | SwiGLU, ${c.ffnHidden} |`, `| vocabulary | ${c.vocabSize} |`, `| context | ${c.contextLength} |`);
  lines.push(`| RoPE θ | ${c.ropeTheta}${c.ropeScaling ? ` (${c.ropeScaling.type} scaling ×${c.ropeScaling.factor})` : ""} |`);
  lines.push(`| tied embeddings | ${c.tiedEmbeddings ? "yes" : "no"} |`, `| QK-norm | ${c.qkNorm ? "yes" : "no"} |`, "");
  lines.push("## Training", "");
  const kind = opts.kind === "sft" ? "supervised fine-tuning (loss on assistant replies)" : state ? "pretraining (next-token prediction)" : null;
  if (kind) lines.push(`- stage: ${kind}`);
  const step = (mynah.step ?? mynah.steps ?? state?.step) as number | undefined;
  const tokens = (mynah.tokens ?? state?.tokens) as number | undefined;
  if (step !== undefined) lines.push(`- optimizer steps: ${step}`);
  if (tokens !== undefined) lines.push(`- tokens trained on: ${fmt(tokens)}`);
  if (typeof opts.from === "string") lines.push(`- started from: \`${basename(opts.from)}\``);
  const data = (opts.data ?? []) as string[];
  if (data.length) lines.push(`- data: ${data.map((d) => `\`${basename(d)}\``).join(", ")}`);
  const imported = mynah.imported as { from?: string } | undefined;
  if (imported?.from) lines.push(`- imported from the Hugging Face folder \`${basename(imported.from)}\``);
  if (lines[lines.length - 1] === "") lines.push("- not recorded in this folder");
  lines.push("");
  // Eval results: the run's metrics.jsonl (the checkpoint's parent), last eval line up to this step.
  const metrics = join(dir, "..", "metrics.jsonl");
  const evals: string[] = [];
  if (existsSync(metrics)) {
    let last: Record<string, unknown> | null = null;
    for (const line of readFileSync(metrics, "utf8").split("\n")) {
      if (!line.includes('"eval"')) continue;
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        if (j.type === "eval" && (step === undefined || (j.step as number) <= step)) last = j;
      } catch { /* a torn last line */ }
    }
    if (last) evals.push(`- held-out loss at step ${last.step}: ${Number(last.valLoss).toFixed(4)}${last.valBpb != null ? ` (${Number(last.valBpb).toFixed(4)} bits per byte)` : ""}`);
  }
  if (typeof mynah.loss === "number") evals.push(`- loss: ${mynah.loss.toFixed(4)}`);
  const before = opts.before as { loss?: number } | undefined;
  if (before?.loss !== undefined) evals.push(`- held-out assistant-token loss before fine-tuning: ${before.loss.toFixed(4)}`);
  lines.push("## Evaluation", "", ...(evals.length ? evals : ["No evaluation recorded in this folder."]), "");
  lines.push("## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", `tok = AutoTokenizer.from_pretrained("PATH")`,
    `model = AutoModelForCausalLM.from_pretrained("PATH")`, "```", "", "or with mynah: `mynah chat --model PATH`.", "");
  return lines.join("\n");
}

/** Writes the Hugging Face folder; see the file comment. */
export function exportHf(o: { model: string; out: string; dtype?: ExportDtype; tokenizer?: string }): ExportResult {
  const dtype = o.dtype ?? "f32";
  if (!EXPORT_DTYPES.includes(dtype)) throw new ExportError(`--dtype ${dtype}: expected one of ${EXPORT_DTYPES.join(", ")}`);
  const dir = resolveModelDir(o.model);
  if (!existsSync(join(dir, "config.json"))) throw new ExportError(`--model ${o.model}: no config.json (not a model folder, checkpoint or run folder)`);
  if (existsSync(o.out) && (!statSync(o.out).isDirectory() || readdirSync(o.out).length > 0)) throw new ExportError(`--out ${o.out}: exists and is not an empty folder`);
  const { config, params, json } = loadModelFolder(dir);
  const tokDir = o.tokenizer ?? dir;
  if (!existsSync(join(tokDir, "tokenizer.json"))) {
    throw new ExportError(`${o.tokenizer ? `--tokenizer ${o.tokenizer}` : `--model ${o.model}`}: no tokenizer.json${o.tokenizer ? "" : " (pass --tokenizer; character-level models cannot be exported)"}`);
  }
  const tok = loadTokenizer(tokDir);
  if (tok.vocabSize > config.vocabSize) throw new ExportError(`the tokenizer has ${tok.vocabSize} tokens but the model only ${config.vocabSize}`);

  // Tokenizer config: the folder's, with the chat template the model was tuned with.
  const tcfg = readJson(join(tokDir, "tokenizer_config.json")) ?? { tokenizer_class: "PreTrainedTokenizerFast", clean_up_tokenization_spaces: false };
  const hasTemplate = typeof tcfg.chat_template === "string" || Array.isArray(tcfg.chat_template) || existsSync(join(tokDir, "chat_template.jinja"));
  if (!hasTemplate && tok.special.has("<|im_start|>") && tok.special.has("<|im_end|>")) tcfg.chat_template = CHAT_TEMPLATE;
  const tokenText = (v: unknown): string | undefined => typeof v === "string" ? v : (v as { content?: string } | null)?.content;
  const idOf = (v: unknown): number | undefined => { const t = tokenText(v); return t !== undefined ? tok.special.get(t) : undefined; };
  const bos = idOf(tcfg.bos_token), pad = chatPadId(tok);
  const eos = [...new Set([...(idOf(tcfg.eos_token) !== undefined ? [idOf(tcfg.eos_token)!] : []), ...endOfTurnIds(tok)])];

  const hf = toHfConfig(config);
  hf.torch_dtype = TORCH_DTYPE[dtype];
  if (bos !== undefined) hf.bos_token_id = bos;
  if (eos.length) hf.eos_token_id = eos.length === 1 ? eos[0] : eos;
  const gen = { _from_model_config: false, ...(bos !== undefined ? { bos_token_id: bos } : {}), eos_token_id: eos.length === 1 ? eos[0] : eos,
                ...(pad !== undefined ? { pad_token_id: pad } : {}) };

  const out = resolve(o.out);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = join(dirname(out), `.tmp-${basename(out)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    const tensors = paramTensors(params).map(([name, t]): [string, WritableTensor] => {
      if (dtype === "f32") return [name, t];
      return [name, { shape: t.shape, data: dtype === "bf16" ? toBf16(t.data) : toF16(t.data), dtype: dtype === "bf16" ? "BF16" : "F16" }];
    });
    writeSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" });
    writeAtomic(join(tmp, "config.json"), JSON.stringify(hf, null, 2) + "\n");
    writeAtomic(join(tmp, "generation_config.json"), JSON.stringify(gen, null, 2) + "\n");
    copyFileSync(join(tokDir, "tokenizer.json"), join(tmp, "tokenizer.json"));
    writeAtomic(join(tmp, "tokenizer_config.json"), JSON.stringify(tcfg, null, 2) + "\n");
    if (existsSync(join(tokDir, "chat_template.jinja"))) copyFileSync(join(tokDir, "chat_template.jinja"), join(tmp, "chat_template.jinja"));
    writeAtomic(join(tmp, "README.md"), modelCard(dir, config, String((hf.architectures as string[])[0]), dtype, json));
    fsyncDir(tmp);
    if (existsSync(out)) rmSync(out, { recursive: true }); // an empty folder, checked above
    renameSync(tmp, out);
    fsyncDir(dirname(out));
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const files = readdirSync(out).sort();
  return { out, model: dir, config, architecture: String((hf.architectures as string[])[0]), dtype, bytes: statSync(join(out, "model.safetensors")).size, files };
}

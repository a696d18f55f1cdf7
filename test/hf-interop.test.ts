/**
 * `mynah export --format hf` and `mynah import`: the round trip export → import is bit-exact
 * (f32), and exact to the rounded values for bf16/f16 (exporting those again gives the same
 * bytes); the folder holds what transformers expects (config, generation config, tokenizer
 * with the chat template, model card); PyTorch (examples/torch/hfmodel.py, its own safetensors
 * reader) computes the same logits from the exported folder; the CLI validates its flags.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { referenceBackend } from "../src/core/reference.ts";
import { toBf16, toF16 } from "../src/core/safetensors.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { createGPT } from "../src/model/gpt.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { loadModelFolder, saveModelFolder } from "../src/model/weights.ts";
import { trainBpe } from "../src/tokenizer/train.ts";
import { saveTokenizer, loadTokenizer } from "../src/tokenizer/io.ts";
import { CHAT_TEMPLATE } from "../src/data/chat-template.ts";
import { exportHf } from "../src/interop/hf-export.ts";
import { importHf } from "../src/interop/hf-import.ts";
import { registerExport } from "../src/cli/export.ts";
import { registerImport } from "../src/cli/import.ts";
import { inProcessCli } from "./helpers/cli.ts";

const torchOk = spawnSync("/usr/bin/python3", ["-c", "import torch"]).status === 0;
const HFMODEL = join(import.meta.dirname, "..", "examples", "torch");

const words = ["alpha", "beta", "gamma", "delta", "token", "merge", "你好", "世界", "model", "chat"];
const texts = Array.from({ length: 300 }, (_, i) => `${words[i % 10]} ${words[(i * 7) % 10]}, ${words[(i * 3) % 10]}! ${i}\n`);
const tok = trainBpe(texts, { vocabSize: 256 + 60 + 8 });

const SHAPES: [string, Partial<ModelConfig>, string][] = [
  ["llama tied", { tiedEmbeddings: true }, "LlamaForCausalLM"],
  ["qwen3 head_dim", { qkNorm: true, headDim: 12, nHead: 4, nKvHead: 2 }, "Qwen3ForCausalLM"],
  ["qwen2 biases, llama3 rope", { qkvBias: true, ropeScaling: { type: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8 } }, "Qwen2ForCausalLM"],
];

function makeModel(dir: string, extra: Partial<ModelConfig>): ModelConfig {
  const config: ModelConfig = {
    nLayer: 2, nHead: 2, nKvHead: 2, nEmbd: 16, ffnHidden: 40, vocabSize: tok.vocabSize + 5, contextLength: 32,
    ropeTheta: 10000, normEps: 1e-5, tiedEmbeddings: false, qkNorm: false, ...extra,
  };
  const p = createParams(config);
  initParams(p, 7);
  for (const s of p.specs) if (s.kind === "norm") { const v = p.get(s.name); for (let i = 0; i < v.length; i++) v[i] += 0.01 * ((i * 37) % 11 - 5); }
  mkdirSync(dir, { recursive: true });
  saveModelFolder(dir, p, { mynah: { format: 1, step: 120, tokens: 61440 } });
  saveTokenizer(dir, tok, { chatTemplate: CHAT_TEMPLATE });
  return config;
}

const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

for (const [name, extra, arch] of SHAPES) {
  test(`${name}: export f32 → import is bit-exact; bf16/f16 exact to the rounded values; folder as transformers expects`, () => {
    const tmp = mkdtempSync(join(tmpdir(), "mynah-hfx-"));
    try {
      const src = join(tmp, "model");
      const config = makeModel(src, extra);
      const orig = loadModelFolder(src).params;
      const r = exportHf({ model: src, out: join(tmp, "hf32") });
      assert.equal(r.architecture, arch);
      assert.deepEqual(r.files, ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
      // Read directly (as --model does) and through `import`: the same bits, the same config.
      const direct = loadModelFolder(join(tmp, "hf32"));
      assert.deepEqual(direct.config, config);
      assert.ok(bytesOf(direct.params.data).equals(bytesOf(orig.data)));
      importHf({ from: join(tmp, "hf32"), out: join(tmp, "back") });
      const back = loadModelFolder(join(tmp, "back"));
      assert.deepEqual(back.config, config);
      assert.ok(bytesOf(back.params.data).equals(bytesOf(orig.data)));
      assert.deepEqual(loadTokenizer(join(tmp, "back")).spec.merges, tok.spec.merges);
      // Half precision: the values read back are exactly the rounded ones; a second export is byte-identical.
      for (const [dt, round] of [["bf16", toBf16], ["f16", toF16]] as const) {
        exportHf({ model: src, out: join(tmp, dt), dtype: dt });
        const h = loadModelFolder(join(tmp, dt));
        assert.deepEqual(h.dtypes, [dt === "bf16" ? "BF16" : "F16"]);
        for (const s of orig.specs) assert.deepEqual(round(h.params.get(s.name)), round(orig.get(s.name)), s.name);
        exportHf({ model: join(tmp, dt), out: join(tmp, dt + "again"), dtype: dt });
        assert.ok(readFileSync(join(tmp, dt, "model.safetensors")).equals(readFileSync(join(tmp, dt + "again", "model.safetensors"))));
      }
      // What transformers reads.
      const cfg = JSON.parse(readFileSync(join(tmp, "bf16", "config.json"), "utf8"));
      assert.equal(cfg.torch_dtype, "bfloat16");
      assert.deepEqual(cfg.architectures, [arch]);
      const gen = JSON.parse(readFileSync(join(tmp, "hf32", "generation_config.json"), "utf8"));
      assert.deepEqual([gen.eos_token_id].flat().sort(), [tok.special.get("<|im_end|>"), tok.special.get("<|endoftext|>")].sort());
      const tcfg = JSON.parse(readFileSync(join(tmp, "hf32", "tokenizer_config.json"), "utf8"));
      assert.equal(tcfg.chat_template, CHAT_TEMPLATE);
      const card = readFileSync(join(tmp, "hf32", "README.md"), "utf8");
      assert.match(card, new RegExp(`${arch} model`));
      assert.match(card, /optimizer steps: 120/);
      assert.match(card, /tokens trained on: 61440/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test(`${name}: PyTorch computes mynah's logits from the exported bf16 folder`, { skip: torchOk ? false : "needs /usr/bin/python3 with torch (python3-torch)" }, () => {
    const tmp = mkdtempSync(join(tmpdir(), "mynah-hfx-"));
    try {
      makeModel(join(tmp, "model"), extra);
      exportHf({ model: join(tmp, "model"), out: join(tmp, "hf"), dtype: "bf16" });
      const { config, params } = loadModelFolder(join(tmp, "hf"));
      const ids = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 31 + 5) % tok.vocabSize);
      const m = createGPT(config, referenceBackend, { params });
      m.forward(ids, null, 2, 9);
      const ours = m.logits();
      const py = spawnSync("/usr/bin/python3", ["-c", `
import sys, json, torch
sys.path.insert(0, ${JSON.stringify(HFMODEL)})
from hfmodel import CausalLM, load_folder
cfg, w = load_folder(${JSON.stringify(join(tmp, "hf"))})
m = CausalLM(cfg).double(); m.load(w)
ids = torch.tensor(json.loads(sys.argv[1])).view(2, 9)
print(json.dumps(m(ids).flatten().tolist()))`, JSON.stringify([...ids])], { encoding: "utf8" });
      assert.equal(py.status, 0, py.stderr);
      const theirs = JSON.parse(py.stdout) as number[];
      let d = 0, s = 0;
      for (let i = 0; i < theirs.length; i++) (d = Math.max(d, Math.abs(ours[i] - theirs[i]))), (s = Math.max(s, Math.abs(theirs[i])));
      assert.ok(d / s < 1e-5, `largest relative logit difference ${(d / s).toExponential(2)}`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

/** Runs `mynah <args>` in-process; returns what it printed. */
const mynah = inProcessCli(registerExport, registerImport);

test("CLI: mynah import a sharded BF16 Hugging Face folder, then export it; bad flags and folders are refused by name", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "mynah-hfcli-"));
  try {
    const fix = join(import.meta.dirname, "fixtures", "hf-llama3-bf16-sharded");
    const out = await mynah("import", fix, "--out", join(tmp, "imported"));
    assert.match(out, /imported .*hf-llama3-bf16-sharded: .*2 layers, width 32, BF16 in 2 files; tokenizer none/);
    const a = loadModelFolder(fix), b = loadModelFolder(join(tmp, "imported"));
    assert.ok(bytesOf(a.params.data).equals(bytesOf(b.params.data)));
    assert.deepEqual(b.config, a.config);
    await assert.rejects(mynah("import", fix, "--out", join(tmp, "imported")), /--out .*imported: exists and is not empty/);
    await assert.rejects(mynah("export", "--model", join(tmp, "imported"), "--out", join(tmp, "x")), /--model .*imported: no tokenizer\.json \(pass --tokenizer/);
    await assert.rejects(mynah("export", "--model", fix, "--out", join(tmp, "x"), "--dtype", "f8"), /--dtype: "f8" is not one of f32, bf16, f16 \(for --format hf\)/);
    await assert.rejects(mynah("export", "--model", fix, "--out", join(tmp, "x"), "--format", "onnx"), /option '--format <format>' argument 'onnx' is invalid\. Allowed choices are hf, gguf/);
    await assert.rejects(mynah("export", "--model", tmp, "--out", join(tmp, "x")), /no config\.json/);
    assert.ok(!existsSync(join(tmp, "x")), "nothing written on refusal");
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

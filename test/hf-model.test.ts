/**
 * Hugging Face model folders read directly: random-weight Llama 3 (BF16, two shards, llama3
 * RoPE scaling), Qwen2 (q/k/v biases, F16, linear RoPE scaling, tied) and Qwen3 (head_dim ≠
 * hidden/heads, QK-norm) written in exact Hugging Face layout by test/torch/make_hf_fixtures.py,
 * with logits, loss and every gradient PyTorch computes in float64 from the stored weights.
 * Checked: the training forward and backward (fine-tuning) on each backend, and the KV-cached
 * decoder (prefill and one token at a time). Relative error max|a − b| / max|b| ≤ 1e-5.
 * Also: refusals of what mynah does not implement, naming the field and value.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, cpSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../src/core/backend.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { nativeBackend } from "../src/core/native.ts";
import { readSafetensors } from "../src/core/safetensors.ts";
import { loadModelFolder } from "../src/model/weights.ts";
import { createGPT } from "../src/model/gpt.ts";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { loadDecodeModel } from "../src/infer/load.ts";

const FIX = join(import.meta.dirname, "fixtures");
const NAMES = ["hf-llama3-bf16-sharded", "hf-qwen2-bias-f16", "hf-qwen3-headdim"];
const TOL = 1e-5; // float32 against float64: the largest seen is ~6e-7

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-12);
}

const backends: [string, Backend][] = [["reference", referenceBackend], ["native", nativeBackend()]];

for (const name of NAMES) {
  const dir = join(FIX, name);
  const exp = readSafetensors(join(dir, "expected.safetensors")).tensors;
  const [B, T] = exp.get("input_ids")!.shape;
  const inputs = exp.get("input_ids")!.data as Int32Array, targets = exp.get("targets")!.data as Int32Array;

  for (const [bname, be] of backends) {
    test(`${name}: training forward, loss and every gradient match PyTorch (${bname})`, () => {
      const { config, params, dtypes, files } = loadModelFolder(dir);
      assert.ok(dtypes.length === 1 && files >= 1);
      const m = createGPT(config, be, { params });
      const report: string[] = [];
      const errs: number[] = [];
      const check = (what: string, a: ArrayLike<number>, b: ArrayLike<number>): void => {
        const e = relErr(a, b);
        report.push(`${what.padEnd(48)} ${e.toExponential(2)}`);
        errs.push(e);
      };
      m.forward(inputs, targets, B, T, { grad: false });
      check("logits", m.logits(), exp.get("logits")!.data);
      check("loss", [m.forward(inputs, targets, B, T)], exp.get("loss")!.data);
      m.zeroGrad();
      m.backward();
      for (const s of params.specs) {
        const g = exp.get("grad." + s.name);
        assert.ok(g, `expected.safetensors has no grad.${s.name}`);
        check("grad." + s.name, m.grads.get(s.name), g.data);
      }
      assert.equal(params.specs.length, [...exp.keys()].filter((k) => k.startsWith("grad.")).length, "every PyTorch gradient was checked");
      const worst = Math.max(...errs);
      if (worst > TOL || process.env.MYNAH_VERBOSE) console.log(`${name} (${bname}):\n  ${report.join("\n  ")}`);
      assert.ok(worst <= TOL, `largest relative error ${worst.toExponential(2)} > ${TOL}`);
    });

    test(`${name}: KV-cached decoding matches PyTorch's logits (${bname})`, () => {
      const model = loadDecodeModel(dir, be);
      const V = model.config.vocabSize;
      const want = exp.get("logits")!.data;
      let worst = 0, scale = 0;
      for (let b = 0; b < B; b++) {
        const row = Array.from(inputs.subarray(b * T, (b + 1) * T));
        const all = forwardCached(model, createCache(model, 1, T), [0], [T], row, true);
        const c2 = createCache(model, 1, T);
        for (let t = 0; t < T; t++) {
          const one = forwardCached(model, c2, [0], [1], [row[t]]);
          for (let v = 0; v < V; v++) {
            const w = want[(b * T + t) * V + v];
            scale = Math.max(scale, Math.abs(w));
            worst = Math.max(worst, Math.abs(all[t * V + v] - w), Math.abs(one[v] - w));
          }
        }
      }
      assert.ok(worst / scale <= TOL, `largest relative logit difference ${(worst / scale).toExponential(2)}`);
    });
  }
}

test("config.json fields mynah does not implement are refused, naming the field and value", () => {
  const tmp = mkdtempSync(join(tmpdir(), "mynah-hfcfg-"));
  try {
    cpSync(join(FIX, "hf-qwen3-headdim"), tmp, { recursive: true });
    const base = JSON.parse(readFileSync(join(tmp, "config.json"), "utf8"));
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ architectures: ["MistralForCausalLM"] }, /config\.json: field "architectures" is \["MistralForCausalLM"\]; mynah reads LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM/],
      [{ rope_scaling: { rope_type: "yarn", factor: 4 } }, /field "rope_scaling" has rope_type "yarn"; mynah implements "llama3" and "linear"/],
      [{ rope_scaling: { type: "dynamic", factor: 2 } }, /rope_type "dynamic"/],
      [{ hidden_act: "gelu" }, /field "hidden_act" is "gelu": only silu/],
      [{ attention_bias: true }, /field "attention_bias" is true/],
      [{ mlp_bias: true }, /field "mlp_bias" is true/],
      [{ use_sliding_window: true }, /field "use_sliding_window" is true/],
      [{ quantization_config: { quant_method: "gptq" } }, /field "quantization_config"/],
      [{ rope_scaling: { rope_type: "llama3", factor: 8 } }, /field "rope_scaling.low_freq_factor" must be a number/],
    ];
    for (const [patch, re] of cases) {
      writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...base, ...patch }));
      assert.throws(() => loadModelFolder(tmp), re, JSON.stringify(patch));
    }
    // A tensor of the wrong shape, and a PyTorch-pickle-only folder.
    writeFileSync(join(tmp, "config.json"), JSON.stringify({ ...base, intermediate_size: 57 }));
    assert.throws(() => loadModelFolder(tmp), /model\.safetensors: tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[56,24\], the config needs \[57,24\]/);
    writeFileSync(join(tmp, "config.json"), JSON.stringify(base));
    rmSync(join(tmp, "model.safetensors"));
    writeFileSync(join(tmp, "pytorch_model.bin"), "x");
    assert.throws(() => loadModelFolder(tmp), /has pytorch_model\.bin \(PyTorch pickle\) but no model\.safetensors/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("safetensors half formats: F16/BF16 widen exactly and narrow back to the same bits; rounding is to nearest even", async () => {
  const { toBf16, toF16, openSafetensors, readTensorF32, writeSafetensors } = await import("../src/core/safetensors.ts");
  const tmp = mkdtempSync(join(tmpdir(), "mynah-half-"));
  try {
    const all = new Uint16Array(65536).map((_, i) => i);
    const path = join(tmp, "h.safetensors");
    writeSafetensors(path, [["f16", { shape: [65536], data: all, dtype: "F16" }], ["bf16", { shape: [65536], data: all, dtype: "BF16" }]]);
    const ix = openSafetensors(path);
    const f16 = readTensorF32(ix, "f16"), bf16 = readTensorF32(ix, "bf16");
    const back16 = toF16(f16), backB = toBf16(bf16);
    for (let i = 0; i < 65536; i++) {
      const nan16 = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0, nanB = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (nan16) assert.ok(Number.isNaN(f16[i]));
      else assert.equal(back16[i], i, `F16 0x${i.toString(16)} → ${f16[i]} → 0x${back16[i].toString(16)}`);
      if (nanB) assert.ok(Number.isNaN(bf16[i]));
      else assert.equal(backB[i], i, `BF16 0x${i.toString(16)}`);
    }
    assert.equal(f16[0x3c00], 1); assert.equal(f16[0x0001], 2 ** -24); assert.equal(f16[0x7bff], 65504);
    // Ties go to even: 1 + 2^-11 (halfway between 1 and 1 + 2^-10) → 1; 1 + 3·2^-11 → 1 + 2^-9.
    assert.deepEqual([...toF16(Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000, -1e-9))], [0x3c00, 0x3c02, 0x7c00, 0x8000]);
    assert.deepEqual([...toBf16(Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8))], [0x3f80, 0x3f82]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

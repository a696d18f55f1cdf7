/**
 * Golden test: one forward and backward of our model against PyTorch (float64) on fixtures
 * written by ../shared/bench/torch_reference.py (see test/fixtures/README.md): logits,
 * loss and EVERY gradient within 1e-4 relative error, on each backend.
 * Relative error of a tensor: max|a − b| / max(max|b|, 1e-12).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/core/backend.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { nativeBackend } from "../src/core/native.ts";
import { readSafetensors } from "../src/core/safetensors.ts";
import { loadModelFolder } from "../src/model/weights.ts";
import { createGPT } from "../src/model/gpt.ts";

const here = dirname(fileURLToPath(import.meta.url));
const TOL = 1e-4;

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-12);
}

function backends(): [string, Backend | null, string][] {
  let nat: Backend | null = null, why = "";
  try {
    nat = nativeBackend();
    const missing = ["attentionForward", "attentionBackward", "rmsnormBackward", "crossEntropy"].filter((k) => typeof (nat as unknown as Record<string, unknown>)[k] !== "function");
    if (missing.length) {
      why = `native addon lacks ${missing.join(", ")}`;
      nat = null;
    }
  } catch (err) {
    why = (err as Error).message;
  }
  return [["reference", referenceBackend, ""], ["native", nat, why]];
}

for (const name of ["llama-tiny", "qwen3-gqa-tied"]) {
  for (const [bname, be, why] of backends()) {
    test(`${name}: logits, loss and every gradient match PyTorch (${bname} backend)`, { skip: be ? false : why }, () => {
      const dir = join(here, "fixtures", name);
      const { config, params } = loadModelFolder(dir);
      const exp = readSafetensors(join(dir, "expected.safetensors")).tensors;
      const [B, T] = exp.get("input_ids")!.shape;
      const inputs = exp.get("input_ids")!.data as Int32Array, targets = exp.get("targets")!.data as Int32Array;
      const m = createGPT(config, be!, { params });
      const report: string[] = [];
      const check = (what: string, a: ArrayLike<number>, b: ArrayLike<number>): number => {
        const e = relErr(a, b);
        report.push(`${what.padEnd(48)} ${e.toExponential(2)}`);
        return e;
      };
      // Logits without the backward (kept intact), then the training pass.
      m.forward(inputs, targets, B, T, { grad: false });
      const errs: number[] = [check("logits", m.logits(), exp.get("logits")!.data)];
      const loss = m.forward(inputs, targets, B, T);
      errs.push(check("loss", [loss], exp.get("loss")!.data));
      m.zeroGrad();
      m.backward();
      let grads = 0;
      for (const s of params.specs) {
        const g = exp.get("grad." + s.name);
        assert.ok(g, `expected.safetensors has no grad.${s.name}`);
        errs.push(check("grad." + s.name, m.grads.get(s.name), g.data));
        grads++;
      }
      assert.equal(grads, [...exp.keys()].filter((k) => k.startsWith("grad.")).length, "every PyTorch gradient was checked");
      const worst = Math.max(...errs);
      if (worst > TOL || process.env.MYNAH_VERBOSE) console.log(`${name} (${bname}) relative error per tensor:\n  ${report.join("\n  ")}`);
      assert.ok(worst <= TOL, `largest relative error ${worst.toExponential(2)} > ${TOL} (table above)`);
    });
  }
}

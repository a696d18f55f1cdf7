/**
 * Golden test against PyTorch: the KV-cached decode forward, fed a whole sequence, reproduces
 * the logits the independent PyTorch reference computes in float64 (../shared/bench/
 * torch_reference.py fixture), for grouped-query attention with QK-norm and for a tied,
 * plain multi-head model. Also a step-by-step decode through the cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDecodeModel } from "../src/infer/load.ts";
import { readSafetensors } from "../src/core/safetensors.ts";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { plain } from "./infer-tiny.ts";
import { referenceBackend } from "../src/core/reference.ts";
import { inferenceBackend } from "../src/infer/load.ts";

const REF = join(import.meta.dirname, "..", "..", "shared", "bench", "torch_reference.py");
const torchOk = existsSync(REF) && spawnSync("/usr/bin/python3", ["-c", "import torch"]).status === 0;
const skip = torchOk ? false : `needs ${REF} and python3-torch`;

const CASES = [
  { name: "GQA + QK-norm", cfg: { n_layer: 2, n_head: 4, n_kv_head: 2, n_embd: 32, vocab_size: 61, seq_len: 10, batch_size: 2, qk_norm: true } },
  { name: "MHA, tied", cfg: { n_layer: 2, n_head: 2, n_embd: 16, vocab_size: 37, seq_len: 9, batch_size: 2, tied_embeddings: true } },
];

const BACKENDS = [plain, referenceBackend, inferenceBackend()];
for (const c of CASES) for (const be of BACKENDS) {
  test(`decode forward matches PyTorch's float64 logits (${c.name}, ${be.name})`, { skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), "mynah-golden-"));
    const r = spawnSync("/usr/bin/python3", [REF, "fixture", "--config", JSON.stringify(c.cfg), "--out", dir], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const model = loadDecodeModel(dir, be);
    const exp = readSafetensors(join(dir, "expected.safetensors")).tensors;
    const { B, T, V } = { B: c.cfg.batch_size, T: c.cfg.seq_len, V: c.cfg.vocab_size };
    const ids = exp.get("input_ids")!.data;
    const want = exp.get("logits")!.data;
    let worst = 0;
    for (let b = 0; b < B; b++) {
      const row = Array.from(ids.subarray(b * T, (b + 1) * T));
      // Whole sequence at once (prefill) ...
      const cache = createCache(model, 1, T);
      const all = forwardCached(model, cache, [0], [T], row, true);
      // ... and one token at a time through the cache.
      const c2 = createCache(model, 1, T);
      for (let t = 0; t < T; t++) {
        const one = forwardCached(model, c2, [0], [1], [row[t]]);
        for (let v = 0; v < V; v++) {
          const w = want[(b * T + t) * V + v];
          worst = Math.max(worst, Math.abs(all[t * V + v] - w), Math.abs(one[v] - w));
        }
      }
    }
    assert.ok(worst < 1e-4, `largest logit difference ${worst}`);
  });
}


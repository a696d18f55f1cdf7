/**
 * Checkpoints and safetensors: round trip of weights and optimizer state, the `latest`
 * pointer and keep-K, and clear errors (naming the file) for truncated or corrupt files.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { referenceBackend } from "../src/core/reference.ts";
import { encodeSafetensors, parseSafetensors } from "../src/core/safetensors.ts";
import { configFromPreset, fromHfConfig, toHfConfig } from "../src/model/config.ts";
import { createParams, initParams } from "../src/model/params.ts";
import { paramsFromTensors, paramTensors } from "../src/model/weights.ts";
import { createOptimizer, DEFAULT_OPTIMIZER } from "../src/train/optim.ts";
import { latestCheckpoint, listCheckpoints, loadCheckpoint, saveCheckpoint, type CheckpointState } from "../src/train/checkpoint.ts";

const config = configFromPreset("tiny", { vocabSize: 11, contextLength: 8, nLayer: 1, nEmbd: 16, nHead: 2, nKvHead: 1, qkNorm: true });

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "mynah-ckpt-"));
  const params = createParams(config);
  initParams(params, 7);
  const grads = createParams(config);
  initParams(grads, 8);
  const opt = createOptimizer(referenceBackend, params, { ...DEFAULT_OPTIMIZER, kind: "muon" });
  opt.step(params, grads, 1); // non-zero moments
  const state = (step: number): CheckpointState => ({
    format: 1, step, tokens: step * 64, data: { kind: "text", offset: step }, rng: { s: [1, 2, 3, step], spare: null },
    tokenizer: { kind: "char", chars: ["a", "b"] }, options: { note: "test" },
  });
  return { dir, params, opt, state };
}

test("HF config.json round trip and refusals", () => {
  assert.deepEqual(fromHfConfig(toHfConfig(config)), config);
  assert.throws(() => fromHfConfig({ ...toHfConfig(config), head_dim: undefined, num_attention_heads: 3 }), /not divisible by the number of heads 3/);
  assert.throws(() => fromHfConfig({ ...toHfConfig(config), num_key_value_heads: 3 }, "x/config.json"), /x\/config.json: .*heads 2 is not divisible by the number of key\/value heads 3/);
  assert.throws(() => configFromPreset("tiny", { vocabSize: 5, contextLength: 8, nEmbd: 12, nHead: 4 }), /head size 12\/4 = 3 is odd/);
  assert.throws(() => configFromPreset("huge", { vocabSize: 5, contextLength: 8 }), /unknown preset "huge"/);
  assert.equal(configFromPreset("shakespeare", { vocabSize: 65, contextLength: 256 }).ffnHidden, 1024); // 32·ceil(1024/32)
});

test("checkpoint round trip: weights, optimizer state, state.json, latest, keep-K", () => {
  const { dir, params, opt, state } = setup();
  try {
    for (const step of [10, 20, 30]) saveCheckpoint(dir, params, opt.stateTensors(), state(step), 2);
    assert.deepEqual(listCheckpoints(dir), ["ckpt-000020", "ckpt-000030"]);
    const latest = latestCheckpoint(dir)!;
    assert.ok(latest.endsWith("ckpt-000030"));
    const ck = loadCheckpoint(latest);
    assert.deepEqual(ck.config, config);
    assert.deepEqual(ck.params.data, params.data);
    assert.equal(ck.state.step, 30);
    assert.deepEqual(ck.state.data, { kind: "text", offset: 30 });
    const opt2 = createOptimizer(referenceBackend, params, { ...DEFAULT_OPTIMIZER, kind: "muon" });
    opt2.loadState(ck.optimizer, ck.state.step, "optimizer.safetensors");
    assert.equal(opt2.steps, 30);
    const a = opt.stateTensors(), b = opt2.stateTensors();
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.deepEqual(b[i][1].data, a[i][1].data, a[i][0]);
    assert.ok(a.some(([n]) => n.startsWith("momentum_buffer.")) && a.some(([n]) => n.startsWith("exp_avg_sq.")));
    // An AdamW optimizer cannot load Muon state: the message says what is missing.
    const adam = createOptimizer(referenceBackend, params, DEFAULT_OPTIMIZER);
    assert.throws(() => adam.loadState(ck.optimizer, 30, "opt.safetensors"), /opt.safetensors: optimizer state "exp_avg\.model\.layers\.0\.self_attn\.q_proj\.weight" is missing/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("truncated or corrupt checkpoint files are refused, naming the file", () => {
  const { dir, params, opt, state } = setup();
  try {
    const ck = saveCheckpoint(dir, params, opt.stateTensors(), state(5));
    const model = join(ck, "model.safetensors");
    const bytes = readFileSync(model);
    truncateSync(model, bytes.length - 100);
    assert.throws(() => loadCheckpoint(ck), (e: Error) => e.message.includes(model) && /truncated/.test(e.message));
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 3] ^= 0xff;
    writeFileSync(model, flipped);
    assert.throws(() => loadCheckpoint(ck), (e: Error) => e.message.includes(model) && /SHA-256/.test(e.message));
    writeFileSync(model, bytes);
    assert.equal(loadCheckpoint(ck).state.step, 5);
    writeFileSync(join(ck, "state.json"), "{ not json");
    assert.throws(() => loadCheckpoint(ck), (e: Error) => e.message.includes(join(ck, "state.json")));
    writeFileSync(join(dir, "latest"), "ckpt-000099\n");
    assert.throws(() => latestCheckpoint(dir), /names ckpt-000099, which does not exist/);
    rmSync(join(dir, "latest"));
    assert.equal(latestCheckpoint(dir), null);
    assert.ok(!existsSync(join(dir, ".tmp-ckpt-000005-" + process.pid)), "no temporary folder left behind");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("safetensors reader: clear errors for bad headers, offsets, dtypes and shapes", () => {
  const params = createParams(config);
  initParams(params, 3);
  const good = concat(encodeSafetensors(paramTensors(params)));
  const back = paramsFromTensors(config, parseSafetensors(good, "m.st").tensors, "m.st");
  assert.deepEqual(back.data, params.data);
  assert.throws(() => parseSafetensors(good.subarray(0, 5), "m.st"), /^SafetensorsError: m.st: truncated: 5 bytes/);
  assert.throws(() => parseSafetensors(good.subarray(0, 40), "m.st"), /m.st: truncated: the header says/);
  assert.throws(() => parseSafetensors(good.subarray(0, good.length - 4), "m.st"), /m.st: truncated: tensor "model.norm.weight" ends at byte/);
  const withHeader = (h: unknown, data = new Uint8Array(8)): Uint8Array => {
    const json = Buffer.from(typeof h === "string" ? h : JSON.stringify(h));
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
    return concat([len, json, data]);
  };
  assert.throws(() => parseSafetensors(withHeader("{oops"), "m.st"), /m.st: the header is not valid JSON/);
  assert.throws(() => parseSafetensors(withHeader({ a: { dtype: "F16", shape: [2], data_offsets: [0, 4] } }), "m.st"), /tensor "a" has dtype "F16"/);
  assert.throws(() => parseSafetensors(withHeader({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }), "m.st"), /data_offsets \[0, 8\] hold 8 bytes but shape \[3\] needs 12/);
  assert.throws(() => parseSafetensors(withHeader({ a: { dtype: "F32", shape: [2], data_offsets: [8, 16] } }), "m.st"), /truncated: tensor "a" ends at byte 16/);
  // Right file, wrong config: shape and missing/extra tensors are named.
  const other = configFromPreset("tiny", { vocabSize: 12, contextLength: 8, nLayer: 1, nEmbd: 16, nHead: 2, nKvHead: 1, qkNorm: true });
  assert.throws(() => paramsFromTensors(other, parseSafetensors(good, "m.st").tensors, "m.st"), /m.st: tensor "model.embed_tokens.weight" has shape \[11,16\], the config needs \[12,16\]/);
  const tied = { ...config, tiedEmbeddings: true };
  assert.throws(() => paramsFromTensors(tied, parseSafetensors(good, "m.st").tensors, "m.st"), /unexpected tensor "lm_head.weight".*ties embeddings/);
});

/**
 * GGUF export checked in llama.cpp itself (node-llama-cpp 3.21.1, its prebuilt CPU binaries,
 * one thread: a thread llama.cpp starts stays on its creator's CPU, so the test asks for one).
 *
 * A small model trained on mixed EN/ZH text for a few seconds is exported at F32, F16 and
 * Q8_0. llama.cpp loads each; fed mynah's prompt ids, its greedy continuation at F32 equals
 * mynah's for 40 tokens, and its next-token log-probabilities along mynah's continuation agree
 * within LOGPROB_BOUND_F32 (float32 arithmetic in a different order: the measured largest
 * difference is printed). F16/Q8_0 files are compared with mynah's F32 within looser bounds
 * (llama.cpp also rounds the activations to F16/Q8_0 there; mynah at Q8_0 rounds them to 8-bit
 * blocks too, with float32 block scales). Tokenizers trained with each
 * llama.cpp-compatible pattern give identical ids in llama.cpp on EN/ZH lines; the chat
 * template renders the same conversation to the same text and ids.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { exportGguf, parseGguf, permuteRopeRows, preMismatch, GGML_TYPE, type GgufDtype } from "../src/interop/gguf.ts";
import { createCache, forwardCached } from "../src/model/decode.ts";
import { loadDecodeModel } from "../src/infer/load.ts";
import { setThreads } from "../src/core/native.ts";
import { renderChat, renderChatText, CHAT_TEMPLATE, type ChatMessage } from "../src/data/chat-template.ts";
import { CL100K_PATTERN, GPT2_PATTERN, MYNAH_PATTERN, QWEN2_PATTERN } from "../src/tokenizer/pattern.ts";
import { trainTiny, SHARED_DATA, type TinyTrained } from "./helpers/tiny-trained.ts";

/**
 * Largest |log p_llama.cpp − log p_mynah| allowed, over tokens with p ≥ 1e-4 along 40 steps.
 * F32 (llama.cpp with an F32 KV cache): float32 sums in another order, measured 3e-6.
 * F16 and Q8_0 files against mynah's F32: llama.cpp also rounds activations to F16 / 8-bit
 * blocks in its matrix products; measured 1.9e-3 and 6.7e-2.
 */
const LOGPROB_BOUND_F32 = 2e-5;
const LOGPROB_BOUND = { f16: 1e-2, q8_0: 0.15 } as const;
const GREEDY = 40;

type Llama = Awaited<ReturnType<typeof import("node-llama-cpp").getLlama>>;
let llama: Llama | undefined;
let skip: string | false = false;
try {
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
} catch (err) {
  skip = `node-llama-cpp could not start llama.cpp here: ${(err as Error).message.split("\n")[0]}`;
}

let tiny: TinyTrained;
const files: Partial<Record<GgufDtype, string>> = {};
before(() => {
  if (skip) return;
  setThreads(1);
  tiny = trainTiny({ pattern: CL100K_PATTERN, steps: 300 });
  for (const dtype of ["f32", "f16", "q8_0"] as const) files[dtype] = exportGguf({ model: tiny.dir, out: join(tiny.dir, `model-${dtype}.gguf`), dtype }).file;
});
after(() => {
  if (tiny) rmSync(tiny.dir, { recursive: true, force: true });
});

test("the GGUF header: llama metadata, tokenizer, tensor types, Q/K rows permuted", { skip }, () => {
  for (const [dtype, file] of Object.entries(files)) {
    const g = parseGguf(readFileSync(file!), file!);
    assert.equal(g.version, 3);
    assert.equal(g.kv.get("general.architecture"), "llama");
    assert.equal(g.kv.get("llama.block_count"), 2);
    assert.equal(g.kv.get("llama.attention.head_count_kv"), 2);
    assert.equal(g.kv.get("tokenizer.ggml.model"), "gpt2");
    assert.equal(g.kv.get("tokenizer.ggml.pre"), "dbrx");
    assert.equal((g.kv.get("tokenizer.ggml.tokens") as string[]).length, tiny.config.vocabSize);
    assert.equal(g.kv.get("tokenizer.chat_template"), CHAT_TEMPLATE);
    const q = g.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    assert.deepEqual(q.ne, [64, 64]);
    assert.equal(q.type, dtype === "f32" ? GGML_TYPE.F32 : dtype === "f16" ? GGML_TYPE.F16 : GGML_TYPE.Q8_0);
    assert.equal(g.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.type, GGML_TYPE.F32);
  }
  assert.ok(existsSync(join(tiny.dir, "Modelfile")));
  const mf = readFileSync(join(tiny.dir, "Modelfile"), "utf8");
  assert.match(mf, /^FROM \.\/model-f32\.gguf$/m);
  assert.match(mf, /^PARAMETER stop "<\|im_end\|>"$/m);
});

test("the Q/K permutation turns half-split RoPE into interleaved RoPE (math check)", () => {
  // q·R_half(p)·k equals (Pq)·R_interleaved(p)·(Pk): apply both to random rows.
  const H = 2, D = 8, C = 3;
  const w = Float32Array.from({ length: H * D * C }, (_, i) => Math.sin(i * 1.7) + i / 50);
  const pw = permuteRopeRows(w, H, D, C);
  const x = [0.3, -1.2, 0.7];
  const proj = (m: Float32Array): number[] => Array.from({ length: H * D }, (_, r) => x.reduce((s, xv, c) => s + xv * m[r * C + c], 0));
  const a = proj(w), b = proj(pw);
  const pos = 5, theta = 10000;
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < D / 2; i++) {
      const ang = pos * theta ** ((-2 * i) / D);
      const [x0, x1] = [a[h * D + i], a[h * D + i + D / 2]];
      const [y0, y1] = [b[h * D + 2 * i], b[h * D + 2 * i + 1]];
      assert.equal(y0, x0);
      assert.equal(y1, x1);
      // the rotated pair is the same pair of numbers in both layouts
      assert.ok(Math.abs((x0 * Math.cos(ang) - x1 * Math.sin(ang)) - (y0 * Math.cos(ang) - y1 * Math.sin(ang))) < 1e-12);
    }
  }
});

/** mynah's greedy continuation and the log-softmax rows along it. */
function mynahGreedy(prompt: number[], n: number, dtype: GgufDtype = "f32", forced?: number[], dir = tiny.dir): { ids: number[]; logp: Float64Array[] } {
  const m = loadDecodeModel(dir, undefined, dtype);
  const V = m.config.vocabSize;
  const cache = createCache(m, 1, prompt.length + n + 1);
  let logits = forwardCached(m, cache, [0], [prompt.length], prompt);
  const ids: number[] = [], logp: Float64Array[] = [];
  for (let k = 0; k < n; k++) {
    let mx = -Infinity, arg = 0;
    for (let j = 0; j < V; j++) if (logits[j] > mx) (mx = logits[j]), (arg = j);
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[j] - mx);
    logp.push(Float64Array.from(logits, (v) => v - mx - Math.log(z)));
    const next = forced ? forced[k] : arg;
    ids.push(next);
    logits = forwardCached(m, cache, [0], [1], [next]);
  }
  return { ids, logp };
}

async function llamaRun(file: string, prompt: number[], forced: number[], n: number): Promise<{ greedy: number[]; probs: Map<number, number>[] }> {
  const model = await llama!.loadModel({ modelPath: file });
  // F32 key/value cache (llama.cpp defaults to F16, which alone moves log-probabilities by ~1e-3)
  const ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 1, flashAttention: false, experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" });
  try {
    const seq = ctx.getSequence();
    const greedy: number[] = [];
    for await (const t of seq.evaluate(prompt as never, { temperature: 0 })) {
      greedy.push(t as number);
      if (greedy.length >= n) break;
    }
    await seq.clearHistory();
    const items = [...prompt, ...forced.slice(0, -1)].map((t, i, all) =>
      i >= prompt.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t) as never[];
    const res = await seq.controlledEvaluate(items);
    const probs = res.slice(prompt.length - 1).map((r) => (r as { next: { probabilities: Map<number, number> } }).next.probabilities);
    return { greedy, probs };
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

function maxLogprobDiff(logp: Float64Array[], probs: Map<number, number>[]): number {
  let worst = 0;
  for (let k = 0; k < logp.length; k++) {
    for (const [id, p] of probs[k]) {
      if (p < 1e-4) continue;
      worst = Math.max(worst, Math.abs(Math.log(p) - logp[k][id]));
    }
  }
  return worst;
}

test("llama.cpp loads F32/F16/Q8_0; greedy continuation equals mynah's; log-probabilities agree", { skip, timeout: 300_000 }, async () => {
  const prompt = tiny.tokenizer.encode("ROMEO:\nWhat light through yonder window breaks? 床前明月光，");
  const ours = mynahGreedy(prompt, GREEDY);
  for (const dtype of ["f32", "f16", "q8_0"] as const) {
    const r = await llamaRun(files[dtype]!, prompt, ours.ids, GREEDY);
    const same = r.greedy.findIndex((t, i) => t !== ours.ids[i]);
    const agree = same < 0 ? r.greedy.length : same;
    const diff = maxLogprobDiff(ours.logp, r.probs);
    console.log(`  ${dtype}: llama.cpp greedy equals mynah's (F32) for ${agree}/${GREEDY} tokens; largest |Δ log p| (p ≥ 1e-4) ${diff.toExponential(2)}`);
    assert.equal(r.probs.length, GREEDY);
    if (dtype === "f32") {
      assert.deepEqual(r.greedy, ours.ids, "greedy continuation at F32");
      assert.ok(diff <= LOGPROB_BOUND_F32, `F32 log-probabilities differ by ${diff} > ${LOGPROB_BOUND_F32}`);
    } else {
      assert.ok(diff <= LOGPROB_BOUND[dtype], `${dtype} log-probabilities differ by ${diff} > ${LOGPROB_BOUND[dtype]}`);
      // mynah's own inference with the same storage (--dtype): weights rounded alike; at Q8_0 the
      // activations are rounded to int8 blocks too (float32 scales where llama.cpp keeps F16 ones)
      const own = mynahGreedy(prompt, GREEDY, dtype, ours.ids);
      let worst = 0;
      for (let k = 0; k < GREEDY; k++) for (let j = 0; j < own.logp[k].length; j++) if (Math.exp(ours.logp[k][j]) >= 1e-4) worst = Math.max(worst, Math.abs(own.logp[k][j] - ours.logp[k][j]));
      const ownGreedy = mynahGreedy(prompt, GREEDY, dtype).ids;
      const agreeOwn = ownGreedy.findIndex((t, i) => t !== ours.ids[i]);
      console.log(`  ${dtype}: mynah --dtype ${dtype} greedy equals its F32 for ${agreeOwn < 0 ? GREEDY : agreeOwn}/${GREEDY} tokens; largest |Δ log p| ${worst.toExponential(2)} (llama.cpp ${diff.toExponential(2)})`);
      assert.ok(worst <= LOGPROB_BOUND[dtype], `mynah ${dtype} log-probabilities differ from F32 by ${worst}`);
    }
  }
});

test("QK-norm models export as llama.cpp's qwen3 architecture and decode the same", { skip, timeout: 300_000 }, async () => {
  const q3 = trainTiny({ pattern: CL100K_PATTERN, qkNorm: true, steps: 150 });
  try {
    const r = exportGguf({ model: q3.dir, out: join(q3.dir, "q3.gguf"), dtype: "f32" });
    assert.equal(r.arch, "qwen3");
    const prompt = q3.tokenizer.encode("ROMEO:\nWhat light through yonder window breaks? 床前明月光，");
    const ours = mynahGreedy(prompt, 32, "f32", undefined, q3.dir);
    const l = await llamaRun(r.file, prompt, ours.ids, 32);
    const diff = maxLogprobDiff(ours.logp, l.probs);
    console.log(`  qwen3: llama.cpp greedy equals mynah's for ${l.greedy.filter((t, i) => t === ours.ids[i]).length}/32 tokens; largest |Δ log p| ${diff.toExponential(2)}`);
    assert.deepEqual(l.greedy, ours.ids);
    assert.ok(diff <= LOGPROB_BOUND_F32, `qwen3 F32 log-probabilities differ by ${diff}`);
  } finally {
    rmSync(q3.dir, { recursive: true, force: true });
  }
});

test("chat template: llama.cpp's rendering of a conversation equals mynah's (text and ids)", { skip }, async () => {
  const { resolveChatWrapper, JinjaTemplateChatWrapper } = await import("node-llama-cpp");
  const model = await llama!.loadModel({ modelPath: files.f32! });
  try {
    const msgs: ChatMessage[] = [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Hi, 你好! What is GPT模型?" },
      { role: "assistant", content: "A model. 一个模型。" },
      { role: "user", content: "More" },
    ];
    const history = [
      { type: "system" as const, text: msgs[0].content },
      { type: "user" as const, text: msgs[1].content },
      { type: "model" as const, response: [msgs[2].content] },
      { type: "user" as const, text: msgs[3].content },
      { type: "model" as const, response: [] },
    ];
    const want = renderChatText(msgs, true);
    const wantIds = renderChat(tiny.tokenizer, msgs, { addGenerationPrompt: true }).ids;
    // The GGUF's own tokenizer.chat_template, rendered by node-llama-cpp's Jinja wrapper.
    const tmpl = model.fileInfo.metadata.tokenizer?.chat_template as string;
    const jinja = new JinjaTemplateChatWrapper({ template: tmpl, tokenizer: model.tokenizer });
    const st = jinja.generateContextState({ chatHistory: history });
    assert.equal(st.contextText.toString(), want);
    assert.deepEqual(st.contextText.tokenize(model.tokenizer), wantIds);
    // node-llama-cpp's automatic choice for the file is its ChatML wrapper: the same text
    // after the BOS token it always puts first.
    const auto = resolveChatWrapper(model)!;
    assert.equal(auto.wrapperName, "ChatML");
    const ids = auto.generateContextState({ chatHistory: history }).contextText.tokenize(model.tokenizer);
    assert.equal(ids[0], tiny.tokenizer.special.get("<|endoftext|>"));
    assert.deepEqual(ids.slice(1), wantIds);
  } finally {
    await model.dispose();
  }
});

/** EN/ZH lines from the shared corpora (text and chats). */
function corpusLines(perFile: number): string[] {
  const texts = ["text/tinyshakespeare.txt", "text/fortunes_en.txt", "text/jargon_file.txt", "text/chinese_poetry_classics_zh.txt", "text/fortunes_zh.txt"];
  const chats = ["chat/chatterbot_en.jsonl", "chat/chatterbot_zh.jsonl", "chat/kdconv_zh.jsonl", "chat/crosswoz_zh.jsonl", "chat/lccc_toy_zh.jsonl", "chat/sgd_en.jsonl"];
  const out: string[] = [];
  for (const f of texts) {
    const lines = readFileSync(join(SHARED_DATA, f), "utf8").split("\n").filter((l) => l.trim() !== "");
    const step = Math.max(1, Math.floor(lines.length / perFile));
    for (let i = 0; i < lines.length && out.length < 1e6; i += step) out.push(lines[i]);
  }
  for (const f of chats) {
    const lines = readFileSync(join(SHARED_DATA, f), "utf8").split("\n").filter((l) => l.trim() !== "");
    const step = Math.max(1, Math.floor(lines.length / perFile));
    for (let i = 0; i < lines.length; i += step) {
      for (const m of (JSON.parse(lines[i]) as { messages: { content: string }[] }).messages) out.push(m.content);
    }
  }
  return out;
}

const noShared = existsSync(join(SHARED_DATA, "text")) ? false : `${SHARED_DATA} is absent (the shared EN/ZH corpora)`;

/** Lines where Chinese touches Latin letters, digits and punctuation: where mynah's pattern and GPT-4's differ. */
const MIXED = ["GPT模型很强大", "我们用PyTorch训练", "版本v2发布了2024年", "，模型GPT-4o也可以。", "Hello你好world世界", " 中文 English 混合 text，标点！"];

test("tokenizer: llama.cpp's ids equal mynah's for every --pattern; mismatch of mynah's pattern under each llama.cpp pre-tokenizer", { skip: skip || noShared, timeout: 300_000 }, async () => {
  const lines = [...corpusLines(120), ...MIXED];
  const cases = [
    { name: "cl100k", pattern: CL100K_PATTERN, whole: false, pres: ["dbrx"] },
    { name: "llama3", pattern: CL100K_PATTERN, whole: true, pres: ["llama-bpe"] },
    { name: "qwen2", pattern: QWEN2_PATTERN, whole: false, pres: ["qwen2"] },
    { name: "gpt2", pattern: GPT2_PATTERN, whole: false, pres: ["gpt-2"] },
    // mynah's own pattern: the automatic choice (dbrx) first, then the other presets via --pre
    { name: "mynah", pattern: MYNAH_PATTERN, whole: false, pres: ["dbrx", "llama-bpe", "qwen2", "gpt-2"] },
  ];
  for (const c of cases) {
    const t = trainTiny({ pattern: c.pattern, wholePieces: c.whole, steps: 0, vocabSize: 2048 });
    try {
      for (const [k, pre] of c.pres.entries()) {
        const file = exportGguf({ model: t.dir, out: join(t.dir, "m.gguf"), dtype: "f32", pre: k === 0 ? undefined : pre }).file;
        assert.equal(parseGguf(readFileSync(file), file).kv.get("tokenizer.ggml.pre"), pre);
        const model = await llama!.loadModel({ modelPath: file, vocabOnly: true });
        let differ = 0, first = "";
        for (const line of lines) {
          const a = t.tokenizer.encodeOrdinary(line);
          const b = model.tokenize(line, false);
          if (a.length !== b.length || a.some((x, i) => x !== b[i])) {
            differ++;
            first ||= line;
          }
        }
        await model.dispose();
        // the same figure from mynah's simulation of llama.cpp's split (what `mynah export --check-text` prints)
        const sim = preMismatch(t.tokenizer, pre as never, lines);
        console.log(`  --pattern ${c.name} as ${pre}: llama.cpp differs from mynah on ${differ} of ${lines.length} EN/ZH lines ` +
          `(${((100 * differ) / lines.length).toFixed(2)}%); mynah's simulation of it: ${sim.differ}`);
        // Exact presets, and mynah's pattern under the GPT-4 regex (which only joins what mynah
        // splits; its vocabulary has merges across such joins only by byte coincidence): no difference.
        if (k === 0) {
          assert.equal(differ, 0, `first differing line: ${JSON.stringify(first)}`);
          assert.equal(sim.differ, differ, "the export's simulated mismatch equals llama.cpp's");
        }
      }
    } finally {
      rmSync(t.dir, { recursive: true, force: true });
    }
  }
});

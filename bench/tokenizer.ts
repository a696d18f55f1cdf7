/**
 * Tokenizer benchmarks, each beside its peer:
 *  - training: time and peak memory (each run in a fresh process) for mynah at 8,192 / 30,000
 *    / 32,768 tokens vs the `tokenizers` npm package (Hugging Face's Rust trainer, native, at
 *    its default trainer: 30,000 tokens), on the same text: every file under ../shared/data/text
 *    and ../shared/data/chat, JSONL reduced to its texts, written to one temporary file;
 *  - encoding throughput with cl100k_base on each shared file, fresh tokenizer (cold cache):
 *    mynah on one thread, mynah on all cores, and `tiktoken` (npm, WASM);
 *  - compression (UTF-8 bytes per token) on held-out text (the last 10% of each file's
 *    documents, the tokenizer trained on the first 90%) vs cl100k_base, English and Chinese.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { loadTokenizer, trainBpe } from "../src/tokenizer/index.ts";
import { readFiles } from "../src/data/readers.ts";
import { docTexts } from "../src/data/records.ts";
import { trainTokenizerOnInputs } from "../src/data/train-tokenizer.ts";
import { EncoderPool, encodeLargeText } from "../src/tokenizer/parallel.ts";

const here = dirname(fileURLToPath(import.meta.url));
const DATA = process.env.MYNAH_SHARED_DATA ?? join(here, "..", "..", "shared", "data");
const require = createRequire(import.meta.url);

/** Child-process mode: train once and print {seconds, peakMB, vocab} as JSON. */
async function child(kind: string, vocab: number, file: string): Promise<void> {
  const t0 = performance.now();
  let size: number;
  if (kind === "mynah") {
    size = (await trainTokenizerOnInputs({ inputs: [file], train: { vocabSize: vocab } })).tokenizer.vocabSize; // what `mynah tokenizer train` runs
  } else {
    const hf = await import("tokenizers");
    const tok = new hf.Tokenizer(hf.BPE.empty());
    tok.setPreTokenizer(hf.byteLevelPreTokenizer(false, true));
    tok.train([file]);
    size = tok.getVocabSize();
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, peakMB: process.resourceUsage().maxRSS / 1024, vocab: size }));
}

function corpusFiles(): { path: string; lang: "en" | "zh" }[] {
  return ["text", "chat"].flatMap((d) =>
    readdirSync(join(DATA, d))
      .sort()
      .map((f) => ({ path: join(DATA, d, f), lang: /_zh\b|chinese/.test(f) ? ("zh" as const) : ("en" as const) })),
  );
}

function trainChild(kind: string, vocab: number, file: string): { seconds: number; peakMB: number; vocab: number } {
  const out = execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", kind, String(vocab), file], {
    encoding: "utf8",
    env: { ...process.env, RAYON_NUM_THREADS: String(availableParallelism()) },
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}

const fmt = (x: number, d = 1): string => x.toFixed(d);

export async function run(): Promise<unknown> {
  if (!existsSync(join(DATA, "text"))) {
    console.log(`tokenizer bench skipped: shared corpora not found at ${DATA}`);
    return { skipped: `no ${DATA}` };
  }
  const files = corpusFiles();
  const machine = `${cpus()[0]?.model ?? "?"}, ${availableParallelism()} cores`;
  console.log(`machine: ${machine}`);
  const tmp = mkdtempSync(join(tmpdir(), "mynah-tokbench-"));
  try {
    // ---- texts: all, and the 90/10 split by document
    const all: string[] = [];
    const train: string[] = [];
    const held = { en: [] as string[], zh: [] as string[] };
    for (const f of files) {
      const docs: string[] = [];
      // Documents as mynah reads them: blank-line paragraphs of text files, each message of a conversation.
      for await (const d of readFiles([f.path])) docs.push(...docTexts(d));
      const cut = Math.floor(docs.length * 0.9);
      all.push(...docs);
      train.push(...docs.slice(0, cut));
      held[f.lang].push(...docs.slice(cut));
    }
    const allFile = join(tmp, "all.txt");
    writeFileSync(allFile, all.join("\n"));
    const mb = Buffer.byteLength(readFileSync(allFile)) / 1e6;

    // ---- training
    console.log(`\ntraining on ${fmt(mb)} MB of text (${files.length} files), each run in a fresh process`);
    const rows: { who: string; vocab: number; seconds: number; peakMB: number }[] = [];
    for (const v of [8192, 30000, 32768]) rows.push({ who: "mynah", ...trainChild("mynah", v, allFile) });
    let hf: { seconds: number; peakMB: number; vocab: number } | null = null;
    try {
      require.resolve("tokenizers");
      hf = trainChild("hf", 30000, allFile);
      rows.push({ who: "tokenizers (npm, Rust)", ...hf });
    } catch (err) {
      console.log(`tokenizers npm package unavailable: ${(err as Error).message.split("\n")[0]}`);
    }
    console.log("| trainer | vocab | seconds | peak RSS MB |\n|---|---|---|---|");
    for (const r of rows) console.log(`| ${r.who} | ${r.vocab} | ${fmt(r.seconds)} | ${fmt(r.peakMB, 0)} |`);
    const mine30 = rows.find((r) => r.who === "mynah" && r.vocab === 30000)!;
    if (hf) console.log(`mynah / tokenizers time at 30,000 tokens: ${fmt(mine30.seconds / hf.seconds, 2)}× (target ≤ 2×)`);

    // ---- encoding throughput, cl100k_base, cold start per implementation
    const encJson = join(dirname(require.resolve("tiktoken")), "encoders", "cl100k_base.json");
    const texts = files.map((f) => readFileSync(f.path, "utf8"));
    const bytes = texts.reduce((s, t) => s + Buffer.byteLength(t), 0) / 1e6;
    const mine = loadTokenizer(encJson);
    let t0 = performance.now();
    let nMine = 0;
    for (const t of texts) nMine += mine.encodeOrdinary(t).length;
    const sMine = (performance.now() - t0) / 1000;
    const cold = loadTokenizer(encJson);
    t0 = performance.now();
    const pool = new EncoderPool(cold.spec);
    const parIds = await Promise.all(texts.map((t) => encodeLargeText(cold, t, { pool })));
    const sPar = (performance.now() - t0) / 1000;
    await pool.close();
    const nPar = parIds.reduce((s, ids) => s + ids.length, 0);
    const { get_encoding } = await import("tiktoken");
    const ref = get_encoding("cl100k_base");

    // long single pieces: a run of n spaces is one pre-split piece; BPE cost vs n
    console.log(`\nlong runs of spaces with cl100k_base (one piece each): milliseconds`);
    console.log("| n | mynah | tiktoken |\n|---|---|---|");
    const runs: { n: number; mynahMs: number; tiktokenMs: number }[] = [];
    for (const n of [10_000, 30_000, 100_000]) {
      const sp = " ".repeat(n);
      const fresh = loadTokenizer(encJson);
      let t = performance.now();
      fresh.encodeOrdinary(sp);
      const mynahMs = performance.now() - t;
      t = performance.now();
      ref.encode_ordinary(sp);
      const tiktokenMs = performance.now() - t;
      runs.push({ n, mynahMs, tiktokenMs });
      console.log(`| ${n} | ${fmt(mynahMs, 0)} | ${fmt(tiktokenMs, 0)} |`);
    }

    t0 = performance.now();
    let nRef = 0;
    for (const t of texts) nRef += ref.encode_ordinary(t).length;
    const sRef = (performance.now() - t0) / 1000;
    ref.free();
    if (nMine !== nRef || nPar !== nRef) throw new Error(`token counts differ: mynah ${nMine}, parallel ${nPar}, tiktoken ${nRef}`);
    console.log(`\nencoding ${fmt(bytes)} MB with cl100k_base (${nRef} tokens; identical ids checked by npm test)`);
    console.log("| encoder | seconds | MB/s | vs tiktoken |\n|---|---|---|---|");
    const enc = [
      { who: "mynah, 1 thread", s: sMine },
      { who: `mynah, ${availableParallelism()} workers (incl. start-up)`, s: sPar },
      { who: "tiktoken (npm, WASM)", s: sRef },
    ];
    for (const e of enc) console.log(`| ${e.who} | ${fmt(e.s, 2)} | ${fmt(bytes / e.s)} | ${fmt(sRef / e.s, 2)}× |`);

    // ---- compression on held-out text
    const trained = trainBpe(train, { vocabSize: 32768 });
    const comp: Record<string, { mynah: number; cl100k: number; bytes: number }> = {};
    console.log(`\ncompression on held-out text (last 10% of each file's documents; mynah trained on the rest, 32,768 tokens)`);
    console.log("| text | MB | mynah 32k bytes/token | cl100k_base bytes/token |\n|---|---|---|---|");
    for (const lang of ["en", "zh"] as const) {
      const text = held[lang].join("\n");
      const b = Buffer.byteLength(text);
      comp[lang] = { bytes: b, mynah: b / trained.encodeOrdinary(text).length, cl100k: b / mine.encodeOrdinary(text).length };
      console.log(`| ${lang === "en" ? "English" : "Chinese"} | ${fmt(b / 1e6, 2)} | ${fmt(comp[lang].mynah, 2)} | ${fmt(comp[lang].cl100k, 2)} |`);
    }
    return {
      machine,
      trainMB: mb,
      training: rows,
      longRuns: runs,
      encoding: { MB: bytes, tokens: nRef, ...Object.fromEntries(enc.map((e) => [e.who, { seconds: e.s, MBps: bytes / e.s }])) },
      compression: comp,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === "--child") {
  await child(process.argv[3], Number(process.argv[4]), process.argv[5]);
}

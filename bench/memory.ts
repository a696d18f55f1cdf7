/**
 * Memory (issue 14): `mynah train` on tinyshakespeare with the "shakespeare" preset
 * (B 64, T 256), with and without --recompute, side by side in one run, each in its own
 * process: peak RSS (getrusage, from metrics.jsonl), the start-up estimate, and step time.
 * Activation memory measured = peak RSS − everything else the estimate counts (parameters,
 * gradients, optimizer state, logits, the process before the model), i.e. what the run
 * really added for activations. Step time: the median of the steps after the first (several
 * steps, so one step slowed by another process does not decide it); the time cost of
 * --recompute is the median over the interleaved rounds of each round's ratio (the two runs of
 * a round see the same machine load), each side's figures from its fastest round.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const SHAKESPEARE = join(root, "..", "shared", "data", "text", "tinyshakespeare.txt");
const STEPS = Number(process.env.MYNAH_BENCH_MEMORY_STEPS ?? 8);
/** Rounds of (keep, recompute), interleaved (a shared machine). */
const ROUNDS = Number(process.env.MYNAH_BENCH_MEMORY_ROUNDS ?? 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const args = ["train", "--data", SHAKESPEARE, "--preset", "shakespeare", "--batch-size", "64", "--seq-len", "256",
  "--steps", String(STEPS), "--eval-every", "0", "--eval-batches", "0", "--checkpoint-every", "0", "--log-every", "1"];

interface Side { recompute: boolean; peakRssMB: number; estimateMB: number; othersMB: number; activationsMB: number; activationsEstMB: number; msPerStep: number }

function side(recompute: boolean, dir: string): Side {
  const out = join(dir, recompute ? "recompute" : "keep");
  const p = spawnSync(process.execPath, ["--import", "tsx", "-e",
    `import(${JSON.stringify(join(root, "src/cli/main.ts"))}).then((m) => m.main(["node", "mynah", ...${JSON.stringify([...args, "--out", out, ...(recompute ? ["--recompute"] : [])])}]))`],
    { cwd: root, encoding: "utf8", maxBuffer: 1 << 26 });
  if (p.status !== 0) throw new Error(`mynah train failed: ${p.stderr}`);
  const m = /memory: estimated peak (.*)/.exec(p.stdout)![1];
  const total = /^([\d.]+) (MB|GB)/.exec(m)!;
  const mb = (name: string): number => {
    const x = new RegExp(`${name} ([\\d.]+) (MB|GB)`).exec(m);
    return x ? Number(x[1]) * (x[2] === "GB" ? 1024 : 1) : 0;
  };
  const steps = readFileSync(join(out, "metrics.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l))
    .filter((o) => o.type === "step") as { ms: number; peakRssMB: number }[];
  const peak = Math.max(...steps.map((s) => s.peakRssMB));
  const others = mb("parameters") + mb("gradients") + mb("optimizer state") + mb("logits") + mb("runtime and data");
  const later = steps.slice(1);
  return {
    recompute, peakRssMB: peak, estimateMB: Number(total[1]) * (total[2] === "GB" ? 1024 : 1), othersMB: others, activationsMB: peak - others,
    activationsEstMB: mb("activations"), msPerStep: median(later.map((s) => s.ms)),
  };
}

export async function run(): Promise<unknown> {
  if (!existsSync(SHAKESPEARE)) {
    console.log(`skipped: ${SHAKESPEARE} is missing`);
    return { skipped: true };
  }
  const dir = mkdtempSync(join(tmpdir(), "mynah-bench-memory-"));
  try {
    console.log(`mynah ${args.join(" ").replace(SHAKESPEARE, "../shared/data/text/tinyshakespeare.txt")} [--recompute], ${ROUNDS} interleaved rounds   (threads: ${process.env.MYNAH_THREADS ?? "all"}; machine shared)`);
    let keep: Side | null = null, redo: Side | null = null;
    const best = (a: Side | null, b: Side): Side => (a && a.msPerStep <= b.msPerStep ? a : b);
    const ratios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const k = side(false, join(dir, String(r))), d = side(true, join(dir, String(r)));
      keep = best(keep, k);
      redo = best(redo, d);
      ratios.push(d.msPerStep / k.msPerStep);
      console.log(`  round ${r + 1}: keep ${k.msPerStep.toFixed(0)}, --recompute ${d.msPerStep.toFixed(0)} ms/step (median of ${STEPS - 1} steps): ${(100 * (ratios[r] - 1)).toFixed(0)} % more time`);
    }
    if (!keep || !redo) throw new Error("MYNAH_BENCH_MEMORY_ROUNDS must be ≥ 1");
    const row = (s: Side): string => `${(s.recompute ? "--recompute" : "keep all").padEnd(12)} ${s.peakRssMB.toFixed(0).padStart(8)} ` +
      `${s.estimateMB.toFixed(0).padStart(9)} ${s.activationsMB.toFixed(0).padStart(12)} ${s.activationsEstMB.toFixed(0).padStart(12)} ${s.msPerStep.toFixed(0).padStart(9)}`;
    console.log(`${"".padEnd(12)} ${"peak RSS".padStart(8)} ${"estimate".padStart(9)} ${"activations".padStart(12)} ${"(estimated)".padStart(12)} ${"ms/step".padStart(9)}  (MiB)`);
    console.log(row(keep));
    console.log(row(redo));
    const actRatio = keep.activationsMB / redo.activationsMB, timeRatio = median(ratios);
    console.log(`--recompute: ${actRatio.toFixed(2)}× less activation memory, ${(keep.peakRssMB / redo.peakRssMB).toFixed(2)}× less peak RSS, ` +
      `${(100 * (timeRatio - 1)).toFixed(0)} % more time per step (median of ${ROUNDS} rounds' ratios: ${ratios.map((x) => `${(100 * (x - 1)).toFixed(0)} %`).join(", ")}; target ≤ 25 %: ${timeRatio <= 1.25 ? "met" : "not met"})`);
    // The command as a user types it from the repository (no machine-specific absolute path).
    const shown = args.map((a) => (a === SHAKESPEARE ? "../shared/data/text/tinyshakespeare.txt" : a));
    return { command: ["mynah", ...shown, "[--recompute]"], threads: process.env.MYNAH_THREADS ?? "all", machine: "shared", keep, recompute: redo, activationRatio: actRatio, peakRatio: keep.peakRssMB / redo.peakRssMB, timeRatio, roundRatios: ratios, steps: STEPS, loadAverage: loadavg() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

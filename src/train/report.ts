/**
 * Progress output for training runs: a live, rewritten line on a terminal; plain lines every
 * `every` steps otherwise (logs, CI); every step's metrics appended to a JSONL file.
 */
import { appendFileSync } from "node:fs";
import { cpus, hostname } from "node:os";
import { loadNative } from "../core/native.ts";
import type { StepMetrics } from "./loop.ts";
import type { EvalResult } from "./eval.ts";

export interface Reporter {
  step(m: StepMetrics, totalSteps: number): void;
  eval(step: number, r: EvalResult): void;
  sample(step: number, text: string): void;
  /** The run's start: command line, machine, threads and `info` (parameters, kind), as a "run" record for `mynah report`. */
  run(info: Record<string, unknown>): void;
  /** A message on its own line (ends any live line first). */
  note(text: string): void;
  /** Ends a live line. */
  done(): void;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function formatRate(x: number): string {
  return x >= 1e4 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}

/** MiB as "850 MB" or "2.9 GB" (1 GB = 1024 MiB, as the kernel counts). */
export function formatMiB(mb: number): string {
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

/**
 * `show`: objective metrics (StepMetrics.extra, EvalResult.extra) shown on the progress line
 * under a short label, e.g. {"rewards/accuracies": "acc"}; all of them go to metrics.jsonl.
 */
export function createReporter(opts: { write: (s: string) => void; tty: boolean; every: number; jsonl?: string; show?: Record<string, string> }): Reporter {
  const shown = (x: Record<string, number | null> | undefined): string =>
    Object.entries(opts.show ?? {}).filter(([k]) => typeof x?.[k] === "number").map(([k, label]) => ` | ${label} ${x![k]!.toFixed(3)}`).join("");
  let live = false;
  const line = (s: string): void => {
    if (live) opts.write("\n");
    live = false;
    opts.write(s + "\n");
  };
  const log = (o: Record<string, unknown>): void => {
    if (opts.jsonl) appendFileSync(opts.jsonl, JSON.stringify({ time: new Date().toISOString(), ...o }) + "\n");
  };
  return {
    step(m, total) {
      const { extra, ...rest } = m;
      log({ type: "step", ...rest, ...extra });
      const text = `step ${m.step}/${total} | loss ${m.loss.toFixed(4)}${shown(extra)} | lr ${m.lr.toExponential(2)} | ` +
        `${formatRate(m.tokensPerSec)} tok/s | ${m.ms.toFixed(0)} ms/step` + (m.precision === "bf16" ? " | bf16" : "") +
        (m.mfu !== null ? ` | MFU ${(100 * m.mfu).toFixed(1)}%` : "") + ` | peak RSS ${formatMiB(m.peakRssMB)} | ETA ${formatDuration(m.etaSec)}`;
      if (opts.tty) {
        opts.write(`\r\x1b[2K${text}`);
        live = true;
      } else if (m.step % opts.every === 0 || m.step === total || m.step === 1) line(text);
    },
    eval(step, r) {
      log({ type: "eval", step, valLoss: r.loss, valBpb: r.bpb, tokens: r.tokens, ...r.extra });
      line(`step ${step} | val loss ${r.loss.toFixed(4)}` + (r.bpb !== null ? ` | val bpb ${r.bpb.toFixed(4)}` : "") + shown(r.extra));
    },
    sample(step, text) {
      log({ type: "sample", step, text });
      line(`--- sample at step ${step} ---\n${text}\n---`);
    },
    run(info) {
      log({ type: "run", argv: process.argv.slice(1), cwd: process.cwd(), ...machineRecord(), ...info });
    },
    note: (t) => line(t),
    done() {
      if (live) opts.write("\n");
      live = false;
    },
  };
}

/** The machine a run is on: host, CPU model, CPUs and compute threads, SIMD level of the kernels. */
export function machineRecord(): Record<string, unknown> {
  const m: Record<string, unknown> = { host: hostname(), cpuModel: cpus()[0]?.model ?? "?", node: process.version };
  try {
    const a = loadNative();
    Object.assign(m, { cpus: a.cpus(), threads: a.threads(), simd: a.simd() });
  } catch {
    Object.assign(m, { cpus: cpus().length, threads: 1, simd: "reference" });
  }
  return m;
}

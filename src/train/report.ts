/**
 * Progress output for training runs: a live, rewritten line on a terminal; plain lines every
 * `every` steps otherwise (logs, CI); every step's metrics appended to a JSONL file.
 */
import { appendFileSync } from "node:fs";
import type { StepMetrics } from "./loop.ts";
import type { EvalResult } from "./eval.ts";

export interface Reporter {
  step(m: StepMetrics, totalSteps: number): void;
  eval(step: number, r: EvalResult): void;
  sample(step: number, text: string): void;
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

export function createReporter(opts: { write: (s: string) => void; tty: boolean; every: number; jsonl?: string }): Reporter {
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
      log({ type: "step", ...m });
      const text = `step ${m.step}/${total} | loss ${m.loss.toFixed(4)} | lr ${m.lr.toExponential(2)} | ` +
        `${formatRate(m.tokensPerSec)} tok/s | ${m.ms.toFixed(0)} ms/step` +
        (m.mfu !== null ? ` | MFU ${(100 * m.mfu).toFixed(1)}%` : "") + ` | peak RSS ${formatMiB(m.peakRssMB)} | ETA ${formatDuration(m.etaSec)}`;
      if (opts.tty) {
        opts.write(`\r\x1b[2K${text}`);
        live = true;
      } else if (m.step % opts.every === 0 || m.step === total || m.step === 1) line(text);
    },
    eval(step, r) {
      log({ type: "eval", step, valLoss: r.loss, valBpb: r.bpb, tokens: r.tokens });
      line(`step ${step} | val loss ${r.loss.toFixed(4)}` + (r.bpb !== null ? ` | val bpb ${r.bpb.toFixed(4)}` : ""));
    },
    sample(step, text) {
      log({ type: "sample", step, text });
      line(`--- sample at step ${step} ---\n${text}\n---`);
    },
    note: (t) => line(t),
    done() {
      if (live) opts.write("\n");
      live = false;
    },
  };
}

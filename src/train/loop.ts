/**
 * The training loop, shared by pretraining (`mynah train`) and SFT: it takes a model, a
 * BatchSource, options and hooks, and returns when the steps are done or when `signal`
 * aborts (after a final checkpoint) — it never exits the process.
 *
 * One optimizer step: zero the gradients; gradAccum micro-batches of [B, T], each adding
 * ∂(loss / gradAccum)/∂θ; clip to a global norm; optimizer update at lr × schedule(step).
 * Every evalEvery steps: validation loss (and bits per byte); every sampleEvery: a sample;
 * every checkpointEvery: a checkpoint. Determinism: given the same weights, optimizer state,
 * data position and step, the next steps' losses are identical — which is what --resume uses.
 */
import { setImmediate as yieldToEvents } from "node:timers/promises";
import { seededRng, type RngState } from "../core/rng.ts";
import type { StoredTensor } from "../core/safetensors.ts";
import type { Batch, BatchSource } from "../data/types.ts";
import { flopsPerToken } from "../model/config.ts";
import type { GPT, Precision } from "../model/gpt.ts";
import type { EvalResult } from "./eval.ts";
import { clipGradNorm, createOptimizer, type Optimizer, type OptimizerOptions } from "./optim.ts";
import { lrMultiplier, type ScheduleKind } from "./schedule.ts";

export interface LoopOptions {
  /** Total optimizer steps of the run (a resumed run continues to the same total). */
  steps: number;
  batchSize: number;
  seqLen: number;
  gradAccum: number;
  schedule: ScheduleKind;
  warmup: number;
  /** minLr / lr at the end of the schedule. */
  minLrRatio: number;
  optimizer: OptimizerOptions;
  /** Global gradient-norm limit (≤ 0: no clipping). */
  clip: number;
  evalEvery: number;
  sampleEvery: number;
  /** 0: only at the end (and when stopped). */
  checkpointEvery: number;
  seed: number;
  /** Machine peak FLOP/s for MFU (0: not reported): the bf16 peak when precision is bf16. */
  peakFlops: number;
  /** The GEMMs' operand precision (the model's; reported with each step). Default fp32. */
  precision?: Precision;
}

export interface StepMetrics {
  step: number;
  /** Objective-specific metrics averaged over the step's micro-batches (DPO: rewards/…). */
  extra?: Record<string, number>;
  /** Mean loss over the step's micro-batches. */
  loss: number;
  lr: number;
  gradNorm: number;
  ms: number;
  tokensPerSec: number;
  /** Model FLOPs utilization: flopsPerToken · tokens/s / peak (null without a peak). */
  mfu: number | null;
  tokens: number;
  /** Estimated seconds to the end. */
  etaSec: number;
  /** Peak resident memory of the process so far (getrusage maxrss), in MiB. */
  peakRssMB: number;
  /** GEMM operand precision (fp32, bf16). */
  precision?: Precision;
}

/** Peak resident set size of this process so far, in MiB (the kernel's high-water mark). */
export function peakRssMB(): number {
  return process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB
}

/** What a checkpoint needs from the loop. */
export interface LoopSnapshot {
  step: number;
  tokens: number;
  optimizer: Optimizer;
  rng: RngState;
  data: unknown;
}

/** What one micro-batch's objective reports. */
export interface MicroStep {
  /** The micro-batch's loss (its gradient was added into model.grads). */
  loss: number;
  /** Tokens the forward ran on. */
  tokens: number;
  metrics?: Record<string, number>;
}

/**
 * A training objective: forward and backward of one micro-batch, adding ∂loss/∂θ into
 * model.grads. The default is next-token cross-entropy (pretraining, SFT); DPO passes its own.
 */
export type Objective = (model: GPT, batch: Batch, B: number, T: number) => MicroStep;

export const crossEntropyObjective: Objective = (model, { inputs, targets }, B, T) => {
  const loss = model.forward(inputs, targets, B, T);
  model.backward();
  return { loss, tokens: B * T };
};

export interface LoopHooks {
  /** The micro-batch objective (default crossEntropyObjective). */
  objective?: Objective;
  /** Validation; called every evalEvery steps and at the end. */
  evaluate?(model: GPT): EvalResult;
  /** A sample of text (the rng is the loop's, saved in checkpoints). */
  sample?(model: GPT, rng: ReturnType<typeof seededRng>): string;
  onStep?(m: StepMetrics): void;
  onEval?(step: number, r: EvalResult): void;
  onSample?(step: number, text: string): void;
  /** Writes a checkpoint. */
  save?(s: LoopSnapshot): void;
  /** Aborting stops after the current step, with a checkpoint. */
  signal?: AbortSignal;
}

/** Where a resumed run starts. */
export interface ResumeFrom {
  step: number;
  tokens: number;
  optimizer: Map<string, StoredTensor>;
  rng: RngState | null;
  data: unknown;
  file: string;
}

export interface LoopResult {
  status: "done" | "stopped";
  step: number;
  tokens: number;
  lastLoss: number;
  lastEval: EvalResult | null;
}

export async function trainLoop(model: GPT, source: BatchSource, o: LoopOptions, hooks: LoopHooks = {},
                                resume?: ResumeFrom): Promise<LoopResult> {
  const be = model.backend;
  const { batchSize: B, seqLen: T, gradAccum: A } = o;
  const optimizer = createOptimizer(be, model.params, o.optimizer);
  const rng = seededRng(o.seed ^ 0x5a17);
  const objective = hooks.objective ?? crossEntropyObjective;
  let step = 0, tokens = 0;
  if (resume) {
    optimizer.loadState(resume.optimizer, resume.step, resume.file);
    if (resume.rng) rng.restore(resume.rng);
    source.restore(resume.data);
    step = resume.step;
    tokens = resume.tokens;
  }
  const snapshot = (): LoopSnapshot => ({ step, tokens, optimizer, rng: rng.state(), data: source.state() });
  const fpt = flopsPerToken(model.config, T);
  const sched = { kind: o.schedule, steps: o.steps, warmup: o.warmup, minRatio: o.minLrRatio };
  let lastLoss = NaN, lastEval: EvalResult | null = null, avgMs = 0, savedStep = step;
  const firstStep = step;
  const save = (): void => {
    if (!hooks.save || savedStep === step) return;
    hooks.save(snapshot());
    savedStep = step;
  };

  while (step < o.steps) {
    if (hooks.signal?.aborted) break;
    const t0 = performance.now();
    model.zeroGrad();
    let lossSum = 0, stepTokens = 0;
    let extra: Record<string, number> | undefined;
    for (let a = 0; a < A; a++) {
      const r = objective(model, source.nextBatch(B, T), B, T);
      lossSum += r.loss;
      stepTokens += r.tokens;
      if (r.metrics) {
        extra ??= {};
        for (const [k, v] of Object.entries(r.metrics)) extra[k] = (extra[k] ?? 0) + v / A;
      }
    }
    // Each micro-batch's gradient is of its mean loss: average them.
    if (A > 1) be.scale(model.grads.data, model.grads.data.length, 1 / A);
    const gradNorm = clipGradNorm(be, model.grads, o.clip);
    const mult = lrMultiplier(sched, step);
    optimizer.step(model.params, model.grads, mult);
    step++;
    tokens += stepTokens;
    lastLoss = lossSum / A;
    const ms = performance.now() - t0;
    // Exponential average of step time for the ETA (the first steps are slower: warm caches).
    avgMs = step - firstStep === 1 ? ms : 0.9 * avgMs + 0.1 * ms;
    const tps = (stepTokens * 1000) / ms;
    hooks.onStep?.({
      step, ...(extra ? { extra } : {}), loss: lastLoss, lr: o.optimizer.lr * mult, gradNorm, ms, tokensPerSec: tps,
      mfu: o.peakFlops > 0 ? (fpt * tps) / o.peakFlops : null, tokens, etaSec: ((o.steps - step) * avgMs) / 1000,
      peakRssMB: Math.round(peakRssMB()), precision: o.precision ?? "fp32",
    });
    if (!Number.isFinite(lastLoss)) throw new Error(`training diverged: loss ${lastLoss} at step ${step} (try a lower --lr or --clip 1)`);
    const last = step === o.steps;
    if (hooks.evaluate && ((o.evalEvery > 0 && step % o.evalEvery === 0) || last)) {
      lastEval = hooks.evaluate(model);
      hooks.onEval?.(step, lastEval);
    }
    if (hooks.sample && o.sampleEvery > 0 && (step % o.sampleEvery === 0 || last)) hooks.onSample?.(step, hooks.sample(model, rng));
    if ((o.checkpointEvery > 0 && step % o.checkpointEvery === 0) || last) save();
    // Let signal handlers (Ctrl-C) run between steps.
    await yieldToEvents();
  }
  if (step < o.steps) {
    save();
    return { status: "stopped", step, tokens, lastLoss, lastEval };
  }
  return { status: "done", step, tokens, lastLoss, lastEval };
}

/**
 * The optimizer: AdamW on every tensor by default; with "muon", Muon on the 2-D hidden
 * matrices (attention and MLP projections) and AdamW on the embeddings, lm_head and norm gains
 * (Muon orthogonalizes an update matrix, which suits hidden linear maps but not lookup tables
 * or gains — Keller Jordan's recipe). Weight decay applies to matrices and embeddings, never
 * to norm gains. State is one buffer per moment in the parameters' layout, saved by name.
 */
import type { Backend } from "../core/backend.ts";
import { createParams, type ParamSet, type ParamSpec } from "../model/params.ts";
import type { StoredTensor } from "../core/safetensors.ts";

export type OptimizerKind = "adamw" | "muon";

export interface OptimizerOptions {
  kind: OptimizerKind;
  /** Peak AdamW learning rate. */
  lr: number;
  /** Peak Muon learning rate (muon only). */
  muonLr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Muon momentum β and Newton–Schulz iterations. */
  muonBeta: number;
  nsSteps: number;
}

export const DEFAULT_OPTIMIZER: OptimizerOptions = {
  kind: "adamw", lr: 1e-3, muonLr: 0.02, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, muonBeta: 0.95, nsSteps: 5,
};

export interface Optimizer {
  readonly options: OptimizerOptions;
  /** Optimizer steps taken (AdamW's bias correction counts from 1). */
  readonly steps: number;
  /** Applies one update from `grads` with the schedule's multiplier on both learning rates. */
  step(params: ParamSet, grads: ParamSet, lrMult: number): void;
  /** State tensors by name: exp_avg.<p>, exp_avg_sq.<p> (AdamW), momentum_buffer.<p> (Muon). */
  stateTensors(): [string, { shape: number[]; data: Float32Array }][];
  /** Restores from tensors as stateTensors() names them; `file` names errors. */
  loadState(tensors: Map<string, StoredTensor>, steps: number, file: string): void;
}

/** Which tensors Muon takes. */
export function usesMuon(o: OptimizerOptions, s: ParamSpec): boolean {
  return o.kind === "muon" && s.kind === "matrix";
}

export function createOptimizer(be: Backend, params: ParamSet, options: OptimizerOptions): Optimizer {
  const m = createParams(params.config), v = createParams(params.config);
  let steps = 0;
  const o = options;
  // The update as runs: each Muon matrix alone; neighbouring AdamW tensors with the same
  // weight decay merged into one range of the buffer.
  const runs: { muon?: ParamSpec; begin: number; end: number; decay: boolean }[] = [];
  for (const s of params.specs) {
    if (usesMuon(o, s)) {
      runs.push({ muon: s, begin: s.offset, end: s.offset + s.size, decay: true });
      continue;
    }
    const decay = s.kind !== "norm", last = runs[runs.length - 1];
    if (last && !last.muon && last.decay === decay) last.end = s.offset + s.size;
    else runs.push({ begin: s.offset, end: s.offset + s.size, decay });
  }
  return {
    options,
    get steps() { return steps; },
    step(p: ParamSet, g: ParamSet, mult: number): void {
      steps++;
      for (const r of runs) {
        if (r.muon) {
          const s = r.muon;
          be.muon(p.get(s.name), g.get(s.name), m.get(s.name), s.shape[0], s.shape[1], o.muonLr * mult, o.muonBeta, o.weightDecay, o.nsSteps);
        } else {
          // One AdamW call over a contiguous range of tensors (padding between them is zero
          // in params, grads and moments, and stays zero).
          const a = r.begin, b = r.end;
          be.adamw(p.data.subarray(a, b), g.data.subarray(a, b), m.data.subarray(a, b), v.data.subarray(a, b), b - a,
                   o.lr * mult, o.beta1, o.beta2, o.eps, r.decay ? o.weightDecay : 0, steps);
        }
      }
    },
    stateTensors() {
      const out: [string, { shape: number[]; data: Float32Array }][] = [];
      for (const s of params.specs) {
        if (usesMuon(o, s)) out.push([`momentum_buffer.${s.name}`, { shape: s.shape, data: m.get(s.name) }]);
        else {
          out.push([`exp_avg.${s.name}`, { shape: s.shape, data: m.get(s.name) }]);
          out.push([`exp_avg_sq.${s.name}`, { shape: s.shape, data: v.get(s.name) }]);
        }
      }
      return out;
    },
    loadState(tensors, n, file) {
      for (const [name, t] of this.stateTensors()) {
        const x = tensors.get(name);
        if (!x) throw new Error(`${file}: optimizer state "${name}" is missing (was the run made with another --optimizer?)`);
        if (x.dtype !== "F32" || x.shape.join(",") !== t.shape.join(",")) {
          throw new Error(`${file}: optimizer state "${name}" has ${x.dtype} [${x.shape}], expected F32 [${t.shape}]`);
        }
        t.data.set(x.data as Float32Array);
      }
      steps = n;
    },
  };
}

/**
 * Clips gradients to a global L2 norm (all tensors together); returns the norm before
 * clipping. maxNorm ≤ 0 disables clipping (the norm is still returned).
 */
export function clipGradNorm(be: Backend, grads: ParamSet, maxNorm: number): number {
  const norm = Math.sqrt(be.sumSquares(grads.data, grads.data.length));
  if (maxNorm > 0 && norm > maxNorm) be.scale(grads.data, grads.data.length, maxNorm / (norm + 1e-6));
  return norm;
}

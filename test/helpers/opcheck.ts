/**
 * One helper for checking any Backend op, two ways:
 *  - `compareBackends`: run the same call on two backends (native vs reference) from identical
 *    copies of the inputs and compare the named outputs (and the return value);
 *  - `gradCheck`: check an op's backward against float64 central differences of its forward on
 *    the scalar loss L = Σ out·r (r random), so the math itself is verified.
 * Both throw with the largest difference, where it is, and the shapes when a check fails.
 */
import type { Backend } from "../../src/core/backend.ts";
import { difference, uniformSource } from "../../src/core/tensor-utils.ts";

export type Tensor = Float32Array | Int32Array;
export type Tensors = Record<string, Tensor>;

function clone(t: Tensors): Tensors {
  const c: Tensors = {};
  for (const [k, v] of Object.entries(t)) c[k] = v.slice();
  return c;
}

export interface CompareOptions {
  /** Label printed on failure (shapes, threads). */
  label: string;
  /** Tensors both calls read and write; each backend gets its own copy. */
  tensors: Tensors;
  /** The call, e.g. (be, t) => be.rmsnormForward(t.out, t.rstd, t.x, t.w, N, C, 1e-5). */
  call: (be: Backend, t: Tensors) => number | void;
  /** Names of the tensors to compare after the call. */
  outputs: string[];
  /** Largest allowed |a − b| / max(|a|, |b|, floor), per output (default for all: tol). */
  tol: number;
  /** Values with magnitude under floor are judged absolutely against it. */
  floor?: number;
  /** Tolerance for the return value (relative), when the op returns a number. */
  retTol?: number;
}

/**
 * Runs `call` on `a` and on `b` from identical inputs and compares every named output.
 * Returns the largest relative difference seen (for reporting).
 */
export function compareBackends(a: Backend, b: Backend, o: CompareOptions): number {
  const ta = clone(o.tensors), tb = clone(o.tensors);
  const ra = o.call(a, ta), rb = o.call(b, tb);
  let worst = 0;
  for (const name of o.outputs) {
    const d = difference(ta[name], tb[name], o.floor ?? 1e-4);
    worst = Math.max(worst, d.maxRel);
    if (!(d.maxRel <= o.tol)) {
      throw new Error(`${o.label}: ${name} differs between ${a.name} and ${b.name}: max relative difference ` +
        `${d.maxRel.toExponential(3)} (tolerance ${o.tol}) at [${d.at}]: ${ta[name][d.at]} vs ${tb[name][d.at]}; ` +
        `max absolute difference ${d.maxAbs.toExponential(3)}`);
    }
  }
  if (typeof ra === "number" || typeof rb === "number") {
    const rel = Math.abs((ra as number) - (rb as number)) / Math.max(Math.abs(rb as number), 1e-6);
    if (!(rel <= (o.retTol ?? o.tol))) {
      throw new Error(`${o.label}: return values differ between ${a.name} and ${b.name}: ${ra} vs ${rb} (relative ${rel.toExponential(3)})`);
    }
    worst = Math.max(worst, rel);
  }
  return worst;
}

/** Float64 tensors for gradCheck (the reference backend computes on them unchanged). */
export type Inputs = Record<string, Float64Array>;

export interface GradCase {
  label: string;
  /** Differentiable inputs (float64). Not modified by forward/backward. */
  inputs: Inputs;
  /** Output of the forward for the given inputs (float64, any length). */
  forward: (x: Inputs) => Float64Array;
  /** Gradients of Σ out·dout with respect to each input (same names as inputs). */
  backward: (x: Inputs, dout: Float64Array) => Inputs;
  /** Check only these inputs (default: all). */
  wrt?: string[];
  /** At most this many elements of each input are probed (spread evenly; default 64). */
  probes?: number;
  /** Allowed |numeric − analytic| / max |analytic| over the input (default 1e-6). */
  tol?: number;
  seed?: number;
}

/** f64 → the Float32Array type the Backend's signature wants; the reference works on either. */
export function f64(a: Float64Array): Float32Array {
  return a as unknown as Float32Array;
}

/**
 * Checks backward against central differences (h = 1e-5, float64) of L = Σ forward(x)·r.
 * Returns the largest normalized difference seen.
 */
export function gradCheck(c: GradCase): number {
  const rng = uniformSource(c.seed ?? 7);
  const out0 = c.forward(c.inputs);
  const r = new Float64Array(out0.length);
  for (let i = 0; i < r.length; i++) r[i] = 2 * rng() - 1;
  const grads = c.backward(c.inputs, r);
  const loss = (x: Inputs): number => {
    const o = c.forward(x);
    let s = 0;
    for (let i = 0; i < o.length; i++) s += o[i] * r[i];
    return s;
  };
  const h = 1e-5, tol = c.tol ?? 1e-6;
  let worst = 0;
  for (const name of c.wrt ?? Object.keys(c.inputs)) {
    const x = c.inputs[name], g = grads[name];
    if (!g || g.length < x.length) throw new Error(`${c.label}: backward gave no full gradient for ${name}`);
    let gmax = 0;
    for (let i = 0; i < x.length; i++) gmax = Math.max(gmax, Math.abs(g[i]));
    const probes = Math.min(x.length, c.probes ?? 64);
    for (let p = 0; p < probes; p++) {
      const i = Math.floor((p * x.length) / probes + rng() * (x.length / probes)) % x.length;
      const keep = x[i];
      x[i] = keep + h; const lp = loss(c.inputs);
      x[i] = keep - h; const lm = loss(c.inputs);
      x[i] = keep;
      const num = (lp - lm) / (2 * h);
      const d = Math.abs(num - g[i]) / Math.max(gmax, 1e-12);
      worst = Math.max(worst, d);
      if (!(d <= tol)) {
        throw new Error(`${c.label}: d${name}[${i}] analytic ${g[i]} vs finite difference ${num} ` +
          `(difference ${d.toExponential(3)} of max |grad| ${gmax.toExponential(3)}, tolerance ${tol})`);
      }
    }
  }
  return worst;
}

/**
 * Per-op timing: wraps a Backend so that every call is timed (wall clock, synchronous ops),
 * for "where does a training step go?". GEMMs are split by their role in training:
 * NT = forward (y = x·Wᵀ), NN = input gradients (dX = dY·W), TN = weight gradients
 * (dW += dYᵀ·X), with their FLOP rate.
 */
import type { Backend } from "../core/backend.ts";

export interface OpTime {
  op: string;
  calls: number;
  ms: number;
  /** GEMMs only. */
  gflops?: number;
}

export interface Profiler {
  backend: Backend;
  reset(): void;
  /** Ops by total time, largest first. */
  report(): OpTime[];
}

export function profileBackend(be: Backend): Profiler {
  const t = new Map<string, { calls: number; ms: number; flops: number }>();
  const add = (op: string, ms: number, flops = 0): void => {
    const e = t.get(op) ?? { calls: 0, ms: 0, flops: 0 };
    e.calls++;
    e.ms += ms;
    e.flops += flops;
    t.set(op, e);
  };
  const wrapped: Record<string, unknown> = { name: `${be.name}+profile` };
  for (const key of Object.keys(be) as (keyof Backend)[]) {
    const f = be[key];
    if (typeof f !== "function") continue;
    wrapped[key] = (...args: unknown[]): unknown => {
      const t0 = performance.now();
      const r = (f as (...a: unknown[]) => unknown).apply(be, args);
      const ms = performance.now() - t0;
      if (key === "gemm" || key === "gemmBf16") {
        const [ta, tb, M, N, K] = args as [boolean, boolean, number, number, number];
        add(`gemm ${ta ? "T" : "N"}${tb ? "T" : "N"}${key === "gemmBf16" ? " bf16" : ""}`, ms, 2 * M * N * K);
      } else add(key, ms);
      return r;
    };
  }
  return {
    backend: wrapped as unknown as Backend,
    reset: () => t.clear(),
    report: () =>
      [...t.entries()]
        .map(([op, e]) => ({ op, calls: e.calls, ms: e.ms, ...(e.flops ? { gflops: e.flops / (e.ms * 1e6) } : {}) }))
        .sort((a, b) => b.ms - a.ms),
  };
}

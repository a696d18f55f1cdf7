/**
 * The random numbers of sampling and corpus generation: core/rng.ts's seeded sfc32 generator
 * (the same stream for the same seed), with `pick` and a plain-array state for saving.
 */
import { seededRng } from "../core/rng.ts";

export interface Rng {
  /** Uniform in [0, 1) with 32 random bits. */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A uniformly chosen element. */
  pick<T>(xs: readonly T[]): T;
  /** The generator's state, to save and restore. */
  state(): [number, number, number, number];
}

/** A generator from a seed, or continuing from a saved `state()`. */
export function makeRng(seed: number, state?: readonly number[]): Rng {
  const g = seededRng(seed);
  if (state) g.restore({ s: state.map((x) => x >>> 0) as [number, number, number, number], spare: null });
  return {
    next: g.uniform,
    int: g.int,
    pick: (xs) => xs[g.int(xs.length)],
    state: () => g.state().s,
  };
}

/**
 * A small seeded random number generator (sfc32, Chris Doty-Humphrey's "small fast chaotic"
 * generator, 128-bit state), so sampling and corpus generation are reproducible from a seed.
 */
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

export function makeRng(seed: number, state?: readonly number[]): Rng {
  let a: number, b: number, c: number, d: number;
  if (state) {
    [a, b, c, d] = state.map((x) => x >>> 0);
  } else {
    // Seed per the generator's author: a fixed constant, the seed split in two, a counter.
    a = 0x9e3779b9;
    b = seed >>> 0;
    c = Math.floor(seed / 2 ** 32) >>> 0;
    d = 1;
  }
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  if (!state) for (let i = 0; i < 15; i++) u32(); // mix the seed in
  const rng: Rng = {
    next: () => u32() / 4294967296,
    int: (n) => Math.floor((u32() / 4294967296) * n),
    pick: (xs) => xs[Math.floor((u32() / 4294967296) * xs.length)],
    state: () => [a, b, c, d],
  };
  return rng;
}

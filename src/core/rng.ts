/**
 * Seeded random numbers whose whole state can be saved in a checkpoint and restored, so a
 * resumed run draws exactly the numbers the uninterrupted run would have drawn.
 * Generator: sfc32 (Chris Doty-Humphrey's "small fast chaotic", 128-bit state);
 * normal deviates by Box–Muller (both outputs used, the spare kept in the state).
 */
export interface RngState {
  s: [number, number, number, number];
  /** The second Box–Muller deviate, not yet returned (null when none). */
  spare: number | null;
}

export interface SeededRng {
  /** Uniform in [0, 1), 32 random bits. */
  uniform(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal deviate. */
  normal(): number;
  state(): RngState;
  restore(st: RngState): void;
}

export function seededRng(seed: number): SeededRng {
  let a = 0x9e3779b9, b = seed >>> 0, c = Math.floor(seed / 2 ** 32) >>> 0, d = 1;
  let spare: number | null = null;
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 15; i++) u32(); // mix the seed in, as the generator's author advises
  const uniform = (): number => u32() / 4294967296;
  return {
    uniform,
    int: (n) => Math.floor(uniform() * n),
    normal(): number {
      if (spare !== null) {
        const z = spare;
        spare = null;
        return z;
      }
      let u = 0;
      while (u === 0) u = uniform(); // log(0) guard
      const r = Math.sqrt(-2 * Math.log(u)), th = 2 * Math.PI * uniform();
      spare = r * Math.sin(th);
      return r * Math.cos(th);
    },
    state: () => ({ s: [a, b, c, d], spare }),
    restore(st: RngState): void {
      if (!st || !Array.isArray(st.s) || st.s.length !== 4 || st.s.some((x) => !Number.isInteger(x))) {
        throw new Error(`rng: invalid saved state ${JSON.stringify(st)}`);
      }
      [a, b, c, d] = st.s.map((x) => x >>> 0) as [number, number, number, number];
      spare = st.spare ?? null;
    },
  };
}

/** A plain `() => uniform [0, 1)` stream from a seed (random fills, shuffles): seededRng's uniform. */
export function uniformSource(seed: number): () => number {
  return seededRng(seed).uniform;
}

/**
 * Small tensor helpers shared by the reference backend, tests and benchmarks:
 * a seeded random generator, random fills, difference measures, RoPE tables.
 */

/** Seeded uniform [0, 1) generator (mulberry32), so failures and runs reproduce. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A new Float32Array of n values uniform in [lo, hi), drawn from rng. */
export function randomF32(n: number, rng: () => number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng();
  return a;
}

/** A new Int32Array of n integers uniform in [0, hi), drawn from rng. */
export function randomI32(n: number, rng: () => number, hi: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.min(hi - 1, Math.floor(rng() * hi));
  return a;
}

/** A standard normal sample (Box–Muller) from a uniform rng. */
export function gaussian(rng: () => number): number {
  const u = 1 - rng(), w = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * w);
}

/** Where two arrays differ most, absolutely and relative to max(|a|, |b|, floor). */
export interface Difference {
  /** max |a[i] − b[i]| */
  maxAbs: number;
  /** max |a[i] − b[i]| / max(|a[i]|, |b[i]|, floor) */
  maxRel: number;
  /** index of the largest relative difference (−1 for empty arrays) */
  at: number;
}

/**
 * Compares a and b element by element (same length required). The relative difference
 * divides by max(|a|, |b|, floor), so values near zero are judged absolutely against floor.
 * NaN anywhere counts as an infinite difference.
 */
export function difference(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): Difference {
  if (a.length !== b.length) throw new Error(`difference: lengths differ (${a.length} vs ${b.length})`);
  let maxAbs = 0, maxRel = 0, at = a.length ? 0 : -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    const r = Number.isNaN(d) ? Infinity : d / Math.max(Math.abs(a[i]), Math.abs(b[i]), floor);
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    if (r > maxRel) { maxRel = r; at = i; }
  }
  return { maxAbs, maxRel, at };
}

/** max_i |a[i] − b[i]| / max_i |b[i]|: one number for a whole tensor, robust to tiny entries. */
export function normalizedMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`normalizedMaxDiff: lengths differ (${a.length} vs ${b.length})`);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    d = Number.isNaN(e) ? Infinity : Math.max(d, e);
    m = Math.max(m, Math.abs(b[i]));
  }
  return m === 0 ? d : d / m;
}

/**
 * RoPE tables for positions 0..maxT−1: cos, sin [maxT, D/2] with
 * angle(p, i) = p · invFreq[i], invFreq[i] = theta^(−2i/D) unless given (a scaled RoPE passes its
 * own, see model/config.ts ropeInvFreq), computed in float64 and rounded once to float32
 * (Hugging Face's inv_freq convention). D must be even.
 */
export function ropeTables(maxT: number, D: number, theta: number, invFreq?: ArrayLike<number>): { cos: Float32Array; sin: Float32Array } {
  if (D % 2 !== 0) throw new Error(`ropeTables: head size D=${D} must be even`);
  const half = D / 2;
  if (invFreq && invFreq.length !== half) throw new Error(`ropeTables: invFreq has ${invFreq.length} entries, expected D/2 = ${half}`);
  const cos = new Float32Array(maxT * half), sin = new Float32Array(maxT * half);
  for (let i = 0; i < half; i++) {
    const f = invFreq ? invFreq[i] : Math.pow(theta, (-2 * i) / D);
    for (let p = 0; p < maxT; p++) {
      const a = p * f;
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

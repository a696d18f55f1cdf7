/**
 * (left id, right id) → number hash map over typed arrays (open addressing, linear probing).
 * Why not a Map: keys a·2^21+b are not small integers, so a Map boxes and hashes doubles;
 * this keeps encoding and training free of per-lookup allocations.
 */
export class PairMap {
  size = 0;
  private ka: Int32Array;
  private kb: Int32Array;
  private vals: Float64Array;
  private mask: number;

  constructor(capacity = 1 << 12) {
    let n = 16;
    while (n < capacity * 2) n *= 2;
    this.ka = new Int32Array(n).fill(-1);
    this.kb = new Int32Array(n);
    this.vals = new Float64Array(n);
    this.mask = n - 1;
  }

  static hash(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) >>> 0;
  }

  /** The value of (a, b), or `missing`. */
  get(a: number, b: number, missing: number): number {
    const { ka, kb, mask } = this;
    for (let h = PairMap.hash(a, b) & mask; ; h = (h + 1) & mask) {
      const x = ka[h];
      if (x === -1) return missing;
      if (x === a && kb[h] === b) return this.vals[h];
    }
  }

  /** Sets (a, b) → v (ids must be ≥ 0). */
  set(a: number, b: number, v: number): void {
    const { ka, kb, mask } = this;
    let h = PairMap.hash(a, b) & mask;
    for (; ka[h] !== -1; h = (h + 1) & mask) {
      if (ka[h] === a && kb[h] === b) {
        this.vals[h] = v;
        return;
      }
    }
    ka[h] = a, kb[h] = b, this.vals[h] = v;
    if (++this.size * 2 > mask) this.grow();
  }

  private grow(): void {
    const { ka, kb, vals } = this;
    const n = ka.length * 2;
    this.ka = new Int32Array(n).fill(-1);
    this.kb = new Int32Array(n);
    this.vals = new Float64Array(n);
    this.mask = n - 1;
    this.size = 0;
    for (let i = 0; i < ka.length; i++) if (ka[i] !== -1) this.set(ka[i], kb[i], vals[i]);
  }
}

/**
 * Reproducible test operands for the bf16 GEMM (test/gemm-bf16.test.ts, and the by-hand A/B
 * tool bench/native/gemm-bf16-ab.mjs): uniform in [−0.5, 0.5), each scaled by 2^e with e drawn
 * from [−spread/2, spread/2) when spread > 0, so that sums mix magnitudes as activations do.
 */
export function rand(n: number, seed: number, spread = 0): Float32Array {
  const r = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const u = x / 2 ** 32 - 0.5;
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    r[i] = u * 2 ** (spread ? Math.floor((x / 2 ** 32) * spread) - spread / 2 : 0);
  }
  return r;
}

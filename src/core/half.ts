/**
 * 16-bit and 8-bit weight encodings, in plain TypeScript: IEEE half precision (F16) and
 * ggml's Q8_0. The GGUF writer stores them, mynah's own inference stores them (the native
 * kernels decode them on the fly), and the tests use these as ground truth.
 *
 * F16: 1 sign, 5 exponent, 10 mantissa bits; float32 → f16 rounds to nearest, ties to even
 * (relative error ≤ 2⁻¹¹ for normal values, |x| ≤ 65504).
 *
 * Q8_0: blocks of 32 consecutive values along a row. Each block stores d = max|x| / 127 as F16
 * (2 bytes) and 32 int8 q = round(x / d), rounding halves away from zero; x ≈ d·q.
 * 34 bytes per 32 values (8.5 bits per weight). Error per value ≤ d/2 (+ the F16 rounding of d).
 * This is ggml's reference quantizer (quantize_row_q8_0_ref): q is computed with 1/d from
 * the float32 d, before d is rounded to F16.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → F16 bits, round to nearest even; overflow → ±inf, NaN stays NaN. */
export function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal half: value = m·2⁻²⁴ with m = (1.mant)·2^(exp−126) = full >> (14 − e)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry rolls into the exponent, as it should
  return sign | h;
}

/** F16 bits → number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Encodes a float32 array as F16 bits. */
export function encodeF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16(x[i]);
  return out;
}

export function decodeF16(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = f16ToF32(h[i]);
  return out;
}

export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

/** Q8_0 bytes of rows×cols values (cols a multiple of 32), row-major, blocks along each row. */
export function encodeQ8_0(x: Float32Array, rows: number, cols: number): Uint8Array {
  if (cols % Q8_0_BLOCK !== 0) throw new Error(`Q8_0: rows of ${cols} values are not a multiple of ${Q8_0_BLOCK}`);
  if (x.length !== rows * cols) throw new Error(`Q8_0: ${x.length} values, expected ${rows}×${cols}`);
  const nb = (rows * cols) / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_0_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[o + i]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(b * Q8_0_BYTES, f32ToF16(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const v = Math.fround(x[o + i] * id);
      // roundf: halves away from zero
      out[b * Q8_0_BYTES + 2 + i] = (Math.sign(v) * Math.round(Math.abs(v))) & 0xff;
    }
  }
  return out;
}

export function decodeQ8_0(q: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(q.buffer, q.byteOffset, q.byteLength);
  for (let b = 0; b < n / Q8_0_BLOCK; b++) {
    const d = f16ToF32(view.getUint16(b * Q8_0_BYTES, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) out[b * Q8_0_BLOCK + i] = d * view.getInt8(b * Q8_0_BYTES + 2 + i);
  }
  return out;
}

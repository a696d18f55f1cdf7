/**
 * How many compute threads one generation step should use (`mynah serve --threads 0`).
 *
 * A decode step runs ~10 matrix products per layer; each product with a second thread pays
 * for a hand-off and a barrier, and on a small machine that thread competes with the HTTP
 * thread and the clients. It pays only when the products are big enough: measured on the
 * 2-core machine (docs/benchmarks.md, Serving), the speedrun shape (4 × 128: matrices of
 * 16–131 Ki elements) ran 16 streams 1.6 × faster on 1 thread than on 2, while 6 × 384
 * (147–393 Ki elements, bound by streaming the weights) decoded one stream faster on 2. So:
 * every CPU when the model's largest layer matrix reaches MT_MATRIX elements, or when the
 * step feeds enough rows (a long prompt's prefill) that rows × matrix reaches MT_STEP; else 1.
 *
 * MT_STEP was 2²² (a 32-token prefill of the speedrun shape). Measured alone on the 2-core
 * machine, a prefill of that shape on 2 threads against 1 takes 0.91 vs 0.97 ms at 32 rows,
 * 1.31 vs 1.23 at 64, 1.87 vs 2.10 at 128 and 2.91 vs 4.15 at 240. In the server the second
 * CPU is also the HTTP thread's, and every switch between 1 and 2 threads starts and joins a
 * pool thread that spins 2 ms after its work: 16 streams with 46-token prompts streamed
 * 9,200–9,450 tokens/s with a second thread for each prefill and 10,500–11,300 without
 * (three alternating passes each). So a step now needs rows × matrix ≥ 2²⁵ (256 rows of
 * that shape) before it takes a second thread.
 */

/** The shape fields that size a step's matrices (a model's DecodeConfig has them). */
export interface StepShape { nEmbd: number; nHead: number; headDim?: number; ffnHidden: number; vocabSize: number }

/** A layer matrix of this many elements (1 MiB of float32) is worth a second thread even for one row. */
export const MT_MATRIX = 1 << 18;
/** A step of rows × largest matrix ≥ this (e.g. a 256-token prefill of a 128-wide model, V = 1024) is worth it too. */
export const MT_STEP = 1 << 25;

/** The largest weight matrix a step multiplies by (the output head included). */
export function largestMatrix(c: StepShape): number {
  return Math.max(c.nEmbd * c.ffnHidden, c.nEmbd * c.nHead * (c.headDim ?? c.nEmbd / c.nHead), c.nEmbd * c.vocabSize);
}

/** Threads for a step feeding `rows` token rows: 1, or `all`. */
export function stepThreads(c: StepShape, rows: number, all: number): number {
  const m = largestMatrix(c);
  return m >= MT_MATRIX || rows * m >= MT_STEP ? all : 1;
}

/**
 * A batcher's `onForward` that sizes the pool to each step: `setThreads` (the native one,
 * passed in so this file loads nothing native) only when stepThreads' choice changes; `now`
 * is the count the pool has when the sizer starts.
 */
export function threadsPerStep(c: StepShape, all: number, setThreads: (n: number) => number, now = 1): (rows: number) => void {
  return (rows) => {
    const want = stepThreads(c, rows, all);
    if (want !== now) now = setThreads(want);
  };
}

/**
 * What the training loop reads batches from. Implementations: the shard loader (packed
 * token sequences from `mynah data prepare`), the plain-text loader, and SFT batches.
 */
export interface Batch {
  /** [B·T] token ids. */
  inputs: Int32Array;
  /** [B·T] next-token targets; −1 = no loss at this position. */
  targets: Int32Array;
}

export interface BatchSource {
  /** The next B sequences of T tokens, in a fixed order decided by the source's seed. */
  nextBatch(B: number, T: number): Batch;
  /** The exact position, JSON-serializable, saved in checkpoints. */
  state(): unknown;
  /** Continue from a position returned by state() (possibly in an earlier process). */
  restore(state: unknown): void;
}

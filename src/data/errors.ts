/**
 * Bad input: every error about a record names the file and the line (or Parquet row), so a
 * user can open the file and look. With --skip-bad the readers count these instead of
 * stopping.
 */
export class DataError extends Error {
  constructor(readonly file: string, readonly line: number, readonly reason: string, readonly unit: "line" | "row" = "line") {
    super(`${file}:${unit === "row" ? "row " : ""}${line}: ${reason}`);
    this.name = "DataError";
  }
}

/** What the caller does with a bad record: undefined → throw it; a function → count and go on. */
export type OnBad = ((err: DataError) => void) | undefined;

/** Throws `err`, or hands it to `onBad` when skipping bad records. */
export function reportBad(err: DataError, onBad: OnBad): void {
  if (!onBad) throw err;
  onBad(err);
}

/**
 * What `mynah train` and `mynah sft` share around a run: Ctrl-C (or SIGTERM) asks the loop to
 * stop after the current step and save a checkpoint; a second Ctrl-C is ignored until then.
 * Settings refused before training print one line and exit with status 2.
 */
import { SettingsError } from "../core/errors.ts";
import { parseMemorySize } from "../train/memory.ts";

export async function runInterruptible(command: string, run: (signal: AbortSignal) => Promise<unknown>): Promise<void> {
  const ctl = new AbortController();
  const onInt = (): void => {
    if (ctl.signal.aborted) return;
    process.stderr.write("\nstopping after this step (saving a checkpoint)…\n");
    ctl.abort();
  };
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onInt);
  try {
    await run(ctl.signal);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`mynah ${command}: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onInt);
  }
}

/** `--max-memory SIZE` in bytes; a bad value is refused like any other setting (exit status 2). */
export function memorySize(typed: string): number {
  try {
    return parseMemorySize(typed);
  } catch (err) {
    throw new SettingsError((err as Error).message);
  }
}

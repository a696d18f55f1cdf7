/**
 * A setting refused before anything runs (a flag out of range, a missing input, a run folder
 * in the wrong state). The message names the flag or file as the user typed it; commands print
 * it on one line and exit with status 2 (src/cli/run-training.ts), not with a stack trace.
 */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SettingsError";
  }
}

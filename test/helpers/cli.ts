/**
 * Runs mynah commands in-process, as `mynah <args>` would: the given commands registered on a
 * program whose errors throw (exitOverride) instead of exiting; returns what they printed with
 * console.log.
 */
import { Command } from "commander";

export function inProcessCli(...register: ((program: Command) => void)[]): (...args: string[]) => Promise<string> {
  return async (...args) => {
    const program = new Command().exitOverride();
    for (const r of register) r(program);
    const lines: string[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      await program.parseAsync(["node", "mynah", ...args]);
    } finally {
      console.log = log;
    }
    return lines.join("\n");
  };
}

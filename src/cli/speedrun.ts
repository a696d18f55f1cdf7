import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerSpeedrun(program: Command): void {
  program.command("speedrun").description("(not built yet)").action(() => {
    throw new Error("mynah speedrun is not built yet");
  });
}

import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerTrain(program: Command): void {
  program.command("train").description("(not built yet)").action(() => {
    throw new Error("mynah train is not built yet");
  });
}

import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerData(program: Command): void {
  program.command("data").description("(not built yet)").action(() => {
    throw new Error("mynah data is not built yet");
  });
}

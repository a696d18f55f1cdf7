import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerSft(program: Command): void {
  program.command("sft").description("(not built yet)").action(() => {
    throw new Error("mynah sft is not built yet");
  });
}

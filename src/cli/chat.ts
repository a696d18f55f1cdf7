import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerChat(program: Command): void {
  program.command("chat").description("(not built yet)").action(() => {
    throw new Error("mynah chat is not built yet");
  });
}

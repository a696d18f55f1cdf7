import type { Command } from "commander";

// Placeholder: replaced by the real command.
export function registerTokenizer(program: Command): void {
  program.command("tokenizer").description("(not built yet)").action(() => {
    throw new Error("mynah tokenizer is not built yet");
  });
}

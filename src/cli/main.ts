/**
 * The `mynah` command. Each subcommand lives in its own file under src/cli/ and registers
 * itself on the program; nothing runs at import.
 */
import { Command } from "commander";
import { registerTrain } from "./train.ts";
import { registerTokenizer } from "./tokenizer.ts";
import { registerData } from "./data.ts";
import { registerSft } from "./sft.ts";
import { registerChat } from "./chat.ts";
import { registerSpeedrun } from "./speedrun.ts";
import { registerExport } from "./export.ts";
import { registerImport } from "./import.ts";

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("mynah")
    .description("Build your own ChatGPT-style model end to end, on your own machine.")
    .version("0.1.0")
    .showHelpAfterError();
  registerSpeedrun(program);
  registerData(program);
  registerTokenizer(program);
  registerTrain(program);
  registerSft(program);
  registerChat(program);
  registerImport(program);
  registerExport(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}

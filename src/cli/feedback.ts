/**
 * `mynah feedback export --db FILE --out DIR`: the server's conversations and ratings as
 * training data (conversations.jsonl for sft, preferences.jsonl for preference tuning).
 */
import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { exportFeedback } from "../serve/feedback-export.ts";

export function registerFeedback(program: Command): void {
  const fb = program.command("feedback").description("Work with what people said and rated in `mynah serve`");
  fb.command("export")
    .description("Write DIR/conversations.jsonl (OpenAI messages, corrections applied) and DIR/preferences.jsonl (chosen/rejected pairs)")
    .requiredOption("--db <file>", "the server's SQLite database (e.g. runs/speedrun/mynah.db)")
    .requiredOption("--out <dir>", "output folder")
    .action((o: { db: string; out: string }) => {
      if (!existsSync(o.db)) throw new Error(`--db ${o.db}: no such file`);
      const r = exportFeedback({ db: o.db, out: o.out });
      process.stdout.write(`${r.conversations} conversations (${r.messages} messages) → ${join(o.out, "conversations.jsonl")}\n` +
        `${r.preferences} preference pairs (${r.fromCorrections} from corrections, ${r.fromRatings} from thumbs up/down) → ${join(o.out, "preferences.jsonl")}\n`);
    });
}

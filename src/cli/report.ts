/**
 * `mynah report RUN... [--out report.html]`: one self-contained HTML page with the runs'
 * curves and tables, and a Markdown summary beside it (printed too).
 */
import type { Command } from "commander";
import { writeReport } from "../eval/report.ts";

export function registerReport(program: Command): void {
  program
    .command("report")
    .description("Write an offline HTML report (+ Markdown summary) of training runs, speedruns and eval results; several runs are overlaid")
    .argument("<runs...>", "run folders (mynah train/sft --out, mynah speedrun --run-dir) and eval results files (mynah eval --out)")
    .option("--out <file>", "the HTML page; the Markdown summary goes beside it with .md", "report.html")
    .option("--title <text>", "page title", "mynah run report")
    .action(async (runs: string[], o: { out: string; title: string }) => {
      const r = await writeReport({ runs, out: o.out, title: o.title });
      process.stdout.write(r.markdown);
      process.stderr.write(`report: ${r.htmlPath} (${r.charts.length} charts), summary: ${r.mdPath}\n`);
    });
}

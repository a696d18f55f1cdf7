/** The speedrun's report card: accuracy per skill, validation loss, what was built and how long each stage took. */
import type { Evaluation } from "./evaluate.ts";

export interface StageTime {
  stage: string;
  seconds: number;
  note: string;
}

export interface ReportInput {
  evaluation: Evaluation;
  stages: StageTime[];
  model: string;
  runDir: string;
  /** Accuracy a skill needs to count as learned. */
  passAt: number;
  /** File name of the full run report (curves, tables) beside the card, when one was written. */
  fullReport?: string;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** The report card as plain text (printed, and saved as report.md). */
export function reportCard(r: ReportInput): string {
  const e = r.evaluation;
  const w = Math.max(...e.scores.map((s) => s.skill.length), 5);
  const lines = [
    "# mynah speedrun — report card",
    "",
    `model: ${r.model}`,
    `run folder: ${r.runDir}`,
    "",
    "Held-out questions (fresh seed, none seen in training), greedy decoding, exact match:",
    "",
    `| ${"skill".padEnd(w)} | correct |  accuracy | what it asks`,
    `| ${"-".repeat(w)} | ------- | --------- | ------------`,
    ...e.scores.map((s) =>
      `| ${s.skill.padEnd(w)} | ${`${s.correct}/${s.asked}`.padStart(7)} | ${pct(s.accuracy).padStart(7)} ${s.accuracy >= r.passAt ? "✓" : " "} | ${s.description}`),
    "",
    `skills at ≥ ${pct(r.passAt)}: ${e.scores.filter((s) => s.accuracy >= r.passAt).length} of ${e.scores.length}`,
    `validation loss (reference replies, ${e.valTokens} tokens): ${e.valLoss.toFixed(4)} nats/token`,
    "",
    "Stages:",
    ...r.stages.map((s) => `  ${s.stage.padEnd(10)} ${s.seconds.toFixed(1).padStart(7)} s  ${s.note}`),
    `  ${"total".padEnd(10)} ${r.stages.reduce((a, s) => a + s.seconds, 0).toFixed(1).padStart(7)} s`,
    "",
    "Some answers (✓ right, ✗ wrong):",
    ...sampleAnswers(e),
    ...(r.fullReport ? ["", `Full report (training curves, tables): [${r.fullReport}](${r.fullReport})`] : []),
  ];
  return lines.join("\n") + "\n";
}

function sampleAnswers(e: Evaluation): string[] {
  const out: string[] = [];
  for (const s of e.scores) {
    for (const a of e.answers.filter((x) => x.skill === s.skill).slice(0, 2)) {
      out.push(`  ${a.correct ? "✓" : "✗"} [${s.skill}] ${a.question}  →  ${a.generated.replace(/\n/g, " ").slice(0, 100)}`);
    }
  }
  return out;
}

/**
 * Splits the shared corpora (../shared/data) into training files and held-out evaluation
 * task files, for the README's "Evaluate and compare" example:
 *
 *   OUT/train/text/*.txt, OUT/train/chat/*.jsonl       what the models are trained on
 *   OUT/tasks/text-heldout/*.txt                       bpb: last 10 % of Tiny Shakespeare, every 10th fortune
 *   OUT/tasks/chat-heldout.jsonl                       chat-loss: every 10th chatterbot conversation (en + zh)
 *   OUT/tasks/mc-chatterbot.jsonl                      mc, ARC shape: a held-out question, its reply and 3 replies to other questions
 *   OUT/tasks/mc-shakespeare.jsonl                     mc, HellaSwag shape: a held-out line, the line after it and 3 other lines
 *
 * Usage: node --import tsx scripts/make-eval-tasks.ts [SHARED_DATA] [OUT]
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { seededRng } from "../src/core/rng.ts";

const data = process.argv[2] ?? "../shared/data";
const out = process.argv[3] ?? "runs/eval-example";
const rng = seededRng(13);
for (const d of ["train/text", "train/chat", "tasks/text-heldout"]) mkdirSync(join(out, d), { recursive: true });
const jsonl = (rows: unknown[]): string => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";

/** Three distinct indices of `n`, none equal to `not`. */
function others(n: number, not: number): number[] {
  const got = new Set<number>();
  while (got.size < 3) {
    const i = rng.int(n);
    if (i !== not) got.add(i);
  }
  return [...got];
}

/** A question with the right choice put at a random position among the distractors. */
function shuffleIn<T>(right: T, wrong: T[]): { choices: T[]; answer: number } {
  const answer = rng.int(wrong.length + 1);
  const choices = [...wrong];
  choices.splice(answer, 0, right);
  return { choices, answer };
}

// Tiny Shakespeare: the first 90 % of lines train, the last 10 % are held out (nanoGPT's split).
const shakes = readFileSync(join(data, "text/tinyshakespeare.txt"), "utf8").split("\n");
const cut = Math.floor(shakes.length * 0.9);
writeFileSync(join(out, "train/text/tinyshakespeare.txt"), shakes.slice(0, cut).join("\n"));
const heldShakes = shakes.slice(cut);
writeFileSync(join(out, "tasks/text-heldout/tinyshakespeare.txt"), heldShakes.join("\n"));
// HellaSwag shape: a spoken line (not a speaker's name) and the line that follows it in the same speech.
const lines = heldShakes.map((l, i) => ({ l, next: heldShakes[i + 1] ?? "" }))
  .filter((x) => x.l.trim() && x.next.trim() && !/:$/.test(x.l) && !/:$/.test(x.next));
const pool = lines.map((x) => x.next);
const hs = lines.filter((_, i) => i % 4 === 0).map((x, i) => {
  const wrong = others(pool.length, pool.indexOf(x.next)).map((j) => pool[j]);
  const { choices, answer } = shuffleIn(x.next, wrong);
  return { ind: i, ctx: x.l, endings: choices, label: String(answer) };
});
writeFileSync(join(out, "tasks/mc-shakespeare.jsonl"), jsonl(hs));

// Fortunes: entries between "%" lines; every 10th held out.
const fortunes = readFileSync(join(data, "text/fortunes_en.txt"), "utf8").split(/^%$/m).map((s) => s.trim()).filter(Boolean);
writeFileSync(join(out, "train/text/fortunes_en.txt"), fortunes.filter((_, i) => i % 10 !== 0).join("\n\n") + "\n");
writeFileSync(join(out, "tasks/text-heldout/fortunes_en.txt"), fortunes.filter((_, i) => i % 10 === 0).join("\n\n") + "\n");

// Chatterbot (en, zh): every 10th conversation held out.
type Conv = { messages: { role: string; content: string }[] };
const held: (Conv & { lang: string })[] = [];
for (const lang of ["en", "zh"]) {
  const convs = readFileSync(join(data, `chat/chatterbot_${lang}.jsonl`), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Conv);
  writeFileSync(join(out, `train/chat/chatterbot_${lang}.jsonl`), jsonl(convs.filter((_, i) => i % 10 !== 0)));
  held.push(...convs.filter((_, i) => i % 10 === 0).map((c) => ({ ...c, lang })));
}
writeFileSync(join(out, "tasks/chat-heldout.jsonl"), jsonl(held.map(({ messages }) => ({ messages }))));
// ARC shape: the first user turn, its reply among 3 replies to other held-out questions of the same language.
const arc: unknown[] = [];
for (const lang of ["en", "zh"]) {
  const qa = held.filter((c) => c.lang === lang && c.messages.length >= 2).map((c) => ({ q: c.messages[0].content, a: c.messages[1].content }));
  const replies = qa.map((x) => x.a);
  qa.forEach((x, i) => {
    const wrong = others(qa.length, i).map((j) => replies[j]);
    if (wrong.includes(x.a)) return; // the same reply to two questions: no single right answer
    const { choices, answer } = shuffleIn(x.a, wrong);
    const label = ["A", "B", "C", "D"];
    arc.push({ id: `chatterbot-${lang}-${i}`, question: x.q, choices: { text: choices, label }, answerKey: label[answer] });
  });
}
writeFileSync(join(out, "tasks/mc-chatterbot.jsonl"), jsonl(arc));
console.log(`${out}: ${hs.length} HellaSwag-shaped and ${arc.length} ARC-shaped questions, ${held.length} held-out conversations`);

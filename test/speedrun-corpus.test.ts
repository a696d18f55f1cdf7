/**
 * The speedrun corpus: every reference reply states the right answer (checked here from the
 * question by independent arithmetic, Zeller's congruence, etc.), extraction reads it back,
 * and held-out questions never appear in training.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeRng } from "../src/infer/rng.ts";
import { generateConversations, heldOutExamples, trainingQuestions } from "../src/speedrun/corpus.ts";
import { speedrunSkills } from "../src/speedrun/skills.ts";
import { FACTS } from "../src/speedrun/facts.ts";

const skills = speedrunSkills({ digits: 3 });

// Zeller's congruence (Gregorian), 0 = Saturday.
function zeller(y: number, m: number, d: number): number {
  if (m < 3) { m += 12; y -= 1; }
  const K = y % 100, J = Math.floor(y / 100);
  return (d + Math.floor((13 * (m + 1)) / 5) + K + Math.floor(K / 4) + Math.floor(J / 4) + 5 * J) % 7;
}
const EN_DAYS_FROM_SAT = ["Saturday", "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday"];

test("reference replies carry answers that independent checks confirm", () => {
  const rng = makeRng(5);
  for (const skill of skills) {
    for (let i = 0; i < 300; i++) {
      const lang = i % 2 ? "zh" : "en";
      const ex = skill.make(rng, lang, i % 3 === 0);
      assert.equal(skill.extract(ex.reply, lang), ex.answer, `${skill.name}: ${ex.question} → ${ex.reply}`);
      const nums = (ex.question.match(/\d+/g) ?? []).map(Number);
      const quoted = [...ex.question.matchAll(/['“]([^'”]*)['”]/g)].map((m) => m[1]);
      if (skill.name === "addition") assert.equal(Number(ex.answer), nums[0] + nums[1]);
      if (skill.name === "reverse") assert.equal(ex.answer, quoted[0].split("").reverse().join(""));
      if (skill.name === "count-letters") {
        // The letter is the single-character quote, the word the longer one.
        const letter = quoted.find((q) => q.length === 1)!, word = quoted.find((q) => q.length > 1)!;
        assert.equal(Number(ex.answer), word.split(letter).length - 1, ex.question);
      }
      if (skill.name === "weekday" && lang === "en") {
        const [y, m, d] = nums;
        assert.equal(ex.answer, EN_DAYS_FROM_SAT[zeller(y, m, d)], ex.question);
      }
      if (skill.name === "capital") {
        const row = FACTS.find((f) => ex.question.includes(f.country[lang]))!;
        assert.equal(ex.answer, row.capital[lang]);
      }
    }
  }
});

test("extraction rejects wrong or missing answers", () => {
  const [add, conv, count, rev, wd, cap] = skills;
  assert.equal(add.extract("I don't know.", "en"), null);
  assert.equal(add.extract("12 + 30 = 42.", "en"), "42");
  assert.equal(conv.extract("3 千米 = 3000 米。", "zh"), "3000");
  assert.equal(count.extract("b-a-n has 0 'x': 0.", "en"), "0");
  assert.equal(rev.extract("'cba' is c-b-a; reversed, letter by letter: a-b-c.", "en"), "abc");
  assert.equal(rev.extract("“cba”是 c-b-a；倒过来逐个字母是：a-b-c。", "zh"), "abc");
  assert.equal(rev.extract("The answer is abc.", "en"), null);
  assert.equal(wd.extract("It is a Monday or a Friday.", "en"), null);
  assert.equal(cap.extract("The capital of Mexico is Mexico City.", "en"), "Mexico City");
  assert.equal(cap.extract("The capital of France is Berlin.", "en"), "Berlin");
});

test("held-out questions are deduplicated against training and each other", () => {
  const convs = generateConversations(skills, { conversations: 5000, seed: 1, zhShare: 0.5 });
  assert.equal(convs.length, 5000);
  const seen = trainingQuestions(convs);
  const held = heldOutExamples(skills, 60, 2, seen);
  const scored = skills.filter((s) => s.scored);
  for (const s of scored) {
    const n = held.filter((e) => e.skill === s.name).length;
    // Capitals have one held-out phrasing per language: 2 × (table rows) distinct questions.
    const possible = s.name === "capital" ? 2 * FACTS.length : Infinity;
    assert.equal(n, Math.min(60, possible), `${s.name} has ${n} held-out questions`);
  }
  assert.equal(new Set(held.map((e) => e.question)).size, held.length);
  for (const e of held) assert.ok(!seen.has(e.question), e.question);
  // Roles alternate user/assistant after an optional system prompt; both languages occur.
  let zh = 0;
  for (const c of convs) {
    const ms = c.messages[0].role === "system" ? c.messages.slice(1) : c.messages;
    ms.forEach((m, i) => assert.equal(m.role, i % 2 ? "assistant" : "user"));
    if (/[\u4e00-\u9fff]/.test(ms[0].content)) zh++;
  }
  assert.ok(zh > 2000 && zh < 3000, `zh conversations: ${zh}`);
  // Same seed, same corpus.
  assert.deepEqual(generateConversations(skills, { conversations: 50, seed: 1, zhShare: 0.5 }), convs.slice(0, 50));
});

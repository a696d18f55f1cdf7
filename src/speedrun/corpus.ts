/**
 * The speedrun corpus, generated from nothing: bilingual conversations over the skills, fact
 * statements for pretraining, and a held-out evaluation set drawn with another seed and
 * deduplicated against every training question.
 */
import { makeRng, type Rng } from "../infer/rng.ts";
import { factStatements, SYSTEM_PROMPTS, type Example, type Lang, type Skill } from "./skills.ts";

import type { ChatMessage } from "../data/chat-template.ts";

export interface Conversation {
  messages: ChatMessage[];
}

export interface CorpusOptions {
  /** Number of training conversations. */
  conversations: number;
  seed: number;
  /** Share of conversations in Chinese. */
  zhShare: number;
}

function language(rng: Rng, zhShare: number): Lang {
  return rng.next() < zhShare ? "zh" : "en";
}

/**
 * Training conversations: one to three turns, each an example of a random skill (all skills
 * equally likely), in one language per conversation; one in five opens with a system prompt.
 */
export function generateConversations(skills: readonly Skill[], opts: CorpusOptions): Conversation[] {
  const rng = makeRng(opts.seed);
  const out: Conversation[] = [];
  for (let i = 0; i < opts.conversations; i++) {
    const lang = language(rng, opts.zhShare);
    const messages: ChatMessage[] = [];
    if (rng.int(5) === 0) messages.push({ role: "system", content: rng.pick(SYSTEM_PROMPTS[lang]) });
    const r = rng.next();
    const turns = r < 0.7 ? 1 : r < 0.9 ? 2 : 3;
    for (let t = 0; t < turns; t++) {
      const ex = rng.pick(skills).make(rng, lang, false);
      messages.push({ role: "user", content: ex.question }, { role: "assistant", content: ex.reply });
    }
    out.push({ messages });
  }
  return out;
}

/** Plain text for pretraining besides the conversations: the fact table, stated. */
export function pretrainStatements(): string[] {
  return factStatements();
}

/** Every user message of the training conversations (what held-out questions must avoid). */
export function trainingQuestions(convs: readonly Conversation[]): Set<string> {
  const s = new Set<string>();
  for (const c of convs) for (const m of c.messages) if (m.role === "user") s.add(m.content);
  return s;
}

/**
 * Held-out evaluation questions: perSkill per scored skill, half English half Chinese, from
 * `seed` (use a different one from training), none equal to a training question and none
 * repeated. Stops trying after 50 × perSkill draws (a skill with few possible questions may
 * then have fewer; the report says how many were asked).
 */
export function heldOutExamples(skills: readonly Skill[], perSkill: number, seed: number, seen: ReadonlySet<string>): Example[] {
  const rng = makeRng(seed);
  const out: Example[] = [];
  for (const skill of skills.filter((s) => s.scored)) {
    const asked = new Set<string>();
    let got = 0;
    for (let tries = 0; got < perSkill && tries < 50 * perSkill; tries++) {
      const lang: Lang = got % 2 === 0 ? "en" : "zh";
      const ex = skill.make(rng, lang, true);
      if (seen.has(ex.question) || asked.has(ex.question)) continue;
      asked.add(ex.question);
      out.push(ex);
      got++;
    }
  }
  return out;
}

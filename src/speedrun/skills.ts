/**
 * The speedrun's skills: question families, in English and Chinese, whose answers can be
 * checked exactly. Each skill makes a question with its reference reply and the short answer,
 * and extracts the answer back out of any reply, so evaluation is exact match on real
 * generations (not on the loss).
 */
import type { Rng } from "../infer/rng.ts";
import { FACTS } from "./facts.ts";

export type Lang = "en" | "zh";

export interface Example {
  skill: string;
  lang: Lang;
  /** The user's message. */
  question: string;
  /** The reference assistant reply (what SFT teaches). */
  reply: string;
  /** The short answer a reply must contain, as the skill's extract() returns it. */
  answer: string;
}

export interface Skill {
  name: string;
  /** One sentence for the report card. */
  description: string;
  /** Scored in evaluation (greetings and identity are not: they have no single right answer). */
  scored: boolean;
  /** A random example. heldOut selects the phrasings kept out of training, where a skill has them. */
  make(rng: Rng, lang: Lang, heldOut: boolean): Example;
  /** The answer stated in a reply, or null when there is none. */
  extract(reply: string, lang: Lang): string | null;
}

const lastInt = (s: string): string | null => {
  const m = s.match(/-?\d+/g);
  return m ? String(Number(m[m.length - 1])) : null;
};
const fill = (t: string, v: Record<string, string | number>): string => t.replace(/\{(\w+)\}/g, (_, k: string) => String(v[k]));
const spell = (w: string): string => [...w].join("-");

// --- arithmetic -------------------------------------------------------------------------

/**
 * Multi-digit addition; operands have up to `digits` digits. The reply works column by
 * column from the ones, carrying, as on paper (a scratchpad: small models add far better
 * when they write the carries down), then states the sum.
 */
export function additionSkill(digits: number): Skill {
  const q = {
    en: ["What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}.", "{a} + {b} = ?", "What do you get when you add {a} to {b}?"],
    zh: ["{a} 加 {b} 等于多少？", "计算 {a} + {b}。", "{a} + {b} 是多少？", "请算一下 {a} 加 {b}。"],
  };
  const hi = 10 ** digits;
  return {
    name: "addition",
    description: `add two numbers of up to ${digits} digits`,
    scored: true,
    make(rng, lang) {
      const a = rng.int(hi), b = rng.int(hi);
      const v = { a, b, c: a + b, steps: columnSteps(a, b, digits) };
      const r = lang === "en" ? "{a} + {b}: {steps}, so {a} + {b} = {c}." : "{a} + {b}：{steps}，所以 {a} + {b} = {c}。";
      return { skill: "addition", lang, question: fill(rng.pick(q[lang]), v), reply: fill(r, v), answer: String(a + b) };
    },
    extract: (s) => lastInt(s),
  };
}

/** "6 + 1 = 7, 7 + 6 = 13": each column from the ones up, with the carry added in. */
function columnSteps(a: number, b: number, digits: number): string {
  const out: string[] = [];
  let carry = 0;
  for (let i = 0; i < digits; i++) {
    const x = Math.floor(a / 10 ** i) % 10, y = Math.floor(b / 10 ** i) % 10;
    const sum = x + y + carry;
    out.push(`${x} + ${y}${carry ? " + 1" : ""} = ${sum}`);
    carry = sum >= 10 ? 1 : 0;
  }
  return out.join(", ");
}

// --- unit conversion ----------------------------------------------------------------------

const UNITS = [
  { en: ["kilometers", "meters"], zh: ["千米", "米"], f: 1000 },
  { en: ["meters", "centimeters"], zh: ["米", "厘米"], f: 100 },
  { en: ["centimeters", "millimeters"], zh: ["厘米", "毫米"], f: 10 },
  { en: ["kilograms", "grams"], zh: ["千克", "克"], f: 1000 },
  { en: ["liters", "milliliters"], zh: ["升", "毫升"], f: 1000 },
  { en: ["tons", "kilograms"], zh: ["吨", "千克"], f: 1000 },
] as const;

export const conversionSkill: Skill = {
  name: "conversion",
  description: "convert between metric units (km/m/cm/mm, t/kg/g, L/mL)",
  scored: true,
  make(rng, lang) {
    const u = rng.pick(UNITS);
    const x = 1 + rng.int(999);
    const v = { x, y: x * u.f, from: u[lang][0], to: u[lang][1] };
    const q = lang === "en"
      ? rng.pick(["How many {to} are in {x} {from}?", "Convert {x} {from} to {to}.", "{x} {from} is how many {to}?"])
      : rng.pick(["{x} {from}等于多少{to}？", "把 {x} {from}换算成{to}。", "{x} {from}是多少{to}？"]);
    const r = lang === "en" ? "{x} {from} = {y} {to}." : "{x} {from} = {y} {to}。";
    return { skill: "conversion", lang, question: fill(q, v), reply: fill(r, v), answer: String(v.y) };
  },
  extract: (s) => {
    // The converted amount is the number right before the target unit: the last number.
    return lastInt(s);
  },
};

// --- letters ----------------------------------------------------------------------------

// Pseudo-words from a small alphabet, so letters repeat and questions are many.
const LETTERS = "abcdeilmnorst";
function pseudoWord(rng: Rng, min: number, max: number): string {
  const n = min + rng.int(max - min + 1);
  let w = "";
  for (let i = 0; i < n; i++) w += LETTERS[rng.int(LETTERS.length)];
  return w;
}

export const countSkill: Skill = {
  name: "count-letters",
  description: "count how often a letter occurs in a word",
  scored: true,
  make(rng, lang) {
    const w = pseudoWord(rng, 4, 8);
    // Ask about a letter in the word 4 times out of 5, else any letter (answer 0).
    const l = rng.int(5) < 4 ? w[rng.int(w.length)] : LETTERS[rng.int(LETTERS.length)];
    const n = [...w].filter((c) => c === l).length;
    // Scratchpad: every letter in turn, the asked one with its running count.
    let k = 0;
    const walk = [...w].map((c) => (c === l ? `${c} ${++k}` : c)).join(", ");
    const v = { w, l, n, s: spell(w), walk };
    const q = lang === "en"
      ? rng.pick(["How many times does the letter '{l}' appear in '{w}'?", "Count the letter '{l}' in '{w}'.", "How many '{l}' are in '{w}'?"])
      : rng.pick(["字母“{l}”在“{w}”中出现几次？", "数一数“{w}”里有几个“{l}”。", "“{w}”中有多少个字母“{l}”？"]);
    const r = lang === "en" ? "Counting '{l}' in {s}: {walk}. So there are {n}." : "在 {s} 中数“{l}”：{walk}。所以有 {n} 个。";
    return { skill: "count-letters", lang, question: fill(q, v), reply: fill(r, v), answer: String(n) };
  },
  extract: (s) => lastInt(s),
};

export const reverseSkill: Skill = {
  name: "reverse",
  description: "reverse the letters of a word (answer spelled out)",
  scored: true,
  make(rng, lang) {
    const w = pseudoWord(rng, 3, 6);
    const rev = [...w].reverse().join("");
    const v = { w, rev, s: spell(w), rs: spell(rev) };
    const q = lang === "en"
      ? rng.pick(["Reverse the word '{w}'.", "Spell '{w}' backwards.", "What is '{w}' reversed?"])
      : rng.pick(["把“{w}”倒过来写。", "“{w}”反过来是什么？", "请将单词“{w}”反转。"]);
    // The answer is spelled out letter by letter: a word's BPE pieces hide its letters, so a
    // small model reverses spelled letters reliably but not the re-joined word.
    const r = lang === "en" ? "'{w}' is {s}; reversed, letter by letter: {rs}." : "“{w}”是 {s}；倒过来逐个字母是：{rs}。";
    return { skill: "reverse", lang, question: fill(q, v), reply: fill(r, v), answer: rev };
  },
  extract: (s) => {
    // The last run of dash-separated single letters, joined.
    const m = s.match(/\b[a-z](?:-[a-z])*\b/g);
    return m ? m[m.length - 1].replace(/-/g, "") : null;
  },
};

// --- calendar ---------------------------------------------------------------------------

const WEEKDAYS = {
  en: ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
  zh: ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"],
};

export const weekdaySkill: Skill = {
  name: "weekday",
  description: "the day of the week of a date in 2020–2029",
  scored: true,
  make(rng, lang) {
    const t = Date.UTC(2020, 0, 1) + rng.int(3653) * 86_400_000;
    const d = new Date(t);
    const date = d.toISOString().slice(0, 10);
    const wd = d.getUTCDay();
    const v = { date, wd: WEEKDAYS[lang][wd] };
    const q = lang === "en"
      ? rng.pick(["What day of the week is {date}?", "Which weekday was {date}?", "On what day of the week does {date} fall?"])
      : rng.pick(["{date} 是星期几？", "{date} 那天是星期几？", "请问 {date} 是周几？"]);
    const r = lang === "en" ? "{date} is a {wd}." : "{date} 是{wd}。";
    return { skill: "weekday", lang, question: fill(q, v), reply: fill(r, v), answer: WEEKDAYS[lang][wd] };
  },
  extract: (s, lang) => {
    const found = WEEKDAYS[lang].filter((w) => s.includes(w));
    return found.length === 1 ? found[0] : null;
  },
};

// --- facts ------------------------------------------------------------------------------

/**
 * Capitals from the fact table. Training asks with the first phrasings; evaluation asks with
 * the last one of each language, never seen in training, so the test is recall of the fact
 * (which pretraining states), not of a memorized question.
 */
const CAPITAL_Q = {
  en: ["What is the capital of {c}?", "Name the capital city of {c}.", "Which city is the capital of {c}?"],
  zh: ["{c}的首都是哪里？", "{c}的首都叫什么？", "请告诉我{c}的首都。"],
};

export const capitalSkill: Skill = {
  name: "capital",
  description: "capital cities from the built-in fact table (asked in a held-out phrasing)",
  scored: true,
  make(rng, lang, heldOut) {
    const f = rng.pick(FACTS);
    const qs = CAPITAL_Q[lang];
    const q = heldOut ? qs[qs.length - 1] : qs[rng.int(qs.length - 1)];
    const v = { c: f.country[lang], p: f.capital[lang] };
    const r = lang === "en" ? "The capital of {c} is {p}." : "{c}的首都是{p}。";
    return { skill: "capital", lang, question: fill(q, v), reply: fill(r, v), answer: f.capital[lang] };
  },
  extract: (s, lang) => {
    // The capital named after the country: with "is"/"是" the last capital mentioned.
    let best: string | null = null, at = -1;
    for (const f of FACTS) {
      const i = s.lastIndexOf(f.capital[lang]);
      // Longest match wins a tie at one offset (e.g. "Mexico City" over a shorter name).
      if (i > at || (i === at && best !== null && f.capital[lang].length > best.length)) { at = i; best = f.capital[lang]; }
    }
    return at >= 0 ? best : null;
  },
};

/** Plain statements of the facts, for pretraining text. */
export function factStatements(): string[] {
  const out: string[] = [];
  for (const f of FACTS) {
    out.push(`The capital of ${f.country.en} is ${f.capital.en}. ${f.capital.en} is a city in ${f.continent.en}.`);
    out.push(`${f.country.zh}的首都是${f.capital.zh}。${f.capital.zh}位于${f.continent.zh}。`);
  }
  return out;
}

// --- small talk (not scored) -------------------------------------------------------------

const GREET = {
  en: [["Hi!", "Hello! How can I help you today?"], ["Hello", "Hi there! What would you like to know?"], ["Good morning!", "Good morning! How can I help?"],
    ["Thanks!", "You're welcome!"], ["Thank you very much.", "Happy to help!"], ["Bye!", "Goodbye! Have a nice day."],
    ["How are you?", "I'm doing well, thank you! How can I help you?"]],
  zh: [["你好", "你好！有什么可以帮你的吗？"], ["您好！", "您好！请问有什么需要？"], ["早上好", "早上好！今天想聊点什么？"],
    ["谢谢！", "不客气！"], ["非常感谢。", "很高兴能帮到你！"], ["再见", "再见！祝你愉快。"], ["你好吗？", "我很好，谢谢！有什么可以帮你的？"]],
};
const IDENTITY = {
  en: [["Who are you?", "I am Mynah, a small chat model trained from scratch on this computer."],
    ["What is your name?", "My name is Mynah."],
    ["What can you do?", "I can add numbers, convert units, count and reverse letters, tell the day of the week of a date, and name capital cities."],
    ["Are you ChatGPT?", "No, I am Mynah, a small model built with the mynah toolkit."]],
  zh: [["你是谁？", "我是八哥（Mynah），一个在这台电脑上从零训练的小型聊天模型。"],
    ["你叫什么名字？", "我叫八哥（Mynah）。"],
    ["你会做什么？", "我会做加法、换算单位、数字母、倒写单词、说出日期是星期几，还知道一些国家的首都。"],
    ["你是ChatGPT吗？", "不是，我是八哥（Mynah），用 mynah 工具包训练的小模型。"]],
};

export const smallTalkSkill: Skill = {
  name: "small-talk",
  description: "greetings and questions about itself",
  scored: false,
  make(rng, lang) {
    const [asked, reply] = rng.int(2) ? rng.pick(GREET[lang]) : rng.pick(IDENTITY[lang]);
    // People type "hello", "Hello" and "hello!" alike: vary case and end punctuation, so the
    // model does not learn only one spelling of each greeting.
    let question = rng.int(3) === 0 ? asked.replace(/[!?.！？。]+$/u, "") : asked;
    if (lang === "en" && rng.int(2) === 0) question = question.toLowerCase();
    return { skill: "small-talk", lang, question, reply, answer: reply };
  },
  extract: (s) => s.trim(),
};

/** The skills of a speedrun, scored ones first. */
export function speedrunSkills(opts: { digits: number }): Skill[] {
  return [additionSkill(opts.digits), conversionSkill, countSkill, reverseSkill, weekdaySkill, capitalSkill, smallTalkSkill];
}

/** System prompts sometimes put before a conversation, so chat with one works. */
export const SYSTEM_PROMPTS: Record<Lang, string[]> = {
  en: ["You are Mynah, a helpful assistant.", "You are a helpful assistant. Answer briefly."],
  zh: ["你是八哥，一个乐于助人的助手。", "你是一个有帮助的助手，请简洁回答。"],
};

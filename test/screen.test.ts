/**
 * Output screening: PII detectors on generated personal data (with checksums computed here,
 * independently of src/screen), degeneration, rules and config loading, and the rules run
 * over the real red-team prompts of hh-rlhf.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  screenReply, findPii, luhnValid, cnIdValid, findLoop, resolveScreenConfig, loadScreenConfig, logScreen,
  DEFAULT_SCREEN_CONFIG, type ScreenConfig,
} from "../src/screen/index.ts";

// A small seeded generator so the PII is random but reproducible.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const digits = (r: () => number, n: number): string => Array.from({ length: n }, () => Math.floor(r() * 10)).join("");

// Luhn check digit, written from the definition (double every second digit from the right).
function luhnDigit(body: string): string {
  let sum = 0;
  const rev = [...body].reverse();
  rev.forEach((ch, i) => {
    const d = Number(ch);
    sum += i % 2 === 0 ? (d * 2 > 9 ? d * 2 - 9 : d * 2) : d;
  });
  return String((10 - (sum % 10)) % 10);
}
// GB 11643-1999 ISO 7064 MOD 11-2: weights 2^(17-i) mod 11.
function idCheck(body: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(body[i]) * (2 ** (17 - i) % 11);
  const v = (12 - (sum % 11)) % 11;
  return v === 10 ? "X" : String(v);
}
function makeId(r: () => number): string {
  const y = 1950 + Math.floor(r() * 60), m = 1 + Math.floor(r() * 12), d = 1 + Math.floor(r() * 28);
  const body = "110105" + String(y) + String(m).padStart(2, "0") + String(d).padStart(2, "0") + digits(r, 3);
  return body + idCheck(body);
}

test("Luhn and Chinese ID validators agree with independent check digits", () => {
  const r = rng(1);
  for (let i = 0; i < 200; i++) {
    const body = "4" + digits(r, 14);
    const good = body + luhnDigit(body);
    assert.ok(luhnValid(good), good);
    const bad = body + String((Number(luhnDigit(body)) + 1 + Math.floor(r() * 9)) % 10);
    assert.ok(!luhnValid(bad), bad);
    const id = makeId(r);
    assert.ok(cnIdValid(id), id);
    const wrong = id.slice(0, 17) + (id[17] === "0" ? "1" : "0");
    assert.ok(!cnIdValid(wrong), wrong);
  }
  assert.ok(luhnValid("4111111111111111")); // the well-known Visa test number
  assert.ok(cnIdValid("11010519491231002X")); // the standard's worked example
});

test("generated PII is found and redacted; near-misses are left alone", () => {
  const r = rng(7);
  for (let i = 0; i < 50; i++) {
    const body = "5" + digits(r, 14);
    const card = body + luhnDigit(body);
    const cardSpaced = card.replace(/(\d{4})(?=\d)/g, "$1 ");
    const email = `user.${digits(r, 4)}@example${i}.com`;
    const cnMobile = "1" + (3 + Math.floor(r() * 7)) + digits(r, 9);
    const intl = `+44 20 ${digits(r, 4)} ${digits(r, 4)}`;
    const id = makeId(r);
    const text = `Mail ${email}, call ${cnMobile} or ${intl}. Card ${i % 2 ? card : cardSpaced}. 身份证号${id}。`;
    const res = screenReply(text);
    for (const secret of [email, cnMobile, intl, card, cardSpaced, id]) {
      assert.ok(!res.text.includes(secret), `${secret} leaked in ${res.text}`);
    }
    assert.equal(res.verdict, "redacted");
    const kinds = new Set(res.events.map((e) => e.rule));
    for (const k of ["pii:email", "pii:phone", "pii:card", "pii:cn_id"]) assert.ok(kinds.has(k), `${k} missing for ${text}`);
    assert.match(res.text, /\[EMAIL\].*\[PHONE\].*\[PHONE\].*\[CARD\].*\[CN_ID\]/);
  }
  // Luhn-invalid card numbers, IDs with a wrong check digit and ordinary numbers stay.
  const body = "4" + digits(r, 14);
  const badCard = body + String((Number(luhnDigit(body)) + 5) % 10);
  const id = makeId(r);
  const badId = id.slice(0, 17) + (id[17] === "1" ? "2" : "1");
  const plain = `Order ${badCard}, ref ${badId}, in 2024 we sold 1234567 units for 12.50 each; 2+2=4.`;
  const res = screenReply(plain);
  assert.equal(res.text, plain);
  assert.equal(res.verdict, "pass");
  assert.deepEqual(findPii(plain), []);
  // Chinese mobile with +86 and separators.
  assert.deepEqual(findPii("请拨打 +86 138-1234-5678 联系").map((s) => s.text), ["+86 138-1234-5678"]);
});

test("repetition loops are cut after the first copy and flagged; runaway length is cut", () => {
  const loopText = "The answer is 42. " + "I like the color blue. ".repeat(8);
  const res = screenReply(loopText);
  assert.equal(res.verdict, "flagged");
  assert.ok(res.events.some((e) => e.rule === "degeneration:loop"));
  assert.ok(res.text.length < loopText.length / 3, res.text);
  assert.ok(res.text.startsWith("The answer is 42."));
  assert.equal(res.text.split("blue").length - 1, 1, `exactly one copy kept: ${res.text}`);
  // Chinese loop.
  const zh = "好的，" + "我们去公园玩吧。".repeat(6);
  const z = screenReply(zh);
  assert.ok(z.events.some((e) => e.rule === "degeneration:loop"));
  assert.equal(z.text.split("公园").length - 1, 1);
  // Not loops: separators, a short "haha", a normal paragraph.
  assert.equal(findLoop("-".repeat(60) + " table"), null);
  assert.equal(findLoop("haha, that is funny"), null);
  assert.equal(findLoop("One plus one is two. Two plus two is four. Three plus three is six."), null);
  // Runaway length.
  const cfg = resolveScreenConfig({ degeneration: { maxChars: 50 } });
  const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
  const l = screenReply(long, {}, cfg);
  assert.ok([...l.text].length <= 50);
  assert.ok(l.events.some((e) => e.rule === "degeneration:length"));
  assert.ok(long.startsWith(l.text) && !l.text.endsWith("wor"), l.text);
});

test("confidence: mean token log-probability reported, low ones flagged", () => {
  const hi = screenReply("Paris.", { tokenLogprobs: [-0.1, -0.3] });
  assert.ok(Math.abs(hi.meanLogprob! - -0.2) < 1e-12);
  assert.equal(hi.lowConfidence, false);
  assert.equal(hi.verdict, "pass");
  const lo = screenReply("Paris.", { tokenLogprobs: [-3, -4] });
  assert.equal(lo.lowConfidence, true);
  assert.equal(lo.verdict, "flagged");
  assert.equal(lo.text, "Paris.");
  assert.equal(screenReply("x").meanLogprob, null);
});

test("rules: redact, flag, block; blocklists match whole words (and Chinese anywhere)", () => {
  const cfg = resolveScreenConfig({
    refusal: "NO.",
    rules: [
      { name: "secret-word", type: "blocklist", words: ["banana split"], action: "redact", replacement: "[X]" },
      { name: "watch", type: "regex", pattern: "\\bpassword\\b", action: "flag" },
      { name: "no-lottery", type: "blocklist", words: ["彩票"], action: "block" },
    ],
  });
  const a = screenReply("I love a Banana  Split but not bananas splits.", {}, cfg);
  assert.equal(a.text, "I love a [X] but not bananas splits.");
  assert.equal(a.verdict, "redacted");
  const b = screenReply("Your password is hunter2", {}, cfg);
  assert.equal(b.verdict, "flagged");
  assert.equal(b.text, "Your password is hunter2");
  assert.deepEqual(b.events.map((e) => e.rule), ["watch"]);
  const c = screenReply("我想买彩票", {}, cfg);
  assert.equal(c.verdict, "blocked");
  assert.equal(c.text, "NO.");
  assert.equal(c.original, "我想买彩票");
  // Default rules: instructions for weapons blocked, profanity redacted.
  assert.equal(screenReply("First you build a pipe bomb from ...").verdict, "blocked");
  assert.equal(screenReply("That is fucking great").text, "That is **** great");
  assert.equal(screenReply("Shitake mushrooms").text, "Shitake mushrooms");
});

test("config files: JSON and YAML load; bad fields are named", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-screen-"));
  writeFileSync(join(dir, "r.yaml"), "refusal: Nope\nrules:\n  - name: cats\n    type: blocklist\n    words: [cat]\n    action: block\nconfidence:\n  minMeanLogprob: -1\n");
  const y = loadScreenConfig(join(dir, "r.yaml"));
  assert.equal(y.refusal, "Nope");
  assert.equal(y.confidence.minMeanLogprob, -1);
  assert.equal(y.pii.enabled, true);
  assert.equal(screenReply("a cat", {}, y).text, "Nope");
  writeFileSync(join(dir, "bad.json"), JSON.stringify({ rules: [{ name: "x", type: "regex", pattern: "(", action: "block" }] }));
  assert.throws(() => loadScreenConfig(join(dir, "bad.json")), /bad\.json.*rules\[0\]\.pattern/);
  writeFileSync(join(dir, "bad2.json"), JSON.stringify({ pii: { action: "erase" } }));
  assert.throws(() => loadScreenConfig(join(dir, "bad2.json")), /pii\.action/);
  writeFileSync(join(dir, "bad3.json"), JSON.stringify({ confidence: { minMeanLogprob: "low" } }));
  assert.throws(() => loadScreenConfig(join(dir, "bad3.json")), /confidence\.minMeanLogprob.*number/);
  assert.throws(() => resolveScreenConfig({ colour: 1 }), /colour/);
  // The log is one JSON line per reply.
  const log = join(dir, "screen.jsonl");
  logScreen(log, screenReply("mail me at a.b@c.org"));
  logScreen(log, screenReply("hello"));
  const lines = readFileSync(log, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.equal(lines[0].verdict, "redacted");
  assert.equal(lines[0].events[0].rule, "pii:email");
  assert.equal(lines[1].verdict, "pass");
});

const HH = join(import.meta.dirname, "..", "..", "shared", "data", "chat", "hh_rlhf_harmless_test_en.jsonl");
test("rules from a file merge by name over the defaults; a default is switched off only explicitly", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-screen-"));
  // The README's own example: its rules come on top of the built-in ones.
  writeFileSync(join(dir, "readme.yaml"), [
    "refusal: \"Sorry, I can't help with that.\"",
    "rules:",
    "  - { name: internal-codenames, type: blocklist, words: [bluebird, 蓝鸟], action: redact }",
    "  - { name: urls, type: regex, pattern: \"https?://\\\\S+\", action: flag }",
    "pii: { enabled: true, kinds: [email, phone, card, cn_id], action: redact }",
    "confidence: { enabled: true, minMeanLogprob: -2.5 }",
  ].join("\n") + "\n");
  const cfg = loadScreenConfig(join(dir, "readme.yaml"));
  assert.deepEqual(cfg.rules.map((r) => r.name), ["mass-harm-instructions", "profanity", "internal-codenames", "urls"]);
  assert.equal(screenReply("First you build a pipe bomb from ...", {}, cfg).verdict, "blocked");
  assert.equal(screenReply("That is fucking great", {}, cfg).text, "That is **** great");
  assert.equal(screenReply("Project bluebird ships", {}, cfg).text, "Project [REDACTED] ships");
  assert.equal(screenReply("see https://x.org", {}, cfg).verdict, "flagged");
  // Changing a default by name keeps its place and its other fields.
  const flagSwear = resolveScreenConfig({ rules: [{ name: "profanity", action: "flag" }] });
  assert.deepEqual(flagSwear.rules.map((r) => r.name), ["mass-harm-instructions", "profanity"]);
  const f = screenReply("That is fucking great", {}, flagSwear);
  assert.equal(f.verdict, "flagged");
  assert.equal(f.text, "That is fucking great");
  // Switching one off.
  const off = resolveScreenConfig({ rules: [{ name: "profanity", enabled: false }] });
  assert.deepEqual(off.rules.map((r) => r.name), ["mass-harm-instructions"]);
  assert.equal(screenReply("That is fucking great", {}, off).verdict, "pass");
  // All defaults off.
  assert.deepEqual(resolveScreenConfig({ defaultRules: false, rules: [{ name: "x", type: "blocklist", words: ["y"], action: "flag" }] }).rules.map((r) => r.name), ["x"]);
  assert.deepEqual(resolveScreenConfig({ rules: [] }).rules.map((r) => r.name), ["mass-harm-instructions", "profanity"]);
  // Mistakes are named.
  assert.throws(() => resolveScreenConfig({ rules: [{ name: "profanty", enabled: false }] }, "f.yaml"), /f\.yaml: field "rules\[0\]\.name" disables "profanty", which is not a default rule/);
  assert.throws(() => resolveScreenConfig({ rules: [{ name: "a", type: "blocklist", words: ["b"], action: "flag" }, { name: "a", enabled: false }] }), /rules\[1\]\.name.*second time/);
  assert.throws(() => resolveScreenConfig({ rules: [{ name: "new-one", action: "flag" }] }), /rules\[0\]\.type/);
  assert.throws(() => resolveScreenConfig({ rules: [{ name: "profanity", enabled: "no" }] }), /rules\[0\]\.enabled/);
  assert.throws(() => resolveScreenConfig({ rules: [{ name: "profanity", word: ["x"] }] }), /rules\[0\]\.word" is not a known field/);
});

test("red-team prompts from hh-rlhf through the rules", { skip: existsSync(HH) ? false : `${HH} is absent` }, () => {
  const rows = readFileSync(HH, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
  const prompts = rows.map((r) => r.messages[0].content);
  assert.ok(prompts.length > 1000);
  const words = ["steal", "kill", "drugs", "gun"];
  const cfg: ScreenConfig = resolveScreenConfig({
    defaultRules: false,
    rules: [{ name: "red-team-topics", type: "blocklist", words, action: "flag" }],
    pii: { enabled: false },
    degeneration: { enabled: false },
  });
  let flagged = 0;
  for (const p of prompts) {
    // Independent expectation: lower-cased text split on non-letters contains one of the words.
    const tokens = new Set(p.toLowerCase().split(/[^a-z]+/));
    const expect = words.some((w) => tokens.has(w));
    const res = screenReply(p, {}, cfg);
    assert.equal(res.verdict === "flagged", expect, p);
    assert.equal(res.text, p);
    if (expect) flagged++;
  }
  assert.ok(flagged > 20, `only ${flagged} prompts hit the topic words`);
  // Blocking: every prompt with a hit is replaced by the refusal, the rest pass unchanged.
  const block = resolveScreenConfig({ rules: [{ name: "b", type: "blocklist", words, action: "block" }] });
  for (const p of prompts.slice(0, 300)) {
    const res = screenReply(p, {}, block);
    if (res.verdict === "blocked") assert.equal(res.text, block.refusal);
    else assert.ok(!words.some((w) => new Set(p.toLowerCase().split(/[^a-z]+/)).has(w)));
  }
  // The default pipeline never throws and PII redaction fires only on validated spans.
  for (const r of rows) {
    for (const m of r.messages) {
      const res = screenReply(m.content, {}, DEFAULT_SCREEN_CONFIG);
      for (const e of res.events.filter((e) => e.rule === "pii:card")) for (const s of e.matches!) assert.ok(luhnValid(s.replace(/\D/g, "")));
    }
  }
});

/**
 * The screening pipeline every reply passes before it is shown (CLI now, the server later).
 *
 * Order, and why:
 *  1. degeneration — a loop is cut after its first copy, runaway text at maxChars, so the
 *     later rules see (and the user gets) only the useful part;
 *  2. rules (blocklists, regexes) in config order — "block" replaces the whole reply with the
 *     fixed refusal and ends screening; "redact" replaces the match; "flag" only records;
 *  3. personal data — e-mail, phones, card numbers (Luhn), Chinese IDs (checksum);
 *  4. confidence — the mean token log-probability, reported; flagged under the threshold.
 * Every step that fires adds a ScreenEvent saying which rule, what it did and what it matched.
 */
import { appendFileSync } from "node:fs";
import { ruleFlags, type RuleAction, type ScreenConfig, type ScreenRule, DEFAULT_SCREEN_CONFIG } from "./config.ts";
import { cutRunaway, findLoop } from "./degeneration.ts";
import { findPii, redactSpans, type PiiSpan } from "./pii.ts";

export interface ScreenEvent {
  /** Rule name: a config rule's name, or pii:<kind>, degeneration:loop, degeneration:length, confidence. */
  rule: string;
  action: RuleAction | "cut";
  /** What fired, in words. */
  detail: string;
  /** The matched texts (for redactions, what was removed). */
  matches?: string[];
}

export interface ScreenResult {
  /** The reply to show. */
  text: string;
  /** The reply as generated. */
  original: string;
  /** blocked: replaced by the refusal; flagged: shown but marked; pass: nothing fired (redactions alone are "redacted"). */
  verdict: "pass" | "redacted" | "flagged" | "blocked";
  events: ScreenEvent[];
  /** Mean log-probability of the reply's tokens (null when not given). */
  meanLogprob: number | null;
  lowConfidence: boolean;
}

/** What the generator knows about the reply besides its text. */
export interface ReplyInfo {
  /** Log-probability of each generated token under the sampling distribution's model. */
  tokenLogprobs?: ArrayLike<number>;
}

/** Builds the global regex of a rule. Blocklist words match whole words, case-insensitively. */
export function ruleRegex(rule: ScreenRule): RegExp {
  if (rule.type === "regex") return new RegExp(rule.pattern!, ruleFlags(rule.flags));
  const alts = rule.words!.map((w) => {
    const esc = w.trim().replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\s+/g, "\\s+");
    // Word boundaries only where the word starts/ends with a letter or digit of a spaced script:
    // Chinese has no spaces, so a Chinese word matches anywhere.
    const wordy = (c: string): boolean => /[A-Za-z0-9\u00C0-\u024F]/.test(c);
    const pre = wordy(w.trim()[0]) ? "(?<![\\p{L}\\p{N}_])" : "";
    const post = wordy(w.trim().slice(-1)) ? "(?![\\p{L}\\p{N}_])" : "";
    return pre + esc + post;
  });
  return new RegExp(`(?:${alts.join("|")})`, "giu");
}

const compiled = new WeakMap<ScreenRule, RegExp>();
/**
 * The rule's regex, compiled once per rule and shared (lastIndex reset here): every user runs
 * its matches to the end before another starts, so sharing is safe on one thread.
 */
export function regexOf(rule: ScreenRule): RegExp {
  let re = compiled.get(rule);
  if (!re) compiled.set(rule, (re = ruleRegex(rule)));
  re.lastIndex = 0;
  return re;
}

/** Mean of the token log-probabilities, or null for none. */
export function meanLogprob(lp: ArrayLike<number> | undefined): number | null {
  if (!lp || lp.length === 0) return null;
  let s = 0;
  for (let i = 0; i < lp.length; i++) s += lp[i];
  return s / lp.length;
}

/** Runs the pipeline over one reply. Pure: logging is the caller's (see logScreen). */
export function screenReply(reply: string, info: ReplyInfo = {}, cfg: ScreenConfig = DEFAULT_SCREEN_CONFIG): ScreenResult {
  const events: ScreenEvent[] = [];
  let text = reply;
  let flagged = false;
  const mean = meanLogprob(info.tokenLogprobs);
  const finish = (blocked: boolean): ScreenResult => {
    let lowConfidence = false;
    if (cfg.confidence.enabled && mean !== null && mean < cfg.confidence.minMeanLogprob) {
      lowConfidence = true;
      flagged = true;
      events.push({
        rule: "confidence",
        action: "flag",
        detail: `mean token log-probability ${mean.toFixed(3)} is below ${cfg.confidence.minMeanLogprob}`,
      });
    }
    const redacted = events.some((e) => e.action === "redact" || e.action === "cut");
    const verdict = blocked ? "blocked" : flagged ? "flagged" : redacted ? "redacted" : "pass";
    return { text: blocked ? cfg.refusal : text, original: reply, verdict, events, meanLogprob: mean, lowConfidence };
  };

  // 1. Degeneration.
  if (cfg.degeneration.enabled) {
    const loop = findLoop(text, cfg.degeneration);
    if (loop) {
      const unit = text.slice(loop.start, loop.start + loop.period);
      events.push({
        rule: "degeneration:loop",
        action: "cut",
        detail: `a ${loop.period}-character unit repeats ${loop.copies} times from offset ${loop.start}; cut after the first copy`,
        matches: [unit],
      });
      text = text.slice(0, loop.cutAt).trimEnd();
      flagged = true;
    }
    const cut = cutRunaway(text, cfg.degeneration.maxChars);
    if (cut !== null) {
      events.push({ rule: "degeneration:length", action: "cut", detail: `longer than ${cfg.degeneration.maxChars} characters; cut` });
      text = cut;
      flagged = true;
    }
  }

  // 2. Rules.
  for (const rule of cfg.rules) {
    const matches = [...nonEmptyMatches(text, regexOf(rule))].map((m) => m[0]);
    if (matches.length === 0) continue;
    const words = rule.type === "blocklist" ? "blocklisted term" : "pattern";
    if (rule.action === "block") {
      events.push({ rule: rule.name, action: "block", detail: `${words} matched; reply replaced by the refusal`, matches });
      return finish(true);
    }
    if (rule.action === "redact") {
      text = text.replace(regexOf(rule), rule.replacement ?? "[REDACTED]");
      events.push({ rule: rule.name, action: "redact", detail: `${matches.length} ${words} match(es) redacted`, matches });
    } else {
      flagged = true;
      events.push({ rule: rule.name, action: "flag", detail: `${matches.length} ${words} match(es)`, matches });
    }
  }

  // 3. Personal data.
  if (cfg.pii.enabled) {
    const spans = findPii(text, new Set(cfg.pii.kinds));
    const byKind = new Map<string, PiiSpan[]>();
    for (const s of spans) byKind.set(s.kind, [...(byKind.get(s.kind) ?? []), s]);
    for (const [kind, list] of byKind) {
      events.push({ rule: `pii:${kind}`, action: cfg.pii.action, detail: `${list.length} ${kind} found`, matches: list.map((s) => s.text) });
    }
    if (spans.length > 0) {
      if (cfg.pii.action === "block") return finish(true);
      if (cfg.pii.action === "flag") flagged = true;
      else text = redactSpans(text, spans);
    }
  }

  return finish(false);
}

/**
 * The non-empty matches of a global regex in text, in order, from its lastIndex on. After an
 * empty match it steps on as matchAll does (a whole code point under the u flag); unlike
 * matchAll it runs on the regex itself, so a compiled rule (regexOf) is not copied per call.
 */
export function* nonEmptyMatches(text: string, re: RegExp): Generator<RegExpExecArray> {
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[0].length > 0) {
      yield m;
      continue;
    }
    const i = re.lastIndex, c = text.charCodeAt(i);
    re.lastIndex = i + (re.unicode && c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1);
  }
}

/**
 * Whether screenReply(text, {}, cfg) would block, when degeneration is off (it cuts before the
 * rules run), by running only the steps that can decide that: the rules up to the last "block"
 * rule, the redactions among them applied as screenReply applies them (a later block rule sees
 * redacted text), and the personal-data step only when its action is "block". Flag rules,
 * later rules and redacting PII cannot change a block verdict, so they are skipped: streaming
 * asks this after every token (screen/stream.ts), where the whole pipeline cost ~3 × more.
 */
export function blockedByRules(text: string, cfg: ScreenConfig): boolean {
  let last = -1;
  cfg.rules.forEach((r, i) => { if (r.action === "block") last = i; });
  for (let i = 0; i <= last; i++) {
    const rule = cfg.rules[i];
    if (rule.action === "flag") continue;
    if (nonEmptyMatches(text, regexOf(rule)).next().done) continue;
    if (rule.action === "block") return true;
    text = text.replace(regexOf(rule), rule.replacement ?? "[REDACTED]");
  }
  return cfg.pii.enabled && cfg.pii.action === "block" && findPii(text, new Set(cfg.pii.kinds)).length > 0;
}

/** Appends one screening record as a JSON line (the log the issue asks for). */
export function logScreen(path: string, result: ScreenResult, extra: Record<string, unknown> = {}): void {
  const rec = {
    time: new Date().toISOString(),
    verdict: result.verdict,
    meanLogprob: result.meanLogprob,
    events: result.events,
    ...(result.verdict !== "pass" ? { original: result.original, shown: result.text } : {}),
    ...extra,
  };
  appendFileSync(path, JSON.stringify(rec) + "\n");
}

/**
 * Screening configuration: the rules every reply passes before it is shown. Loaded from a
 * JSON or YAML file (by extension) and merged over DEFAULT_SCREEN_CONFIG; every field is
 * checked, and a bad one is reported with the file and the field's path. Rules merge by
 * name: a file adds its own rules and can change or switch off (`enabled: false`) a default
 * one, so following the README's example never silently drops the built-in blocking rules.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { PiiKind } from "./pii.ts";

/** What a rule does when it matches: redact the match, flag the reply, or block it whole. */
export type RuleAction = "redact" | "flag" | "block";

export interface ScreenRule {
  name: string;
  /** blocklist: whole words/phrases, case-insensitive; regex: a JavaScript pattern. */
  type: "blocklist" | "regex";
  words?: string[];
  pattern?: string;
  /** Regex flags (g is always added; default "iu"). */
  flags?: string;
  action: RuleAction;
  /** Text that replaces a redacted match (default "[REDACTED]"). */
  replacement?: string;
  /**
   * Regex rules: the longest text the pattern may need before it matches, held back while
   * streaming so the start of a match is never shown early (default 64; see screen/stream.ts).
   */
  holdBack?: number;
}

export interface ScreenConfig {
  /** The fixed reply shown instead of a blocked one. */
  refusal: string;
  rules: ScreenRule[];
  pii: { enabled: boolean; kinds: PiiKind[]; action: RuleAction };
  degeneration: { enabled: boolean; maxPeriod: number; minCopies: number; minChars: number; maxChars: number };
  /** Replies whose mean token log-probability is below minMeanLogprob are flagged. */
  confidence: { enabled: boolean; minMeanLogprob: number };
}

export const DEFAULT_SCREEN_CONFIG: ScreenConfig = {
  refusal: "Sorry, I can't help with that.",
  rules: [
    {
      name: "mass-harm-instructions",
      type: "regex",
      // Instructions for making weapons or hard drugs: a verb of making near the object.
      pattern:
        "\\b(?:make|making|build|building|synthesi[sz]e|cook|cooking|assemble)\\b[^.?!\\n]{0,40}?" +
        "\\b(?:bombs?|explosives?|pipe ?bombs?|nerve agents?|sarin|ricin|napalm|meth(?:amphetamine)?)\\b",
      action: "block",
    },
    {
      name: "profanity",
      type: "blocklist",
      words: ["fuck", "fucking", "motherfucker", "cunt", "shit", "bullshit", "asshole", "傻逼", "他妈的", "操你"],
      action: "redact",
      replacement: "****",
    },
  ],
  pii: { enabled: true, kinds: ["email", "phone", "card", "cn_id"], action: "redact" },
  degeneration: { enabled: true, maxPeriod: 200, minCopies: 3, minChars: 24, maxChars: 4000 },
  confidence: { enabled: true, minMeanLogprob: -2.5 },
};

const ACTIONS: readonly RuleAction[] = ["redact", "flag", "block"];
const PII_KINDS: readonly PiiKind[] = ["email", "phone", "card", "cn_id"];

function fail(where: string, field: string, msg: string): never {
  throw new Error(`screening config ${where}: field "${field}" ${msg}`);
}

const RULE_FIELDS = new Set(["name", "type", "words", "pattern", "flags", "action", "replacement", "holdBack", "enabled"]);

function checkRule(r: unknown, f: string, where: string): ScreenRule {
  if (typeof r !== "object" || r === null) fail(where, f, "must be an object");
  const o = r as Record<string, unknown>;
  if (typeof o.name !== "string" || !o.name) fail(where, `${f}.name`, "must be a non-empty string");
  if (o.type !== "blocklist" && o.type !== "regex") fail(where, `${f}.type`, `must be "blocklist" or "regex", got ${JSON.stringify(o.type)}`);
  if (!ACTIONS.includes(o.action as RuleAction)) fail(where, `${f}.action`, `must be one of ${ACTIONS.join(", ")}, got ${JSON.stringify(o.action)}`);
  if (o.type === "blocklist") {
    if (!Array.isArray(o.words) || o.words.length === 0 || o.words.some((w) => typeof w !== "string" || !w.trim()))
      fail(where, `${f}.words`, "must be a non-empty list of non-empty strings");
  } else {
    if (typeof o.pattern !== "string" || !o.pattern) fail(where, `${f}.pattern`, "must be a non-empty string");
    try {
      new RegExp(o.pattern as string, ruleFlags(o.flags as string | undefined));
    } catch (err) {
      fail(where, `${f}.pattern`, `is not a valid regular expression: ${(err as Error).message}`);
    }
  }
  if (o.flags !== undefined && typeof o.flags !== "string") fail(where, `${f}.flags`, "must be a string");
  if (o.replacement !== undefined && typeof o.replacement !== "string") fail(where, `${f}.replacement`, "must be a string");
  if (o.holdBack !== undefined && (!Number.isInteger(o.holdBack) || (o.holdBack as number) < 0 || (o.holdBack as number) > 100_000))
    fail(where, `${f}.holdBack`, `must be an integer in [0, 100000], got ${JSON.stringify(o.holdBack)}`);
  const { enabled: _e, ...rule } = o;
  return rule as unknown as ScreenRule;
}

/**
 * Merges the file's `rules` over `base` by name. An entry whose name is new is a whole rule,
 * appended in file order; an entry naming a base rule changes the fields it gives (the rule
 * keeps its place), or with `enabled: false` removes it. Naming no base rule while disabling
 * one, or naming one rule twice, is an error (a typo would otherwise switch nothing off).
 */
function mergeRules(base: ScreenRule[], entries: unknown[], where: string): ScreenRule[] {
  const out: (ScreenRule | null)[] = base.map((r) => ({ ...r }));
  const seen = new Set<string>();
  entries.forEach((e, i) => {
    const f = `rules[${i}]`;
    if (typeof e !== "object" || e === null || Array.isArray(e)) fail(where, f, "must be an object");
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!RULE_FIELDS.has(k)) fail(where, `${f}.${k}`, `is not a known field (known: ${[...RULE_FIELDS].join(", ")})`);
    if (typeof o.name !== "string" || !o.name) fail(where, `${f}.name`, "must be a non-empty string");
    if (seen.has(o.name)) fail(where, `${f}.name`, `names rule ${JSON.stringify(o.name)} a second time`);
    seen.add(o.name);
    if (o.enabled !== undefined && typeof o.enabled !== "boolean") fail(where, `${f}.enabled`, "must be true or false");
    const at = base.findIndex((r) => r.name === o.name);
    if (o.enabled === false) {
      if (at < 0) fail(where, `${f}.name`, `disables ${JSON.stringify(o.name)}, which is not a default rule (defaults: ${base.map((r) => r.name).join(", ") || "none"})`);
      out[at] = null;
      return;
    }
    if (at >= 0) {
      // Changing a default: the given fields over the default's (a new type drops the old words/pattern).
      const merged: Record<string, unknown> = { ...base[at] };
      if (o.type !== undefined && o.type !== base[at].type) { delete merged.words; delete merged.pattern; delete merged.flags; }
      out[at] = checkRule({ ...merged, ...o }, f, where);
    } else {
      out.push(checkRule(o, f, where));
    }
  });
  return out.filter((r): r is ScreenRule => r !== null);
}

/** The flags a rule's regex is compiled with: its own (default "iu") plus g. */
export function ruleFlags(flags: string | undefined): string {
  const f = flags ?? "iu";
  return f.includes("g") ? f : f + "g";
}

/**
 * Checks a parsed config object and merges it over the defaults. `rules` merge by name over
 * the default rules (see mergeRules; `defaultRules: false` starts from none); the other
 * sections merge field by field.
 */
export function resolveScreenConfig(raw: unknown, where = "(object)"): ScreenConfig {
  if (raw === null || raw === undefined) return structuredClone(DEFAULT_SCREEN_CONFIG);
  if (typeof raw !== "object" || Array.isArray(raw)) fail(where, "(root)", "must be an object");
  const o = raw as Record<string, unknown>;
  const known = new Set(["refusal", "defaultRules", "rules", "pii", "degeneration", "confidence"]);
  for (const k of Object.keys(o)) if (!known.has(k)) fail(where, k, `is not a known field (known: ${[...known].join(", ")})`);
  const cfg = structuredClone(DEFAULT_SCREEN_CONFIG);
  if (o.refusal !== undefined) {
    if (typeof o.refusal !== "string") fail(where, "refusal", "must be a string");
    cfg.refusal = o.refusal;
  }
  if (o.defaultRules !== undefined) {
    if (typeof o.defaultRules !== "boolean") fail(where, "defaultRules", "must be true or false");
    if (!o.defaultRules) cfg.rules = [];
  }
  if (o.rules !== undefined) {
    if (!Array.isArray(o.rules)) fail(where, "rules", "must be a list");
    cfg.rules = mergeRules(cfg.rules, o.rules, where);
  }
  const section = <K extends "pii" | "degeneration" | "confidence">(key: K): void => {
    const v = o[key];
    if (v === undefined) return;
    if (typeof v !== "object" || v === null) fail(where, key, "must be an object");
    const target = cfg[key] as unknown as Record<string, unknown>;
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (!(k in target)) fail(where, `${key}.${k}`, `is not a known field (known: ${Object.keys(target).join(", ")})`);
      const want = Array.isArray(target[k]) ? "array" : typeof target[k];
      const got = Array.isArray(val) ? "array" : typeof val;
      if (want !== got) fail(where, `${key}.${k}`, `must be ${want}, got ${got}`);
      if (want === "number" && !Number.isFinite(val)) fail(where, `${key}.${k}`, "must be a finite number");
      target[k] = val;
    }
  };
  section("pii");
  section("degeneration");
  section("confidence");
  for (const k of cfg.pii.kinds) if (!PII_KINDS.includes(k)) fail(where, "pii.kinds", `has unknown kind ${JSON.stringify(k)} (known: ${PII_KINDS.join(", ")})`);
  if (!ACTIONS.includes(cfg.pii.action)) fail(where, "pii.action", `must be one of ${ACTIONS.join(", ")}`);
  const d = cfg.degeneration;
  if (d.maxPeriod < 1 || d.minCopies < 2 || d.maxChars < 1) fail(where, "degeneration", "needs maxPeriod ≥ 1, minCopies ≥ 2, maxChars ≥ 1");
  return cfg;
}

/** Reads a screening config from a .json, .yaml or .yml file. */
export function loadScreenConfig(path: string): ScreenConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`screening config ${path}: cannot read it (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text);
  } catch (err) {
    throw new Error(`screening config ${path}: not valid ${/\.ya?ml$/i.test(path) ? "YAML" : "JSON"}: ${(err as Error).message}`);
  }
  return resolveScreenConfig(raw, path);
}

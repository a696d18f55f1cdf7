/**
 * Numeric flags for every command, checked when the command line is parsed (before anything
 * loads or runs): each is a commander Option whose parser knows its rule (integer or real,
 * bounds), so a bad value stops at start-up with commander's message naming the flag as typed:
 *
 *   error: option '--top-p <p>' argument '3' is invalid. expected a number in (0, 1], got "3"
 *
 * Defaults are given as numbers and shown in --help. Commands register them with
 * `cmd.addOption(intOption(...))` / `numOption(...)`; value placeholders `<n>` (integers) and
 * `<x>` (reals) mark them, and test/cli-options.test.ts walks every command's numeric flags
 * with bad values.
 */
import { InvalidArgumentError, Option } from "commander";

export interface NumberRule {
  /** Whole numbers only. */
  int: boolean;
  /** Smallest allowed value (inclusive unless minExclusive). */
  min?: number;
  minExclusive?: boolean;
  /** Largest allowed value (inclusive). */
  max?: number;
}

const rules = new WeakMap<Option, NumberRule>();

/** The rule of a numeric option made here (undefined for other options). */
export function numberRule(o: Option): NumberRule | undefined {
  return rules.get(o);
}

/** "an integer ≥ 1", "a number in (0, 1]": the rule in words. */
export function describeRule(r: NumberRule): string {
  const what = r.int ? "an integer" : "a number";
  if (r.min !== undefined && r.max !== undefined) return `${what} in ${r.minExclusive ? "(" : "["}${r.min}, ${r.max}]`;
  if (r.min !== undefined) return `${what} ${r.minExclusive ? ">" : "≥"} ${r.min}`;
  if (r.max !== undefined) return `${what} ≤ ${r.max}`;
  return what;
}

/** Parses one value by a rule; throws InvalidArgumentError (commander names the flag). */
export function parseNumber(value: string, r: NumberRule): number {
  const t = value.trim();
  // Number("") is 0 and Number("0x10") is 16: only plain decimal notation is a number here.
  const x = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t) ? Number(t) : NaN;
  const ok = Number.isFinite(x) && (!r.int || Number.isInteger(x)) &&
    (r.min === undefined || (r.minExclusive ? x > r.min : x >= r.min)) && (r.max === undefined || x <= r.max);
  if (!ok) throw new InvalidArgumentError(`expected ${describeRule(r)}, got ${JSON.stringify(value)}`);
  return x;
}

/** A numeric flag with a given rule. */
export function numberOption(flags: string, description: string, rule: NumberRule, defaultValue?: number): Option {
  const o = new Option(flags, description).argParser((v: string) => parseNumber(v, rule));
  if (defaultValue !== undefined) o.default(defaultValue);
  rules.set(o, rule);
  return o;
}

/** An integer flag, e.g. `intOption("--steps <n>", "optimizer steps", { min: 1 }, 2000)`. */
export function intOption(flags: string, description: string, bounds: Omit<NumberRule, "int"> = {}, defaultValue?: number): Option {
  return numberOption(flags, description, { int: true, ...bounds }, defaultValue);
}

/** A real-valued flag, e.g. `numOption("--top-p <x>", "…", { min: 0, minExclusive: true, max: 1 }, 0.95)`. */
export function numOption(flags: string, description: string, bounds: Omit<NumberRule, "int"> = {}, defaultValue?: number): Option {
  return numberOption(flags, description, { int: false, ...bounds }, defaultValue);
}

/** A flag with a fixed set of values (commander refuses others, listing them). */
export function choiceOption(flags: string, description: string, choices: readonly string[], defaultValue?: string): Option {
  const o = new Option(flags, description).choices(choices);
  if (defaultValue !== undefined) o.default(defaultValue);
  return o;
}

/** `--threads <n>`: 0 = every CPU; MYNAH_THREADS is read (and checked) when the flag is absent. */
export function threadsOption(): Option {
  return intOption("--threads <n>", "compute threads (0 = every CPU)", { min: 0, max: 4096 }, 0).env("MYNAH_THREADS");
}

/** The sampling settings' rules, shared by the flags of chat/generate and the chat's /set. */
export const SAMPLING_RULES = {
  temperature: { int: false, min: 0 },
  "top-k": { int: true, min: 0 },
  "top-p": { int: false, min: 0, minExclusive: true, max: 1 },
  "repetition-penalty": { int: false, min: 0, minExclusive: true },
  "max-new-tokens": { int: true, min: 1 },
  seed: { int: true, min: 0, max: 2 ** 31 - 1 },
} as const satisfies Record<string, NumberRule>;

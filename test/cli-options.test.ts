/**
 * Every numeric flag of every command is checked when the command line is parsed, before
 * anything loads: a bad value stops with a message naming the flag as the user typed it.
 * The test walks the whole program (so a command added later is covered too).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CommanderError, type Command, type Option } from "commander";
import { buildProgram } from "../src/cli/main.ts";
import { numberRule, parseNumber } from "../src/cli/options.ts";

/** Every command with its path of names (["tokenizer", "train"]). */
function commands(c: Command, path: string[] = []): { cmd: Command; path: string[] }[] {
  return c.commands.flatMap((s) => [{ cmd: s, path: [...path, s.name()] }, ...commands(s, [...path, s.name()])]);
}

/** Parses argv with output captured and exits turned into errors; returns the error message (or "" when parsing succeeded up to the action). */
async function parseError(argv: string[]): Promise<string> {
  const program = buildProgram();
  let out = "";
  const quiet = (c: Command): void => {
    c.exitOverride();
    c.configureOutput({ writeOut: (s) => void (out += s), writeErr: (s) => void (out += s), outputError: (s) => void (out += s) });
    // Replace every action: only parsing is under test.
    c.action(() => { throw new Error("ACTION REACHED"); });
    c.commands.forEach(quiet);
  };
  quiet(program);
  try {
    await program.parseAsync(["node", "mynah", ...argv]);
    return "";
  } catch (err) {
    if (err instanceof CommanderError) return err.message;
    return (err as Error).message;
  }
}

/** Values that the rule must refuse. */
function badValues(o: Option): string[] {
  const r = numberRule(o)!;
  const bad = ["abc", "", "1e999", "NaN", "0x10", "5abc"];
  if (r.int) bad.push("1.5");
  if (r.min !== undefined) bad.push(String(r.minExclusive ? r.min : r.min - (r.int ? 1 : 0.5)));
  if (r.max !== undefined) bad.push(String(r.int ? r.max + 1 : r.max + 0.5));
  return bad;
}

test("every numeric flag of every command refuses bad values at parse time, naming the flag", async () => {
  const all = commands(buildProgram());
  let checked = 0;
  for (const { cmd, path } of all) {
    for (const o of cmd.options) {
      const placeholder = /<(\w+)(\.\.\.)?>/.exec(o.flags)?.[1];
      // Flags whose value is a number are made by src/cli/options.ts (placeholders <n> and <x>).
      if (placeholder === "n" || placeholder === "x") assert.ok(numberRule(o), `mynah ${path.join(" ")} ${o.flags}: a numeric flag without a checking parser`);
      if (typeof o.defaultValue === "string" && /^-?\d+(\.\d+)?(e-?\d+)?$/i.test(o.defaultValue))
        assert.fail(`mynah ${path.join(" ")} ${o.flags}: default ${JSON.stringify(o.defaultValue)} is a number written as a string (use intOption/numOption)`);
      if (!numberRule(o)) continue;
      for (const v of badValues(o)) {
        const msg = await parseError([...path, o.long!, v]);
        assert.match(msg, new RegExp(`option '${o.flags.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}' argument '${v.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}' is invalid\\. expected `),
          `mynah ${path.join(" ")} ${o.long} ${JSON.stringify(v)} gave: ${msg}`);
        checked++;
      }
      // The default (when there is one) passes its own rule.
      if (typeof o.defaultValue === "number") parseNumber(String(o.defaultValue), numberRule(o)!);
    }
  }
  assert.ok(checked > 150, `only ${checked} bad values checked`);
});

test("the cases from the issue: each names the flag as typed, before anything runs", async () => {
  assert.match(await parseError(["chat", "--model", "m", "--max-new-tokens", "-5"]), /option '--max-new-tokens <n>' argument '-5' is invalid\. expected an integer ≥ 1/);
  assert.match(await parseError(["chat", "--model", "m", "--top-p", "1.5"]), /option '--top-p <x>' argument '1\.5' is invalid\. expected a number in \(0, 1\]/);
  assert.match(await parseError(["chat", "--model", "m", "--temperature", "-1"]), /'--temperature <x>'.*expected a number ≥ 0/);
  assert.match(await parseError(["train", "--lr", "abc"]), /option '--lr <x>' argument 'abc' is invalid\. expected a number > 0, got "abc"/);
  assert.match(await parseError(["generate", "--model", "m", "--prompt", "p", "--top-p", "3"]), /'--top-p <x>' argument '3'/);
  assert.match(await parseError(["generate", "--model", "m", "--prompt", "p", "--max-new-tokens", "-1"]), /'--max-new-tokens <n>' argument '-1'/);
  assert.match(await parseError(["train", "--schedule", "linear"]), /option '--schedule <kind>' argument 'linear' is invalid\. Allowed choices are cosine, wsd/);
  assert.match(await parseError(["speedrun", "--stage", "pretrain", "sfft"]), /'--stage <names\.\.\.>' argument 'sfft' is invalid/);
  // Good values reach the action.
  assert.match(await parseError(["chat", "--model", "m", "--top-p", "1", "--max-new-tokens", "5"]), /ACTION REACHED/);
  // MYNAH_THREADS is checked like --threads.
  process.env.MYNAH_THREADS = "many";
  try {
    assert.match(await parseError(["train"]), /option '--threads <n>' value 'many' from env 'MYNAH_THREADS' is invalid/);
  } finally {
    delete process.env.MYNAH_THREADS;
  }
});

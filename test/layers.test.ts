/**
 * The layer rule of docs/architecture.md, checked over every import in src/: a folder imports
 * only from the folders its row in the doc's "Layers" table names (so the table stays true),
 * and one implementation per concept where two had grown (one RNG, one sampler, training never
 * through the inference backend's silent fallback).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, dirname, resolve } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const SRC = join(ROOT, "src");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** The doc's table: layer → the layers it may import. */
function layerTable(): Map<string, Set<string>> {
  const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Layers"));
  const table = new Map<string, Set<string>>();
  for (const m of section.matchAll(/^\| `(\w+)` \| ([^|]*)\|/gm)) {
    const allowed = [...m[2].matchAll(/\b([a-z]+)\b/g)].map((x) => x[1]).filter((w) => w !== "all");
    table.set(m[1], new Set(m[2].includes("all of the above") ? [...table.keys()] : allowed));
  }
  return table;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)[^"']*?from\s+["'](\.[^"']+)["']/gm)].map((m) => resolve(dirname(file), m[1]));
}

test("every import in src/ follows docs/architecture.md's layer table", () => {
  const table = layerTable();
  assert.ok(table.size >= 8, `the layer table has ${table.size} rows`);
  const bad: string[] = [];
  for (const f of files(SRC)) {
    const from = relative(SRC, f).split("/")[0];
    const allowed = table.get(from);
    if (!allowed) { bad.push(`src/${from}/ has no row in docs/architecture.md's layer table`); continue; }
    for (const imp of importsOf(f)) {
      const to = relative(SRC, imp).split("/")[0];
      if (to !== from && !allowed.has(to)) bad.push(`${relative(ROOT, f)} imports ${relative(ROOT, imp)} (${from} may import: ${[...allowed].join(", ") || "nothing"})`);
    }
  }
  assert.deepEqual([...new Set(bad)], []);
});

test("one RNG, one sampler, and training never on the inference backend's fallback", () => {
  const all = files(SRC).map((f) => ({ f: relative(ROOT, f), text: readFileSync(f, "utf8") }));
  // One seeded generator: core/rng.ts.
  assert.deepEqual(all.filter((x) => /function mulberry32|0x6d2b79f5/.test(x.text)).map((x) => x.f), []);
  // One sampler: infer/sampling.ts draws tokens; nothing else computes a softmax draw over a vocabulary.
  assert.deepEqual(all.filter((x) => x.f !== "src/infer/sampling.ts" && /rng\.(uniform|next)\(\) \* (z|total)\b/.test(x.text)).map((x) => x.f), []);
  // Training (train/, speedrun's stages) builds models on the native backend, which fails
  // clearly when the addon is missing; inferenceBackend() would fall back to the reference.
  assert.deepEqual(all.filter((x) => /^src\/(train|speedrun)\//.test(x.f) && /inferenceBackend/.test(x.text)).map((x) => x.f), []);
  // One atomic writer for chat transcripts.
  assert.ok(!/renameSync/.test(readFileSync(join(SRC, "cli/chat-repl.ts"), "utf8")));
});

test("one atomic writer: only src/core/atomic-write.ts exports one", () => {
  const writers: string[] = [];
  for (const file of files(SRC)) {
    for (const m of readFileSync(file, "utf8").matchAll(/^export (?:async )?function (\w*[Aa]tomic\w*)/gm))
      writers.push(`${relative(ROOT, file)}: ${m[1]}`);
  }
  assert.deepEqual(writers.filter((w) => !w.startsWith(join("src", "core", "atomic-write.ts"))), []);
});

test("package.json names only files that exist (main, bin, exports)", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { main?: string; bin?: Record<string, string>; exports?: unknown };
  const named = [pkg.main, ...Object.values(pkg.bin ?? {}), ...(typeof pkg.exports === "string" ? [pkg.exports] : [])].filter((p): p is string => !!p);
  const missing = named.filter((p) => !existsSync(join(ROOT, p)));
  assert.deepEqual(missing, []);
});

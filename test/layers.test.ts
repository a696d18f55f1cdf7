/**
 * The layer table of docs/architecture.md against every `import` in src/, and one
 * implementation per file helper: only src/core/atomic-write.ts exports an atomic writer.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..");
const SRC = join(ROOT, "src");

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** layer → the layers it may import, from the table under "## Layers". */
function layerTable(): Map<string, Set<string>> {
  const doc = readFileSync(join(ROOT, "docs", "architecture.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Layers"));
  const table = new Map<string, Set<string>>();
  for (const m of section.matchAll(/^\| `(\w+)` \| ([^|]+) \|$/gm)) {
    const deps = m[2].trim() === "—" ? [] : m[2].split(",").map((d) => d.trim().split(/\s/)[0]);
    table.set(m[1], new Set(deps));
  }
  return table;
}

test("imports follow the layer table of docs/architecture.md", () => {
  const table = layerTable();
  assert.ok(table.has("core") && table.has("data"), "the layer table was found");
  const all = [...table.keys()].filter((l) => l !== "cli");
  const wrong: string[] = [];
  for (const file of sources(SRC)) {
    const layer = relative(SRC, file).split(/[\\/]/)[0];
    const allowed = table.get(layer);
    if (!allowed || layer === "cli") continue;
    const ok = allowed.has("all") ? new Set(all) : allowed;
    for (const m of readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+["'](\.[^"']+)["']/gm)) {
      const target = relative(SRC, resolve(dirname(file), m[1])).split(/[\\/]/)[0];
      if (target !== layer && !ok.has(target)) wrong.push(`${relative(ROOT, file)} imports ${m[1]} (${layer} → ${target})`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("one atomic writer: only src/core/atomic-write.ts exports one", () => {
  const writers: string[] = [];
  for (const file of sources(SRC)) {
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

/**
 * Input paths → a sorted list of files: plain files, folders (recursive), and globs
 * (`*` within a name, `**` across folders, `?` one character), so the same command reads
 * the same files in the same order on every machine.
 */
import { readdirSync, statSync, existsSync } from "node:fs";
import { join, sep } from "node:path";

/** Files a folder holds, recursively, skipping hidden entries; sorted. */
function walk(dir: string, out: string[]): void {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
}

/** A glob as a RegExp over "/"-separated paths. */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      // "**/" matches zero or more folders
      re += glob[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += glob[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

const isGlob = (p: string): boolean => /[*?]/.test(p);

/**
 * Expands inputs (files, folders, globs) into files, each once, in the order given (each
 * folder or glob sorted). Throws naming the input when it matches nothing.
 */
export function expandInputs(inputs: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (f: string): void => {
    if (!seen.has(f)) seen.add(f), out.push(f);
  };
  for (const input of inputs) {
    if (isGlob(input)) {
      const parts = input.split(/[\\/]/);
      const firstGlob = parts.findIndex(isGlob);
      const base = parts.slice(0, firstGlob).join("/") || ".";
      if (!existsSync(base)) throw new Error(`input ${input}: folder ${base} does not exist`);
      const all: string[] = [];
      walk(base, all);
      const re = globToRegExp(input.split(sep).join("/").replace(/^\.\//, ""));
      const matched = all.filter((f) => re.test(f.split(sep).join("/").replace(/^\.\//, "")));
      if (matched.length === 0) throw new Error(`input ${input}: no file matches`);
      matched.forEach(add);
    } else {
      let st;
      try {
        st = statSync(input);
      } catch {
        throw new Error(`input ${input}: no such file or folder`);
      }
      if (st.isDirectory()) {
        const files: string[] = [];
        walk(input, files);
        if (files.length === 0) throw new Error(`input ${input}: the folder holds no files`);
        files.forEach(add);
      } else add(input);
    }
  }
  return out;
}

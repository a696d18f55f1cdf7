/**
 * Input paths → a sorted list of files: plain files, folders (recursive), and globs
 * (`*` within a name, `**` across folders, `?` one character), so the same command reads
 * the same files in the same order on every machine.
 */
import { lstatSync, readdirSync, realpathSync, statSync, existsSync } from "node:fs";
import { join, sep } from "node:path";

/** A folder entry left out, and why (a broken or looping link, not a regular file, a second path to one file). */
export interface SkippedInput {
  path: string;
  reason: string;
}

/**
 * Files a folder holds, recursively, skipping hidden entries; sorted. Symbolic links are
 * followed (a Hugging Face hub snapshot is all links into its blob store); a link to a folder
 * already being walked (a loop) is skipped, as are broken links and entries that are neither
 * files nor folders, each recorded in `skipped`.
 */
function walk(dir: string, out: string[], skipped: SkippedInput[], open: Set<string> = new Set([realpathSync(dir)])): void {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const st = statSync(p);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        skipped.push({ path: p, reason: "broken symbolic link" });
        continue;
      }
    }
    if (isDir) {
      const real = realpathSync(p);
      if (open.has(real)) {
        skipped.push({ path: p, reason: `link loop (leads back to ${real})` });
        continue;
      }
      open.add(real);
      walk(p, out, skipped, open);
      open.delete(real);
    } else if (isFile) out.push(p);
    else skipped.push({ path: p, reason: "not a regular file" });
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
 * Expands inputs (files, folders, globs) into files, each once (by real path: two links to
 * one file count once), in the order given (each folder or glob sorted). Throws naming the
 * input when it matches nothing. `skipped`: folder entries left out, and why.
 */
export function expandInputsDetailed(inputs: readonly string[]): { files: string[]; skipped: SkippedInput[] } {
  const out: string[] = [];
  const skipped: SkippedInput[] = [];
  const seen = new Map<string, string>();
  const add = (f: string): void => {
    const real = realpathSync(f);
    const first = seen.get(real);
    if (first === undefined) seen.set(real, f), out.push(f);
    else if (first !== f) skipped.push({ path: f, reason: `same file as ${first}` });
  };
  for (const input of inputs) {
    if (isGlob(input)) {
      const parts = input.split(/[\\/]/);
      const firstGlob = parts.findIndex(isGlob);
      const base = parts.slice(0, firstGlob).join("/") || ".";
      if (!existsSync(base)) throw new Error(`input ${input}: folder ${base} does not exist`);
      const all: string[] = [];
      walk(base, all, skipped);
      const re = globToRegExp(input.split(sep).join("/").replace(/^\.\//, ""));
      const matched = all.filter((f) => re.test(f.split(sep).join("/").replace(/^\.\//, "")));
      if (matched.length === 0) throw new Error(`input ${input}: no file matches`);
      matched.forEach(add);
    } else {
      let st;
      try {
        st = statSync(input);
      } catch {
        let link = false;
        try {
          link = lstatSync(input).isSymbolicLink();
        } catch {
          /* nothing there */
        }
        throw new Error(`input ${input}: ${link ? "a broken symbolic link" : "no such file or folder"}`);
      }
      if (st.isDirectory()) {
        const files: string[] = [];
        const before = skipped.length;
        walk(input, files, skipped);
        if (files.length === 0) {
          const why = skipped.length > before ? ` (skipped: ${skipped.slice(before).map((x) => `${x.path}: ${x.reason}`).join("; ")})` : "";
          throw new Error(`input ${input}: the folder holds no files${why}`);
        }
        files.forEach(add);
      } else add(input);
    }
  }
  return { files: out, skipped };
}

/** expandInputsDetailed's files. */
export function expandInputs(inputs: readonly string[]): string[] {
  return expandInputsDetailed(inputs).files;
}

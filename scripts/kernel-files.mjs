// Prints the kernel sources (native/<name>.c for each X(<name>) in native/kernels.h), one per
// line, for binding.gyp (`<!@(node scripts/kernel-files.mjs)`), so that list is the only one.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const header = readFileSync(join(root, "native", "kernels.h"), "utf8");
const list = /#define MYNAH_KERNELS\(X\)((?:.*\\\n)*.*)/.exec(header);
if (!list) throw new Error("native/kernels.h: no MYNAH_KERNELS(X) list");
const names = [...list[1].matchAll(/X\((\w+)\)/g)].map((m) => m[1]);
console.log(names.map((n) => `native/${n}.c`).join("\n"));

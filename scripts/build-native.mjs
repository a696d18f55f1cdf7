// Builds the native addon (build/Release/mynah.node) with node-gyp during `npm install`.
//
// node-gyp compiles against Node's C headers. It normally downloads them, which fails on a
// machine without network; but most Node installs (Debian's nodejs, the official tarballs,
// nvm) ship the headers in <prefix>/include/node. When they are there and no nodedir was
// configured, node-gyp is pointed at them, so the build needs nothing but a C toolchain.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

const args = ["rebuild"];
const prefix = dirname(dirname(process.execPath));
const configured = process.env.npm_config_nodedir;
if (!configured && existsSync(join(prefix, "include", "node", "node_api.h"))) {
  args.push(`--nodedir=${prefix}`);
}
// node-gyp: the one npm names while it runs this script, else npm's own copy, else the PATH's.
const candidates = [process.env.npm_config_node_gyp, join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js")];
const gypJs = candidates.find((p) => p && existsSync(p));
// binding.gyp runs `node scripts/kernel-files.mjs` for the kernel list: this node comes first on PATH.
const env = { ...process.env, PATH: [dirname(process.execPath), process.env.PATH].filter(Boolean).join(delimiter) };
const r = gypJs
  ? spawnSync(process.execPath, [gypJs, ...args], { stdio: "inherit", env })
  : spawnSync("node-gyp", args, { stdio: "inherit", shell: process.platform === "win32", env });
if (r.error) {
  console.error(`mynah: could not run node-gyp (${r.error.message}); it ships with npm, so run this through \`npm install\`.`);
  process.exit(1);
}
if (r.status !== 0) {
  console.error("mynah: building the native kernels failed; a C compiler (gcc or clang) and make are needed (Debian: apt-get install build-essential).");
}
process.exit(r.status ?? 1);

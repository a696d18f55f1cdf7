/**
 * The F16/Q8_0 kernels on every instruction-set path: the addon holds only this machine's
 * best one, so test/native/gemv_quant_harness.c is compiled with gcc at three levels
 * (-march=native, haswell = AVX2+F16C+FMA, x86-64 = the portable path) and run. Inside each,
 * every Q8_0 dot-product path the build and CPU have (AVX-512 VNNI, AVX-VNNI, AVX2 maddubs,
 * portable C) must give bit-identical products; across the three builds, the hash of the
 * Q8_0 products must be the same.
 * Skipped without gcc, Node's headers, or on a CPU other than x86-64.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const headers = [join(dirname(process.execPath), "..", "include", "node"), join(homedir(), ".cache", "node-gyp", process.versions.node, "include", "node"), "/usr/include/node"]
  .find((d) => existsSync(join(d, "node_api.h")));
const gcc = spawnSync("gcc", ["--version"]).status === 0;
const skip = process.arch !== "x64" ? "not an x86-64 CPU" : !gcc ? "gcc is not installed" : !headers ? "Node's C headers (node_api.h) were not found" : false;

const hashes = new Map<string, string>();
for (const [level, flag] of [["native", "-march=native"], ["AVX2", "-march=haswell"], ["portable", "-march=x86-64"]] as const) {
  test(`gemv_quant.c kernels, ${level} path (${flag})`, { skip, timeout: 120_000 }, () => {
    const dir = mkdtempSync(join(tmpdir(), "mynah-isa-"));
    try {
      const exe = join(dir, "h");
      const c = spawnSync("gcc", ["-O2", "-std=gnu11", flag, `-I${headers}`, `-I${join(root, "native")}`, join(root, "test", "native", "gemv_quant_harness.c"),
        join(root, "native", "pool.c"), join(root, "test", "native", "napi_stubs.c"), "-o", exe, "-lm", "-pthread"], { encoding: "utf8" });
      assert.equal(c.status, 0, c.stderr);
      const r = spawnSync(exe, [], { encoding: "utf8" });
      console.log(r.stdout.trim().split("\n").map((l) => `  ${l}`).join("\n"));
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok$/m);
      const h = /^q8 hash (\w+)$/m.exec(r.stdout)?.[1];
      assert.ok(h, "the harness printed no hash");
      for (const [other, hh] of hashes) assert.equal(h, hh, `Q8_0 products differ between the ${level} and ${other} builds`);
      hashes.set(level, h);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

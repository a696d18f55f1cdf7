/**
 * The F16/Q8_0 kernels on every instruction-set path: the addon holds only this machine's
 * best one, so test/native/gemv_quant_harness.c is compiled with gcc at three levels
 * (-march=native, haswell = AVX2+F16C+FMA, x86-64 = the portable path) and run. Inside each,
 * every Q8_0 dot-product path the build and CPU have (AVX-512 VNNI, AVX-VNNI, AVX2 maddubs,
 * portable C) must give bit-identical products; across the three builds, the hash of the
 * Q8_0 products must be the same.
 * Skipped without gcc, Node's headers, or on a CPU other than x86-64.
 *
 * The addon itself, in fresh processes: MYNAH_SIMD (a lower level) and MYNAH_SIMD_DISABLE (amx or
 * amx-int8, avx512vnni, avxvnni) must reach each Q8_0 path this CPU has (AMX-INT8 tiles, AVX-512 VNNI, AVX-VNNI or
 * AVX2, portable), and every one must give the same bits for products of 12 to 130 rows of x
 * (on AMX from 32 rows: whole 16-row tiles, a padded tail tile at 46, tails left to VNNI at 130;
 * N not a multiple of 16).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { addonPath, loadNative } from "../src/core/native.ts";
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

/** In a fresh process with `env`: the Q8_0 path the addon reports and sha256 of gemmQ8's products. */
function q8In(env: Record<string, string>): { path: string; digest: string } {
  const src = `
    const a = require(${JSON.stringify(addonPath())});
    const h = require("node:crypto").createHash("sha256");
    let s = 12345;
    const rand = (n, scale) => Float32Array.from({ length: n }, () => (s = (s * 1664525 + 1013904223) >>> 0, ((s / 2 ** 32) * 2 - 1) * scale));
    for (const [M, N, K] of [[12, 40, 96], [17, 45, 160], [46, 33, 96], [130, 37, 352], [128, 50, 1376]]) {
      const panels = Uint8Array.from({ length: Math.ceil(N / 16) * 17 * K }, () => (s = (s * 1664525 + 1013904223) >>> 0, s >>> 24));
      for (let p = 0; p < Math.ceil(N / 16); p++) for (let i = 0; i < K / 2; i++) { panels[p * 17 * K + 16 * K + 2 * i] = 0x19; panels[p * 17 * K + 16 * K + 2 * i + 1] = 0x14; }
      for (const threads of [1, 2]) {
        a.setThreads(threads);
        const y = rand(M * N, 1);
        a.gemmQ8(M, N, K, rand(M * K, 2), panels, true, y);
        h.update(new Uint8Array(y.buffer));
      }
    }
    console.log(JSON.stringify({ path: a.q8Path(), digest: h.digest("hex") }));`;
  const { MYNAH_SIMD: _a, MYNAH_SIMD_DISABLE: _b, ...base } = process.env;
  const r = spawnSync(process.execPath, ["-e", src], { env: { ...base, ...env }, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { path: string; digest: string };
}

test("MYNAH_SIMD / MYNAH_SIMD_DISABLE reach every Q8_0 path of the addon, all with the same bits", { timeout: 120_000 }, () => {
  const levels = (loadNative() as unknown as { simdLevels(): string[] }).simdLevels();
  const runs: [string, { path: string; digest: string }][] = [["default", q8In({})]];
  runs.push(["MYNAH_SIMD_DISABLE=amx", q8In({ MYNAH_SIMD_DISABLE: "amx" })]);
  runs.push(["MYNAH_SIMD_DISABLE=amx-int8", q8In({ MYNAH_SIMD_DISABLE: "amx-int8" })]);
  runs.push(["MYNAH_SIMD_DISABLE=amx,avx512vnni", q8In({ MYNAH_SIMD_DISABLE: "amx,avx512vnni" })]);
  runs.push(["MYNAH_SIMD_DISABLE=amx,avx512vnni,avxvnni", q8In({ MYNAH_SIMD_DISABLE: "amx,avx512vnni,avxvnni" })]);
  for (const l of levels.slice(0, -1)) runs.push([`MYNAH_SIMD=${l}`, q8In({ MYNAH_SIMD: l })]);
  for (const [name, r] of runs) console.log(`  ${name}: ${r.path}`);
  for (const [name, r] of runs) assert.equal(r.digest, runs[0][1].digest, `${name} (${r.path}) differs from the default (${runs[0][1].path})`);
  assert.doesNotMatch(runs[1][1].path, /amx/);
  assert.doesNotMatch(runs[2][1].path, /amx/);
  if (levels.includes("portable")) assert.equal(runs.find(([n]) => n === "MYNAH_SIMD=portable")?.[1].path, "portable");
  // every path this CPU has is reached by some override
  const flags = readCpuFlags(), seen = new Set(runs.map(([, r]) => r.path));
  const want: [string, boolean][] = [["portable", levels.includes("portable")], ["avx2 (maddubs)", levels.includes("avx2")],
    ["avx-vnni (ymm)", levels.includes("avx2") && /\bavx_vnni\b/.test(flags)], ["avx512-vnni (zmm)", levels.includes("avx512") && /\bavx512_vnni\b/.test(flags)],
    ["amx-int8 (tiles)", levels.includes("avx512") && /\bamx_int8\b/.test(flags) && /\bavx512_vnni\b/.test(flags)]];
  for (const [path, has] of want) if (has) assert.ok(seen.has(path), `the ${path} path was not reached (reached: ${[...seen].join(", ")})`);
  if (want[4][1]) assert.equal(runs[0][1].path, "amx-int8 (tiles)", "this CPU has AMX-INT8 but the addon does not use it by default");
});

function readCpuFlags(): string {
  try {
    return readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return "";
  }
}

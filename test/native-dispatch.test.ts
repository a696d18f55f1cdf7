/**
 * Runtime CPU dispatch: one addon holds the kernels built for each instruction-set level
 * (portable, avx2, avx512 on x86-64) and picks the best the CPU runs at load time, or the one
 * MYNAH_SIMD names. Every level this CPU supports must report itself and give the results the
 * existing kernel tests demand (test/gemm.test.ts, test/ops.test.ts, test/attention-decode.test.ts, run again with
 * MYNAH_SIMD set: the same float64 references and tolerances); a level the CPU lacks, a
 * disabled one, or an unknown name is refused at load with an error naming it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { addonPath, loadNative } from "../src/core/native.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const addon = loadNative();
const levels = addon.simdLevels();
const x86 = process.arch === "x64";

/** Loads the addon in a fresh process with `env` added; returns its simd(), gemmInfo() or load error. */
function probe(env: Record<string, string>): { simd?: string; levels?: string[]; info?: string; code?: string; error?: string } {
  const src = `try { const a = require(${JSON.stringify(addonPath())});
    console.log(JSON.stringify({ simd: a.simd(), levels: a.simdLevels(), info: a.gemmInfo() }));
  } catch (e) { console.log(JSON.stringify({ code: e.code, error: e.message })); }`;
  const { MYNAH_SIMD: _a, MYNAH_SIMD_DISABLE: _b, ...base } = process.env;
  const r = spawnSync(process.execPath, ["-e", src], { env: { ...base, ...env }, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("the default level is the best this CPU supports, and simd() reports it", () => {
  const p = probe({});
  assert.ok(levels.length >= 1);
  assert.deepEqual(p.levels, levels);
  assert.equal(p.simd, p.levels!.at(-1));
  if (x86) {
    assert.deepEqual(levels, ["portable", "avx2", "avx512"].slice(0, levels.length), "levels come lowest first, each implying the one before");
  }
  if (!process.env.MYNAH_SIMD) assert.equal(addon.simd(), levels.at(-1));
});

test("MYNAH_SIMD selects each supported level; simd() and the GEMM kernel match it", () => {
  for (const level of levels) {
    const p = probe({ MYNAH_SIMD: level });
    assert.equal(p.error, undefined, `${level}: ${p.error}`);
    assert.equal(p.simd, level);
    // gemmInfo names the micro-kernel compiled into that level's copy of gemm.c
    assert.match(p.info!, new RegExp(`^${level === "neon" ? "portable" : level} MRxNR=`));
  }
});

test("unknown, disabled and unsupported levels are refused at load, naming the level", () => {
  const bad = probe({ MYNAH_SIMD: "avx1024" });
  assert.equal(bad.code, "ERR_MYNAH_SIMD");
  assert.match(bad.error!, /MYNAH_SIMD=avx1024: unknown instruction-set level \(one of: /);
  if (x86) {
    const all = ["portable", "avx2", "avx512"];
    for (const level of all.filter((l) => !levels.includes(l))) {
      const p = probe({ MYNAH_SIMD: level });
      assert.equal(p.code, "ERR_MYNAH_SIMD");
      assert.equal(p.error, `MYNAH_SIMD=${level}: this CPU does not support ${level} (it supports: ${levels.join(", ")})`);
    }
    const best = levels.at(-1)!;
    if (best !== "portable") {
      // hiding the best level: the default falls back to the next, forcing it is refused
      const fallback = probe({ MYNAH_SIMD_DISABLE: best });
      assert.equal(fallback.simd, levels.at(-2));
      const forced = probe({ MYNAH_SIMD: best, MYNAH_SIMD_DISABLE: best });
      assert.equal(forced.code, "ERR_MYNAH_SIMD");
      assert.match(forced.error!, new RegExp(`MYNAH_SIMD=${best}: ${best} is disabled by MYNAH_SIMD_DISABLE \\(usable: `));
    }
  }
});

function withoutTestContext(): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  return env;
}

// The kernel tests under every other supported level (the default level runs them as usual).
for (const level of levels.filter((l) => l !== addon.simd())) {
  test(`gemm and op kernels at MYNAH_SIMD=${level} pass the kernel tests`, { timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-reporter=tap", "test/gemm.test.ts", "test/ops.test.ts", "test/attention-decode.test.ts"],
      // (without NODE_TEST_CONTEXT, which would make the inner runner report to this one instead)
      { cwd: root, env: { ...withoutTestContext(), MYNAH_SIMD: level, MYNAH_SIMD_DISABLE: "" }, encoding: "utf8" });
    assert.equal(r.status, 0, `kernel tests failed at ${level}:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    const passed = Number(/^# pass (\d+)$/m.exec(r.stdout)?.[1]);
    assert.ok(passed >= 25 && /^# fail 0$/m.test(r.stdout), `at ${level}: ${r.stdout.slice(-500)}`);
  });
}

test("every kernel file is in native/kernels.h's list, which the build reads", () => {
  const listed = spawnSync(process.execPath, [join(root, "scripts", "kernel-files.mjs")], { encoding: "utf8" }).stdout.trim().split("\n");
  const files = readdirSync(join(root, "native")).filter((f) => f.endsWith(".c") && !["binding.c", "pool.c", "ops.c"].includes(f));
  assert.deepEqual([...listed].sort(), files.map((f) => `native/${f}`).sort());
  for (const f of files) {
    const name = f.slice(0, -2);
    assert.match(readFileSync(join(root, "native", f), "utf8"), new RegExp(`\\nvoid register_${name}\\(napi_env env, napi_value exports\\)`), `${f} defines register_${name}`);
  }
  assert.match(readFileSync(join(root, "binding.gyp"), "utf8"), /<!@\(node scripts\/kernel-files\.mjs\)/);
});

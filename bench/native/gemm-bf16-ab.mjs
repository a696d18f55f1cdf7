// Two builds of the addon side by side on gemmBf16: the "shakespeare" layer shapes (16,384
// rows; NT y = x·Wᵀ, NN dX = dY·W, TN dW += dYᵀ·X), GFLOP/s, best of R rounds, and whether
// their results are bitwise equal on a spread of shapes, alpha/beta values and C offsets.
// Not part of `npm test` or `npm run bench`; run by hand, e.g. against main's build:
//   node --import tsx bench/native/gemm-bf16-ab.mjs /path/to/main/build/Release/mynah.node [R] [threads]
// The old addon is loaded twice (a copy under another name) and the three are rotated round by
// round: on a shared machine whichever runs first or second in a round can be favoured by
// several per cent, and the two old copies (an A/A pair) show how far that goes.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { rand } from "../../test/bf16-data.ts";

const [oldPath, R = "15", T = "1"] = process.argv.slice(2);
if (!oldPath) {
  console.error("usage: node --import tsx bench/native/gemm-bf16-ab.mjs OLD_ADDON [ROUNDS] [THREADS]");
  process.exit(2);
}
const rounds = Number(R), threads = Number(T);
const require = createRequire(import.meta.url);
const dir = mkdtempSync(join(tmpdir(), "mynah-ab-"));
const here = dirname(fileURLToPath(import.meta.url));
// each build from its own file name, so that Node loads three separate copies
const load = (src, name) => {
  copyFileSync(src, join(dir, name));
  const a = require(join(dir, name));
  a.setThreads(threads);
  return a;
};
const old = load(oldPath, "old.node"), old2 = load(oldPath, "old2.node");
const nw = load(join(here, "..", "..", "build", "Release", "mynah.node"), "new.node");
console.log(`new: ${nw.gemmBf16Info()}; ${threads} thread(s), best of ${rounds} rounds`);

const digest = (c) => createHash("sha256").update(c).digest("hex");

// bitwise: every form, odd and layer-like shapes (one and several K slices, slices outside),
// alpha/beta as training calls them and not, C on its own and at an odd offset
let same = 0, differ = 0;
const shapes = [[37, 45, 77], [200, 300, 520], [33, 97, 1100], [31, 31, 33], [128, 384, 384], [100, 1000, 1030], [70, 130, 2200],
  [35, 520, 2101], [300, 600, 3000], [96, 1100, 600], [64, 1024, 1024], [130, 33, 2]];
for (const [ta, tb] of [[false, true], [false, false], [true, false]])
  for (const [M, N, K] of shapes)
    for (const [alpha, beta] of [[1, 0], [1, 1], [1.5, 0.5]]) {
      const A = rand(M * K, M + K, 40), B = rand(K * N, N + K, 40), C0 = rand(M * N, 7), off = 1 + ((M + N) % 4);
      const outs = [old, nw].map((a) => {
        const c = C0.slice(), big = new Float32Array(M * N + 8);
        big.set(C0, off);
        a.gemmBf16(ta, tb, M, N, K, alpha, A, B, beta, c);
        a.gemmBf16(ta, tb, M, N, K, alpha, A, B, beta, big.subarray(off, off + M * N));
        return digest(c) + digest(big);
      });
      if (outs[0] === outs[1]) same++;
      else {
        differ++;
        console.log(`differs: ${ta ? "T" : "N"}${tb ? "T" : "N"} ${M}x${N}x${K} alpha ${alpha} beta ${beta}`);
      }
    }
console.log(`bitwise: ${same} cases equal, ${differ} differ`);

const C = 384, F = 1024, rows = 16384;
console.log(`${"shape".padEnd(27)}   old  old'   new  new/old (A/A)`);
for (const [name, Nout, K] of [["q/k/v/o", C, C], ["gate/up", F, C], ["down", C, F]])
  for (const [form, ta, tb, M, N, Kk, beta] of [["NT", false, true, rows, Nout, K, 0], ["NN", false, false, rows, K, Nout, 0],
    ["TN", true, false, Nout, K, rows, 1]]) {
    const A = rand(M * Kk, 1), B = rand(Kk * N, 2), Cm = new Float32Array(M * N), flops = 2 * M * N * Kk;
    const fs = [old, old2, nw], t = [Infinity, Infinity, Infinity];
    for (const f of fs) f.gemmBf16(ta, tb, M, N, Kk, 1, A, B, beta, Cm);
    for (let r = 0; r < rounds; r++)
      for (let j = 0; j < 3; j++) {
        const i = (j + r) % 3, t0 = performance.now();
        fs[i].gemmBf16(ta, tb, M, N, Kk, 1, A, B, beta, Cm);
        t[i] = Math.min(t[i], performance.now() - t0);
      }
    const g = t.map((x) => flops / x / 1e6);
    console.log(`${`${name} ${form} ${M}x${N}x${Kk}`.padEnd(27)} ${g.map((x) => x.toFixed(0).padStart(5)).join(" ")}  ` +
      `${(g[2] / Math.max(g[0], g[1])).toFixed(2)}x  (${(g[1] / g[0]).toFixed(2)})`);
  }
rmSync(dir, { recursive: true, force: true });

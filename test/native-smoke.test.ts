import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { loadNative, nativeBackend } from "../src/core/native.ts";

test("native addon loads and runs a tiny GEMM", () => {
  const a = loadNative();
  assert.ok(a.threads() >= 1);
  const be = nativeBackend();
  const A = new Float32Array([1, 2, 3, 4]); // [2,2]
  const B = new Float32Array([5, 6, 7, 8]); // [2,2]
  const C = new Float32Array(4);
  be.gemm(false, false, 2, 2, 2, 1, A, B, 0, C);
  assert.deepEqual(Array.from(C), [19, 22, 43, 50]);
});

// A pool of several threads must not narrow the CPUs of the main thread: processes and
// worker threads it starts inherit them (a one-CPU mask once made every benchmark child run
// its two pool threads on one core).
// The number of CPUs in a /proc status file's Cpus_allowed_list ("0-3,6" → 5).
const statusCpus = (text: string): number => {
  const list = /Cpus_allowed_list:\s*(\S+)/.exec(text)?.[1] ?? "";
  let n = 0;
  for (const part of list.split(",").filter(Boolean)) {
    const [a, b] = part.split("-").map(Number);
    n += b === undefined ? 1 : b - a + 1;
  }
  return n;
};
const linux = existsSync("/proc/self/status");
test("the thread pool leaves the main thread's CPUs to what it spawns", { skip: linux ? false : "needs /proc (Linux)" }, () => {
  const a = loadNative();
  const before = a.cpus(); // the process's CPUs, as the pool read them before starting threads
  const n = a.setThreads(Math.max(2, a.cpus()));
  const be = nativeBackend();
  const X = new Float32Array(256 * 256).fill(1);
  const C = new Float32Array(256 * 256);
  be.gemm(false, true, 256, 256, 256, 1, X, X, 0, C); // runs on the pool
  assert.equal(C[0], 256);
  const child = execFileSync("cat", ["/proc/self/status"], { encoding: "utf8" });
  assert.equal(statusCpus(child), before, `child's CPUs with a pool of ${n} threads`);
  // Worker threads too (data prepare tokenizes on them).
  const w = new Worker(`require("node:worker_threads").parentPort.postMessage(require("node:fs").readFileSync("/proc/thread-self/status", "utf8"))`, { eval: true });
  return new Promise<void>((resolve, reject) => {
    w.once("message", (m: string) => {
      try {
        assert.equal(statusCpus(m), before, "worker thread's CPUs");
        resolve();
      } catch (e) {
        reject(e);
      } finally {
        void w.terminate();
      }
    });
    w.once("error", reject);
  });
});

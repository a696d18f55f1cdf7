import { test } from "node:test";
import assert from "node:assert/strict";
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

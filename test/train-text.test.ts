/** The plain-text BatchSource: shifted targets, exact state/restore, spread windows, the 90/10 split. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTextCorpus, openTextSource } from "../src/data/text.ts";

const ids = Int32Array.from({ length: 1000 }, (_, i) => (i * 7 + (i >> 3)) % 50);

test("rows are windows of the text with targets shifted by one", () => {
  const src = openTextSource(ids, { seed: 4 });
  const { inputs, targets } = src.nextBatch(3, 10);
  for (let r = 0; r < 3; r++) {
    // find the window in the text
    const row = [...inputs.subarray(r * 10, r * 10 + 10)];
    const at = [...Array(ids.length - 10).keys()].filter((o) => row.every((x, j) => ids[o + j] === x));
    assert.ok(at.length >= 1, "the row is a window of the text");
    assert.ok(at.some((o) => [...targets.subarray(r * 10, r * 10 + 10)].every((x, j) => ids[o + 1 + j] === x)));
  }
});

test("state/restore continues exactly, also in a new source object", () => {
  const a = openTextSource(ids, { seed: 9 });
  a.nextBatch(4, 16);
  const st = JSON.parse(JSON.stringify(a.state()));
  const next = a.nextBatch(4, 16);
  const b = openTextSource(ids, { seed: 9 });
  b.restore(st);
  assert.deepEqual(b.nextBatch(4, 16), next);
  assert.throws(() => openTextSource(ids.subarray(0, 500), { seed: 9 }).restore(st), /saved position is for 1000 tokens but the data has 500/);
  const c = openTextSource(ids, { seed: 10 });
  assert.notDeepEqual(c.nextBatch(4, 16).inputs, openTextSource(ids, { seed: 9 }).nextBatch(4, 16).inputs, "the seed decides the order");
});

test("sequential order with a stride spreads windows over the split", () => {
  const s = openTextSource(ids, { seed: 1, order: "sequential", stride: 300 });
  const { inputs } = s.nextBatch(3, 8);
  assert.deepEqual([...inputs.subarray(0, 8)], [...ids.subarray(0, 8)]);
  assert.deepEqual([...inputs.subarray(8, 16)], [...ids.subarray(300, 308)]);
  assert.deepEqual([...inputs.subarray(16, 24)], [...ids.subarray(600, 608)]);
});

test("a text corpus: characters, first 90 % train, last 10 % validation", () => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-text-"));
  try {
    writeFileSync(join(dir, "a.txt"), "abcabcabcé\n");
    const c = loadTextCorpus([join(dir, "a.txt")], 0.1); // 11 characters: floor(9.9) = 9 train
    assert.equal(c.tokenizer.vocabSize, 5); // \n a b c é
    assert.equal(c.train.length + c.val.length, 11);
    assert.equal(c.tokenizer.decode(c.val), "é\n");
    assert.equal(c.valBytes, 3);
    assert.equal(c.tokenizer.decode(c.train), "abcabcabc");
    assert.throws(() => loadTextCorpus([join(dir, "nope.txt")], 0.1), /nope\.txt: cannot read \(ENOENT\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

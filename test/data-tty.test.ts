/**
 * `mynah data prepare` as a person sees it: the CLI in a real terminal (tmux), where the
 * progress line redraws in place and the summary table follows it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveTokenizer, trainBpe } from "../src/tokenizer/index.ts";

const root = join(import.meta.dirname, "..");
const haveTmux = spawnSync("tmux", ["-V"]).status === 0;

test("data prepare in a terminal: one progress line ending at 100 %, then the summary", { skip: haveTmux ? false : "tmux is not installed", timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mynah-tty-"));
  const session = `mynah-tty-${process.pid}`;
  t.after(() => {
    spawnSync("tmux", ["kill-session", "-t", session]);
    rmSync(dir, { recursive: true, force: true });
  });
  const docs = Array.from({ length: 400 }, (_, i) => `document ${i}: the quick brown fox ${i % 7} jumps over the lazy dog ${i % 11}`);
  writeFileSync(join(dir, "a.txt"), docs.join("\n\n") + "\n");
  saveTokenizer(join(dir, "tok"), trainBpe([docs.join("\n")], { vocabSize: 256 + 60 + 8 }));
  const main = JSON.stringify(join(root, "src", "cli", "main.ts"));
  const args = JSON.stringify(["node", "mynah", "data", "prepare", join(dir, "a.txt"), "--tokenizer", join(dir, "tok"), "--out", join(dir, "out"), "--threads", "2", "--val-fraction", "0.1"]);
  const cmd = `cd ${root} && node --import tsx -e 'import(${main}).then((m) => m.main(${args}))'; echo EXIT=$?; sleep 30`;
  execFileSync("tmux", ["new-session", "-d", "-s", session, "-x", "160", "-y", "30", cmd]);
  let screen = "";
  for (let i = 0; i < 200 && !/EXIT=\d+/.test(screen); i++) {
    await new Promise((r) => setTimeout(r, 250));
    screen = execFileSync("tmux", ["capture-pane", "-p", "-t", session], { encoding: "utf8" });
  }
  assert.match(screen, /EXIT=0/, screen);
  const lines = screen.split("\n").filter((l) => l.trim() !== "");
  // The progress line was redrawn in place: it shows once, finished, and the table follows it.
  const progress = lines.filter((l) => /MB\/s\s+[\d.]+ M tokens/.test(l));
  assert.equal(progress.length, 1, screen);
  assert.match(progress[0], /^100%/);
  const at = lines.indexOf(progress[0]);
  assert.match(lines[at + 1], /^source\s+records\s+bad\s+dup\s+short\s+train docs\s+val docs/);
  assert.match(lines[at + 2], /^a\.txt\s+400\s+0\s+0\s+0\s+\d+\s+\d+\s/);
  assert.match(screen, /1 train \+ 1 val shards \(uint16\), vocab 324/);
});

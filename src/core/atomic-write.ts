/**
 * Crash-safe writes: the new content goes to a temporary name in the same folder, is fsynced,
 * then renamed over the target (rename is atomic on POSIX file systems), and the folder is
 * fsynced so the rename itself survives a power loss. A reader sees the old file or the new
 * one, never half of one.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/** Writes every byte of `chunks` to an open file descriptor. */
function writeAll(fd: number, chunks: readonly Uint8Array[]): void {
  for (const b of chunks) for (let o = 0; o < b.length; ) o += writeSync(fd, b, o, b.length - o);
}

/** fsync a folder (makes renames and new entries in it durable). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on folders; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Atomically replaces `path` by the concatenation of `chunks` (strings are UTF-8). */
export function writeAtomic(path: string, ...chunks: (string | Uint8Array)[]): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, "w");
  try {
    writeAll(fd, chunks.map((c) => (typeof c === "string" ? Buffer.from(c, "utf8") : c)));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

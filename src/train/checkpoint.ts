/**
 * Checkpoints: a run folder holds numbered checkpoint folders and a `latest` pointer.
 *
 *   RUN/ckpt-000100/model.safetensors      weights, Hugging Face names (loadable as a model folder)
 *   RUN/ckpt-000100/config.json            HF config + "mynah": { format, step, ... }
 *   RUN/ckpt-000100/optimizer.safetensors  exp_avg.* / exp_avg_sq.* (AdamW), momentum_buffer.* (Muon)
 *   RUN/ckpt-000100/state.json             step, data position, RNG, tokenizer, options, file digests
 *   RUN/ckpt-000100/tokenizer.json …       the tokenizer's files, for runs on prepared shards
 *   RUN/latest                             "ckpt-000100"
 *
 * A checkpoint is written into a temporary folder (each file fsynced), renamed into place,
 * the run folder fsynced, and only then is `latest` replaced (atomically). A crash at any
 * moment leaves `latest` naming a complete checkpoint. state.json records each file's size
 * and SHA-256, so a truncated or altered file is refused with a message naming it.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fsyncDir, writeAtomic } from "../core/atomic-write.ts";
import { readSafetensors, writeSafetensors, type StoredTensor } from "../core/safetensors.ts";
import type { RngState } from "../core/rng.ts";
import { toHfConfig, type ModelConfig } from "../model/config.ts";
import type { ParamSet } from "../model/params.ts";
import type { Precision } from "../model/gpt.ts";
import { paramsFromTensors, paramTensors, readModelConfig } from "../model/weights.ts";

export const CHECKPOINT_FORMAT = 1;
const LATEST = "latest";
/** The per-step log a run appends to (see train/report.ts). */
export const METRICS = "metrics.jsonl";
const NAME = /^ckpt-(\d{6,})$/;

/** How to get the tokenizer back: the characters of a char-level run, or a tokenizer path. */
export type TokenizerRef = { kind: "char"; chars: string[] } | { kind: "file"; path: string };

export interface CheckpointState {
  format: number;
  /** Optimizer steps completed. */
  step: number;
  /** Tokens trained on so far. */
  tokens: number;
  /** Training data position (BatchSource.state()). */
  data: unknown;
  rng: RngState | null;
  tokenizer: TokenizerRef | null;
  /** The options the run was started with (for --resume and for the record). */
  options: Record<string, unknown>;
  /**
   * The backend that computed it (`native-avx512`, `native-avx2`, …). Results do not depend on
   * the thread count, but each instruction-set level rounds differently, so a resume on another
   * continues the run without reproducing an uninterrupted one bit for bit.
   */
  backend?: string;
  /** Operand precision of the GEMMs that trained it (`--precision`; absent in older checkpoints: fp32). */
  precision?: Precision;
  /** Written by saveCheckpoint: size and SHA-256 of the other files. */
  files?: Record<string, { bytes: number; sha256: string }>;
}

export interface LoadedCheckpoint {
  dir: string;
  config: ModelConfig;
  params: ParamSet;
  optimizer: Map<string, StoredTensor>;
  state: CheckpointState;
}

export function checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(6, "0")}`;
}

/** SHA-256 of a file, read in 16 MiB chunks (checkpoints of larger models pass 2 GiB). */
function sha256(path: string): string {
  const h = createHash("sha256"), buf = Buffer.allocUnsafe(16 << 20), fd = openSync(path, "r");
  try {
    for (let pos = 0, n; (n = readSync(fd, buf, 0, buf.length, pos)) > 0; pos += n) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/**
 * Writes RUN/ckpt-<step>/ atomically, points `latest` at it and deletes all but the newest
 * `keep` checkpoints (keep ≤ 0 keeps all). Returns the checkpoint folder.
 */
export function saveCheckpoint(runDir: string, params: ParamSet,
                               optimizer: Iterable<[string, { shape: number[]; data: Float32Array }]>,
                               state: CheckpointState, keep = 3, extraFiles: Record<string, Uint8Array> = {}): string {
  mkdirSync(runDir, { recursive: true });
  const name = checkpointName(state.step);
  const final = join(runDir, name), tmp = join(runDir, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  writeSafetensors(join(tmp, "model.safetensors"), paramTensors(params), { format: "pt" });
  writeSafetensors(join(tmp, "optimizer.safetensors"), optimizer);
  const mynah = { format: CHECKPOINT_FORMAT, step: state.step, tokens: state.tokens };
  writeAtomic(join(tmp, "config.json"), JSON.stringify({ ...toHfConfig(params.config), mynah }, null, 2) + "\n");
  // e.g. tokenizer.json, so a checkpoint folder loads as a model folder for `mynah chat`
  for (const [f, bytes] of Object.entries(extraFiles)) writeAtomic(join(tmp, f), bytes);
  const files: Record<string, { bytes: number; sha256: string }> = {};
  for (const f of ["model.safetensors", "optimizer.safetensors", "config.json", ...Object.keys(extraFiles)]) {
    files[f] = { bytes: statSync(join(tmp, f)).size, sha256: sha256(join(tmp, f)) };
  }
  writeAtomic(join(tmp, "state.json"), JSON.stringify({ ...state, format: CHECKPOINT_FORMAT, files }, null, 1) + "\n");
  fsyncDir(tmp);
  if (existsSync(final)) rmSync(final, { recursive: true, force: true }); // a re-save of the same step
  renameSync(tmp, final);
  fsyncDir(runDir);
  writeAtomic(join(runDir, LATEST), name + "\n");
  if (keep > 0) {
    const all = listCheckpoints(runDir);
    for (const old of all.slice(0, Math.max(0, all.length - keep))) if (old !== name) rmSync(join(runDir, old), { recursive: true, force: true });
  }
  return final;
}

/** What a run folder holds of an earlier run: checkpoints, `latest`, metrics.jsonl (names). */
export function runFiles(runDir: string): string[] {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) return [];
  return readdirSync(runDir).filter((n) => NAME.test(n) || n === LATEST || n === METRICS || /^\.tmp-ckpt-\d{6,}-\d+$/.test(n)).sort();
}

/** Removes an earlier run's files from a run folder (what runFiles lists), nothing else. */
export function clearRun(runDir: string): void {
  for (const n of runFiles(runDir)) rmSync(join(runDir, n), { recursive: true, force: true });
  if (existsSync(runDir)) fsyncDir(runDir);
}

/** Checkpoint folder names in a run folder, oldest first. */
export function listCheckpoints(runDir: string): string[] {
  if (!existsSync(runDir)) return [];
  return readdirSync(runDir).filter((n) => NAME.test(n)).sort();
}

/** The checkpoint `latest` names, or null when the run has none. */
export function latestCheckpoint(runDir: string): string | null {
  const p = join(runDir, LATEST);
  if (!existsSync(p)) return null;
  const name = readFileSync(p, "utf8").trim();
  if (!NAME.test(name)) throw new Error(`${p}: does not name a checkpoint (${JSON.stringify(name.slice(0, 40))})`);
  const dir = join(runDir, name);
  if (!existsSync(dir)) throw new Error(`${p}: names ${name}, which does not exist in ${runDir}`);
  return dir;
}

/**
 * What to tell the user when a run resumes on another backend than the one that wrote the
 * checkpoint (another instruction-set level: another machine, or MYNAH_SIMD), else null.
 */
export function resumeBackendNote(state: CheckpointState, backend: string): string | null {
  if (!state.backend || state.backend === backend) return null;
  return `the checkpoint was computed with ${state.backend}, this run uses ${backend}: training continues, but ` +
    `its per-step losses will differ slightly from an uninterrupted ${state.backend} run (each instruction set rounds differently)`;
}

/**
 * The precision a run trains in: `--precision` when given, else (on --resume) the checkpoint's,
 * else fp32. When a resume asks for another precision than the checkpoint's, it continues as
 * asked and `note` says so plainly (the weights and optimizer state are float32 either way).
 */
export function resolvePrecision(asked: Precision | undefined, saved: CheckpointState | null): { precision: Precision; note: string | null } {
  const had = saved ? saved.precision ?? "fp32" : null;
  const precision = asked ?? had ?? "fp32";
  if (!had || had === precision) return { precision, note: null };
  return {
    precision,
    note: `the checkpoint was trained with --precision ${had}; this run continues with --precision ${precision} as asked: ` +
      `its weights and optimizer state carry over (they are float32 either way), but its losses will differ from an uninterrupted ${had} run`,
  };
}

/** Loads a checkpoint folder, verifying every file against state.json; errors name the file. */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const statePath = join(dir, "state.json");
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(statePath, "utf8")) as CheckpointState;
  } catch (err) {
    throw new Error(`${statePath}: cannot read the checkpoint state (${(err as Error).message})`);
  }
  if (state.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${statePath}: checkpoint format ${state.format} is not supported (this mynah reads format ${CHECKPOINT_FORMAT})`);
  }
  for (const [f, rec] of Object.entries(state.files ?? {})) {
    const p = join(dir, f);
    if (!existsSync(p)) throw new Error(`${p}: missing from the checkpoint`);
    const bytes = statSync(p).size;
    if (bytes !== rec.bytes) throw new Error(`${p}: ${bytes} bytes, but the checkpoint recorded ${rec.bytes} (truncated or corrupt)`);
    if (sha256(p) !== rec.sha256) throw new Error(`${p}: contents differ from the checkpoint's recorded SHA-256 (corrupt)`);
  }
  const { config } = readModelConfig(dir);
  const mfile = join(dir, "model.safetensors"), ofile = join(dir, "optimizer.safetensors");
  const params = paramsFromTensors(config, readSafetensors(mfile).tensors, mfile);
  const optimizer = readSafetensors(ofile).tensors;
  return { dir, config, params, optimizer, state };
}

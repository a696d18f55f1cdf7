/**
 * Loads the native addon (built by `npm install` from native/ with node-gyp) and exposes it
 * as a Backend. The addon's functions take exactly the arguments of the Backend methods of
 * the same name, so this file only forwards them.
 */
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "./backend.ts";

export interface NativeAddon extends Omit<Backend, "name"> {
  setThreads(n: number): number;
  threads(): number;
  cpus(): number;
  /** The instruction-set level whose kernels run: "avx512", "avx2", "portable" (x86-64), "neon" (arm64). */
  simd(): string;
  /** Every level this CPU supports, lowest first; MYNAH_SIMD=<level> forces one of them. */
  simdLevels(): string[];
  /** One core's measured FMA peak (GFLOP/s), from a short register-only loop: the MFU denominator. */
  gemmPeakGflops(): number;
  /** The GEMM kernel of the chosen level (tile, blocking, instruction set). */
  gemmInfo(): string;
  /** One core's measured bf16 dot-product peak (GFLOP/s) of the unit gemmBf16 runs on; 0 when it has none (fallback). */
  gemmBf16PeakGflops(): number;
  /** gemmBf16's micro-kernel: VDPBF16PS, AMX, or the float32 fallback, and its blocking. */
  gemmBf16Info(): string;
}

let addon: NativeAddon | undefined;

/** The built addon's path (build/Release/mynah.node); throws a clear error when it is not built. */
export function addonPath(): string {
  return findAddon();
}

function findAddon(): string {
  // src/core/native.ts and dist/core/native.js both sit two levels below the package root.
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  for (const p of [join(root, "build", "Release", "mynah.node"), join(root, "build", "Debug", "mynah.node")]) {
    if (existsSync(p)) return p;
  }
  throw new Error(
    `mynah's native kernels are not built (looked for ${join(root, "build", "Release", "mynah.node")}). ` +
      "Run `npm install` (or `npm run build`) in the mynah folder; it needs a C compiler, make and python3.",
  );
}

/**
 * The addon, loaded on first use. Thread count comes from MYNAH_THREADS (default: all CPUs);
 * the kernels' instruction-set level is the best this CPU runs, or MYNAH_SIMD's (loading
 * throws an ERR_MYNAH_SIMD error naming it when the CPU lacks that level).
 */
export function loadNative(): NativeAddon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    addon = require(findAddon()) as NativeAddon;
  }
  return addon;
}

/** Sets the number of compute threads (0 = every CPU this process may use); returns it. */
export function setThreads(n: number): number {
  return loadNative().setThreads(n);
}

/** CPUs this process may use (its affinity mask). */
export function cpus(): number {
  return loadNative().cpus();
}

let backend: Backend | undefined;

/** The native Backend (SIMD kernels on a pinned thread pool). */
export function nativeBackend(): Backend {
  if (!backend) {
    const a = loadNative();
    const b: Record<string, unknown> = { name: `native-${a.simd()}` };
    for (const [k, v] of Object.entries(a)) if (typeof v === "function") b[k] = v;
    backend = b as unknown as Backend;
  }
  return backend;
}

/**
 * The environment every PyTorch peer process runs in, chosen once per bench run.
 *
 * Why: Debian's PyTorch 1.13 does its float32 GEMMs in whatever `libblas.so.3` the system
 * selects, and OpenBLAS (0.3.21 in Debian 12) picks its kernels from the CPU model number at
 * load time. On a CPU model newer than the library it falls back to its generic x86-64 kernel
 * ("Prescott", SSE3): on the Intel Xeon of docs/benchmarks.md (family 6, model 207) PyTorch's
 * 1024³ GEMM ran at 4–6 GFLOP/s that way and at 30+ with the AVX-512 kernel forced (busy
 * machine). A peer that slow makes every ratio meaningless, so when OpenBLAS reports a kernel
 * below what the CPU can run, the peer gets `OPENBLAS_CORETYPE` set to the kernel matching the
 * CPU's vector unit (SkylakeX for AVX-512, Haswell for AVX2), and the bench says so.
 * A user's own `OPENBLAS_CORETYPE` is kept as it is.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface TorchEnv {
  env: NodeJS.ProcessEnv;
  /** One line for the bench output: which BLAS kernel PyTorch runs, and why. */
  note: string;
}

/** OpenBLAS's generic kernels, slower than any vector unit a current x86-64 CPU has. */
const GENERIC = /^(prescott|katmai|coppermine|northwood|banias|core2|penryn|dunnington|nehalem|atom|sandybridge|unknown)$/i;

/** The kernel OpenBLAS names when PyTorch loads it (OPENBLAS_VERBOSE=2), or null (no OpenBLAS, no PyTorch). */
function openblasCore(env: NodeJS.ProcessEnv): string | null {
  const r = spawnSync("/usr/bin/python3", ["-c", "import torch"], { env: { ...env, OPENBLAS_VERBOSE: "2" }, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) return null;
  return /Core:\s*(\S+)/.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? null;
}

function cpuFlags(): Set<string> {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    return new Set(line ? line.split(":")[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

let chosen: TorchEnv | null = null;

export function torchEnv(): TorchEnv {
  if (chosen) return chosen;
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (env.OPENBLAS_CORETYPE) {
    chosen = { env, note: `PyTorch's OpenBLAS kernel: ${env.OPENBLAS_CORETYPE} (OPENBLAS_CORETYPE as set by the user)` };
    return chosen;
  }
  const found = openblasCore(env);
  const flags = cpuFlags();
  const best = flags.has("avx512f") ? "SkylakeX" : flags.has("avx2") && flags.has("fma") ? "Haswell" : null;
  if (found === null) {
    chosen = { env, note: "PyTorch's BLAS: not OpenBLAS (or PyTorch is absent); its GEMMs run as installed" };
  } else if (best && GENERIC.test(found)) {
    const forced = { ...env, OPENBLAS_CORETYPE: best };
    const now = openblasCore(forced);
    chosen = now && now.toLowerCase() === best.toLowerCase()
      ? { env: forced, note: `PyTorch's OpenBLAS picked its generic ${found} kernel on this CPU (a model it does not know); the peer runs with OPENBLAS_CORETYPE=${best}, the kernel for this CPU's vector unit` }
      : { env, note: `PyTorch's OpenBLAS runs its generic ${found} kernel (forcing ${best} did not take: ${now ?? "no report"}); PyTorch's GEMMs are slower than this CPU allows` };
  } else {
    chosen = { env, note: `PyTorch's OpenBLAS kernel: ${found} (as detected)` };
  }
  return chosen;
}

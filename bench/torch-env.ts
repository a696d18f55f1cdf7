/**
 * The environment every PyTorch peer process runs in, chosen once per bench run.
 *
 * Why: Debian's PyTorch 1.13 does its float32 GEMMs in whatever `libblas.so.3` the system
 * selects, and OpenBLAS (0.3.21 in Debian 12) picks its kernels from the CPU model number at
 * load time. On a CPU model newer than the library it falls back to an older kernel: its generic
 * x86-64 one ("Prescott", SSE3) on the Intel Xeon of docs/benchmarks.md (family 6, model 207),
 * where PyTorch's 1024³ GEMM ran at 4–6 GFLOP/s that way and at 30+ with the AVX-512 kernel
 * forced (busy machine); its AVX2 "Haswell" kernel on the AVX-512 Zen 5. The peer should be as
 * strong as the CPU allows, so when OpenBLAS reports a kernel below the CPU's vector unit, the
 * peer gets `OPENBLAS_CORETYPE` set to the one matching it (SkylakeX for AVX-512, Haswell for
 * AVX2), and the bench says so.
 * A user's own `OPENBLAS_CORETYPE` is kept as it is.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface TorchEnv {
  env: NodeJS.ProcessEnv;
  /** One line for the bench output: which BLAS kernel PyTorch runs, and why. */
  note: string;
}

/** OpenBLAS's AVX-512 kernels; and its kernels below AVX2 (the generic x86-64 one and older). */
const AVX512 = /^(skylakex|cooperlake|sapphirerapids)$/i;
const BELOW_AVX2 = /^(prescott|katmai|coppermine|northwood|banias|core2|penryn|dunnington|nehalem|atom|sandybridge|bulldozer|piledriver|steamroller|excavator|unknown)$/i;

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
  const weaker = (core: string): boolean => best === "SkylakeX" ? !AVX512.test(core) : best === "Haswell" && BELOW_AVX2.test(core);
  if (found === null) {
    chosen = { env, note: "PyTorch's BLAS: not OpenBLAS (or PyTorch is absent); its GEMMs run as installed" };
  } else if (best && weaker(found)) {
    const forced = { ...env, OPENBLAS_CORETYPE: best };
    const now = openblasCore(forced);
    chosen = now && now.toLowerCase() === best.toLowerCase()
      ? { env: forced, note: `PyTorch's OpenBLAS picked its ${found} kernel on this CPU (a model it does not know); the peer runs with OPENBLAS_CORETYPE=${best}, the kernel for this CPU's vector unit` }
      : { env, note: `PyTorch's OpenBLAS runs its ${found} kernel (forcing ${best} did not take: ${now ?? "no report"}); PyTorch's GEMMs are slower than this CPU allows` };
  } else {
    chosen = { env, note: `PyTorch's OpenBLAS kernel: ${found} (as detected)` };
  }
  return chosen;
}

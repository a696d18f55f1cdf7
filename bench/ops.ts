/**
 * Op speed: the native attention (forward, backward), fused cross-entropy, RMSNorm and SwiGLU
 * at training shapes, 2 threads, beside PyTorch on the same shapes and thread count
 * (/usr/bin/python3; this machine's torch 1.13 has no fused attention, so its peer is the
 * plain causal attention nanoGPT falls back to: q·kᵀ, mask, softmax, ·v, with autograd).
 * attentionBf16 rows: `--precision bf16`'s attention (bf16 matmul operands on AMX tiles, where
 * the CPU has them) beside the same PyTorch attention under torch.autocast("cpu", bfloat16).
 * Each figure is the best of REPS runs after one warm-up, in milliseconds.
 */
import { spawnSync } from "node:child_process";
import { torchEnv } from "./torch-env.ts";
import { loadNative, nativeBackend } from "../src/core/native.ts";
import { uniformSource, randomF32, randomI32 } from "../src/core/tensor-utils.ts";

const THREADS = 2, REPS = 5;

function best(f: () => void): number {
  f();
  let t = Infinity;
  for (let i = 0; i < REPS; i++) {
    const s = performance.now();
    f();
    t = Math.min(t, performance.now() - s);
  }
  return t;
}

const PEER = `
import json, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(${THREADS})
cases = json.loads(sys.argv[1]); out = []
def best(f):
    f(); t = 1e9
    for _ in range(${REPS}):
        s = time.perf_counter(); f(); t = min(t, time.perf_counter() - s)
    return t * 1e3
for c in cases:
    r = {}
    if c["op"] in ("attention", "attentionBf16"):
        B, T, H, Hkv, D = c["shape"]
        q = torch.randn(B, H, T, D, requires_grad=True); k = torch.randn(B, Hkv, T, D, requires_grad=True)
        v = torch.randn(B, Hkv, T, D, requires_grad=True)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        def plain():
            kk, vv = k.repeat_interleave(H // Hkv, 1), v.repeat_interleave(H // Hkv, 1)
            s = (q @ kk.transpose(-2, -1)) * D ** -0.5
            return s.masked_fill(~mask, float("-inf")).softmax(-1) @ vv
        def fwd():
            if c["op"] == "attention": return plain()
            with torch.autocast("cpu", dtype=torch.bfloat16): return plain()
        with torch.no_grad(): r["fwd"] = best(fwd)
        g = torch.randn(B, H, T, D)
        r["fwd_bwd"] = best(lambda: fwd().backward(g))
    elif c["op"] == "crossEntropy":
        N, V = c["shape"]
        x = torch.randn(N, V, requires_grad=True); t = torch.randint(0, V, (N,))
        with torch.no_grad(): r["fwd"] = best(lambda: F.cross_entropy(x, t))
        r["fwd_bwd"] = best(lambda: F.cross_entropy(x, t).backward())
    elif c["op"] == "rmsnorm":
        N, C = c["shape"]
        x = torch.randn(N, C, requires_grad=True); w = torch.ones(C, requires_grad=True); g = torch.randn(N, C)
        f = lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
        with torch.no_grad(): r["fwd"] = best(f)
        r["fwd_bwd"] = best(lambda: f().backward(g))
    elif c["op"] == "swiglu":
        (n,) = c["shape"]
        a = torch.randn(n, requires_grad=True); b = torch.randn(n, requires_grad=True); g = torch.randn(n)
        with torch.no_grad(): r["fwd"] = best(lambda: F.silu(a) * b)
        r["fwd_bwd"] = best(lambda: (F.silu(a) * b).backward(g))
    out.append(r)
print(json.dumps(dict(torch=torch.__version__, results=out)))
`;

interface Case { op: "attention" | "attentionBf16" | "crossEntropy" | "rmsnorm" | "swiglu"; shape: number[] }
const ATTENTION_SHAPES = [[64, 256, 6, 6, 64], [16, 1024, 6, 6, 64], [32, 256, 8, 2, 128]];
const CASES: Case[] = [
  ...ATTENTION_SHAPES.map((shape): Case => ({ op: "attention", shape })),
  ...(nativeBackend().attentionForwardBf16 ? ATTENTION_SHAPES.map((shape): Case => ({ op: "attentionBf16", shape })) : []),
  { op: "crossEntropy", shape: [16384, 259] },
  { op: "crossEntropy", shape: [1024, 32768] },
  { op: "rmsnorm", shape: [16384, 384] },
  { op: "swiglu", shape: [16384 * 1024] },
];

/** Times our fwd and fwd+bwd for one case (ms). */
function ours(c: Case): { fwd: number; fwd_bwd: number } {
  const be = nativeBackend(), rng = uniformSource(1);
  if (c.op === "attention" || c.op === "attentionBf16") {
    const [B, T, H, Hkv, D] = c.shape;
    const q = randomF32(B * T * H * D, rng), k = randomF32(B * T * Hkv * D, rng), v = randomF32(B * T * Hkv * D, rng);
    const out = new Float32Array(q.length), lse = new Float32Array(B * H * T), dout = randomF32(q.length, rng);
    const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
    const [f, b] = c.op === "attention" ? [be.attentionForward, be.attentionBackward] : [be.attentionForwardBf16!, be.attentionBackwardBf16!];
    const fwd = () => f(out, lse, q, k, v, B, T, H, Hkv, D);
    return { fwd: best(fwd), fwd_bwd: best(() => { fwd(); b(dq, dk, dv, dout, q, k, v, out, lse, B, T, H, Hkv, D); }) };
  }
  if (c.op === "crossEntropy") {
    const [N, V] = c.shape;
    const x = randomF32(N * V, rng, -3, 3), t = randomI32(N, rng, V), d = new Float32Array(N * V);
    return { fwd: best(() => be.crossEntropy(null, null, x, t, N, V, 1 / N)), fwd_bwd: best(() => be.crossEntropy(d, null, x, t, N, V, 1 / N)) };
  }
  if (c.op === "rmsnorm") {
    const [N, C] = c.shape;
    const x = randomF32(N * C, rng), w = randomF32(C, rng), o = new Float32Array(N * C), r = new Float32Array(N);
    const g = randomF32(N * C, rng), dx = new Float32Array(N * C), dw = new Float32Array(C);
    const fwd = () => be.rmsnormForward(o, r, x, w, N, C, 1e-5);
    return { fwd: best(fwd), fwd_bwd: best(() => { fwd(); be.rmsnormBackward(dx, dw, g, x, w, r, N, C); }) };
  }
  const [n] = c.shape;
  const a = randomF32(n, rng), b = randomF32(n, rng), o = new Float32Array(n), g = randomF32(n, rng);
  const da = new Float32Array(n), db = new Float32Array(n);
  const fwd = () => be.swigluForward(o, a, b, n);
  return { fwd: best(fwd), fwd_bwd: best(() => { fwd(); be.swigluBackward(da, db, g, a, b, n); }) };
}

export async function run(): Promise<unknown> {
  loadNative().setThreads(THREADS);
  const mine = CASES.map(ours);
  console.log(torchEnv().note);
  if (!nativeBackend().attentionForwardBf16) console.log("attentionBf16 rows skipped: no bf16 attention here (it needs AMX-BF16 tiles)");
  const p = spawnSync("/usr/bin/python3", ["-c", PEER, JSON.stringify(CASES)], { encoding: "utf8", timeout: 600_000, env: torchEnv().env });
  let peer: { torch: string; results: { fwd: number; fwd_bwd: number }[] } | null = null;
  if (p.status === 0) peer = JSON.parse(p.stdout.trim().split("\n").pop()!);
  else console.log(`PyTorch peer unavailable: ${(p.stderr || p.error?.message || "").split("\n").slice(-2).join(" ")}`);
  console.log(`threads ${THREADS}, best of ${REPS}, ms${peer ? `; peer PyTorch ${peer.torch}` : ""}`);
  console.log("op            shape                    ours fwd  fwd+bwd   torch fwd  fwd+bwd   speed-up (fwd+bwd)");
  const rows = CASES.map((c, i) => {
    const m = mine[i], t = peer?.results[i];
    const cell = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(2)).padStart(9);
    console.log(`${c.op.padEnd(13)} ${c.shape.join("×").padEnd(24)} ${cell(m.fwd)} ${cell(m.fwd_bwd)}   ${cell(t?.fwd)} ${cell(t?.fwd_bwd)}   ` +
      (t ? `${(t.fwd_bwd / m.fwd_bwd).toFixed(1)}x` : "-"));
    return { op: c.op, shape: c.shape, ours: m, torch: t ?? null };
  });
  return { threads: THREADS, reps: REPS, loadavg: (await import("node:os")).loadavg(), torch: peer?.torch ?? null, rows };
}

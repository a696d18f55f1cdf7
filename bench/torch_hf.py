#!/usr/bin/env python3
"""PyTorch peer for bench/hf.ts, on a random-weight Hugging Face-shaped model
(examples/torch/hfmodel.py: Llama / Qwen3 as transformers defines them), float32 on the CPU.
Prints one JSON line.

    torch_hf.py train  --config '{...config.json fields...}' --seq 512 --iters 3 --threads 2 [--max-seconds 300]
        training steps (forward, backward, clip, AdamW) at batch 1: tokens/s, ms per step, peak RSS.
        One warm-up step, then up to --iters timed steps, stopping early once --max-seconds of
        timed steps have run (at least one): at 0.6B parameters PyTorch may need minutes a step.
    torch_hf.py decode --config '{...}' --prompt 64 --new 64 --threads 2
        KV-cached greedy decoding at batch 1 (hfmodel's cache): prefill and decode tokens/s.
    torch_hf.py probe  --threads 2
        which BLAS library PyTorch loaded and its float32 GEMM GFLOP/s (1024³): the bench runs it
        with and without OpenMP pinning and gives the other modes the faster setting.

Debian's python3-torch calls whatever libblas.so.3 the system selects: the reference BLAS
(libblas3, ~1 GFLOP/s) unless OpenBLAS (libopenblas0-pthread) is installed. The probe names it.
"""
import argparse, json, os, resource, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "torch"))
from hfmodel import CausalLM  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["train", "decode", "probe"])
ap.add_argument("--config")
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--iters", type=int, default=3)
ap.add_argument("--max-seconds", type=float, default=float("inf"))
ap.add_argument("--prompt", type=int, default=64)
ap.add_argument("--new", type=int, default=64)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
peak_mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
common = dict(peer="pytorch", torch=torch.__version__, threads=a.threads, omp_proc_bind=os.environ.get("OMP_PROC_BIND"))


def blas_library():
    """The BLAS shared object mapped into this process (after a GEMM has loaded it)."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            name = os.path.basename(path)
            if any(k in name for k in ("blas", "mkl", "blis")):
                libs.add(os.path.realpath(path))
    return sorted(libs)


if a.mode == "probe":
    x, y = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(2):
        x @ y
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < 1.0:
        x @ y
        n += 1
    gflops = n * 2 * 1024 ** 3 / (time.perf_counter() - t0) / 1e9
    print(json.dumps(dict(common, gemm_gflops=gflops, blas=blas_library())))
    sys.exit(0)

cfg = json.loads(a.config)
m = CausalLM(cfg)
m.init_random(torch.Generator().manual_seed(1))
V = cfg["vocab_size"]
g = torch.Generator().manual_seed(2)

if a.mode == "decode":
    prompt = torch.randint(0, V, (1, a.prompt), generator=g)
    with torch.inference_mode():
        cache = {}
        t0 = time.perf_counter()
        logits = m(prompt, cache)
        prefill = a.prompt / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(a.new):
            logits = m(logits[:, -1:].argmax(-1), cache)
        decode = a.new / (time.perf_counter() - t0)
    print(json.dumps(dict(common, decode_tokens_per_s=decode, prefill_tokens_per_s=prefill, peak_rss_mb=peak_mb())))
    sys.exit(0)

opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
x = torch.randint(0, V, (1, a.seq), generator=g)
y = torch.randint(0, V, (1, a.seq), generator=g)


def step():
    loss = F.cross_entropy(m(x).view(-1, V), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


t0 = time.perf_counter()
step()  # warm-up (allocations, optimizer state)
warmup_ms = 1000 * (time.perf_counter() - t0)
times = []
while len(times) < a.iters and (not times or sum(times) < a.max_seconds):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
ms = 1000 * times[len(times) // 2]
print(json.dumps(dict(common, ms_per_step=ms, timed_steps=len(times), warmup_ms=warmup_ms, tokens_per_sec=a.seq * 1000 / ms,
                      peak_rss_mb=peak_mb(), blas=blas_library())))

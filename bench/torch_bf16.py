#!/usr/bin/env python3
"""PyTorch bf16 autocast peer for `npm run bench train`: the same training step as
../shared/bench/torch_reference.py's `bench` (forward, backward, grad clip, AdamW; float32
weights and optimizer), with the forward under torch.autocast("cpu", dtype=torch.bfloat16),
PyTorch's own mixed precision on the CPU. Prints one JSON line (tokens_per_s, ms_per_iter, ...),
or {"error": ...} when this PyTorch cannot run it.

Usage: torch_bf16.py TORCH_REFERENCE.py --config '{...}' [--threads 2] [--iters 4] [--warmup 1]
"""
import argparse, importlib.util, json, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("reference")
ap.add_argument("--config", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--iters", type=int, default=4)
ap.add_argument("--warmup", type=int, default=1)
a = ap.parse_args()

spec = importlib.util.spec_from_file_location("torch_reference", a.reference)
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
torch = ref.torch

try:
    cfg = ref.load_config(a.config)
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(0)
    w = ref.init_weights(cfg, torch.float32, gen)
    params = list(w.values())
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    B, T, V = cfg["batch_size"], cfg["seq_len"], cfg["vocab_size"]
    data = torch.randint(0, V, (8, B, T + 1), generator=gen)
    times = []
    for i in range(a.warmup + a.iters):
        d = data[i % 8]
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = ref.forward(cfg, w, d[:, :-1], d[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps(dict(peer="pytorch-bf16-autocast", torch=torch.__version__, threads=a.threads, iters=a.iters,
                          tokens_per_iter=B * T, ms_per_iter=round(med * 1e3, 2), tokens_per_s=round(B * T / med, 1),
                          loss=float(loss))))
except Exception as e:  # an old PyTorch without CPU autocast, or an op it lacks in bf16
    print(json.dumps(dict(error=f"{type(e).__name__}: {e}"[:300])))

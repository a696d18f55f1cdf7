#!/usr/bin/env python3
"""PyTorch peer for bench/hf.ts: training steps (forward, backward, clip, AdamW) of a random-weight
Hugging Face-shaped model (examples/torch/hfmodel.py: Llama / Qwen3 as transformers defines
them), float32 on the CPU. Prints one JSON line: tokens/s, ms per step, peak RSS.

    /usr/bin/python3 bench/torch_hf.py --config '{...config.json fields...}' --batch 1 --seq 512 --iters 3 --threads 2
"""
import argparse, json, os, resource, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "torch"))
from hfmodel import CausalLM  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--iters", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = json.loads(a.config)
m = CausalLM(cfg)
m.init_random(torch.Generator().manual_seed(1))
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
g = torch.Generator().manual_seed(2)
V = cfg["vocab_size"]
x = torch.randint(0, V, (a.batch, a.seq), generator=g)
y = torch.randint(0, V, (a.batch, a.seq), generator=g)


def step():
    loss = F.cross_entropy(m(x).view(-1, V), y.view(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()


step()  # warm-up (allocations, optimizer state)
times = []
for _ in range(a.iters):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
ms = 1000 * times[len(times) // 2]
print(json.dumps(dict(peer="pytorch", torch=torch.__version__, threads=a.threads, ms_per_step=ms,
                      tokens_per_sec=a.batch * a.seq * 1000 / ms, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))

"""
The peer of `npm run bench eval`: PyTorch scoring token sequences (no gradients), as an
evaluation harness does: a batch of B sequences of T tokens, one forward pass, log-softmax,
the log-probability of each next token gathered and summed. The model is the PyTorch
reference's Llama (../shared/bench/torch_reference.py, imported, not copied), float32.

  python3 bench/torch_score.py --config JSON --threads N --batch B --seq T --items N
prints one JSON line: tokens scored per second, sequences per second.
"""
import argparse, json, os, sys, time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "shared", "bench"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_reference import forward, init_weights, load_config  # noqa: E402


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--items", type=int, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config)
    gen = torch.Generator().manual_seed(0)
    w = {k: v.detach() for k, v in init_weights(cfg, torch.float32, gen).items()}
    V = cfg["vocab_size"]
    data = torch.randint(0, V, (a.items, a.seq), generator=gen)
    def run():
        total = 0.0
        for b in range(0, a.items, a.batch):
            idx = data[b:b + a.batch]
            logits, _ = forward(cfg, w, idx[:, :-1], idx[:, 1:])
            lp = F.log_softmax(logits, dim=-1).gather(-1, idx[:, 1:].unsqueeze(-1)).squeeze(-1)
            total += lp.sum().item()
        return total
    run()  # warm-up
    t0 = time.perf_counter()
    run()
    s = time.perf_counter() - t0
    print(json.dumps(dict(peer="pytorch", torch=torch.__version__, threads=a.threads, batch=a.batch, seq=a.seq, items=a.items,
                          tokens_per_s=round(a.items * (a.seq - 1) / s, 1), sequences_per_s=round(a.items / s, 2))))


main()

#!/usr/bin/env python3
"""Continue training a mynah model on a PyTorch cluster (torchrun + DDP, ZeRO or FSDP).

    mynah export --model runs/base --format hf --out hf/base           # a Hugging Face folder
    torchrun --nproc_per_node 8 examples/torch/train_ddp.py \\
        --model hf/base --data data/ --out hf/continued --steps 2000 --batch-size 16 --seq-len 1024
    mynah chat --model hf/continued                                     # back in mynah

--model: a Hugging Face folder (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM; what
`mynah export --format hf` writes). --data: mynah's token shards (`mynah data prepare`:
manifest.json + train-*.bin, format in docs/formats.md), read by memory map. Each rank draws
its own random windows of seq_len + 1 tokens (seed + rank); gradients are averaged by DDP
(NCCL on GPUs, gloo on CPUs), so every rank holds the same weights after every step. Rank 0
writes --out: config.json, model.safetensors (--dtype), the tokenizer files, and
train_log.json (loss per step, each rank's first batch and its loss, each rank's weight
digest).

--strategy chooses how the ranks share the work; every strategy sees the same batches, computes
the same loss and takes the same AdamW step (up to the order of floating-point sums):
  ddp   every rank holds the whole model, its gradients and both AdamW moments (16 bytes per
        parameter); gradients are all-reduced.
  zero  DDP plus torch.distributed.optim.ZeroRedundancyOptimizer (ZeRO stage 1): each rank keeps
        the AdamW moments of only its share of the parameters (8 bytes per parameter / ranks),
        steps that share and broadcasts it. Works with any PyTorch >= 1.10, CPUs or GPUs.
  fsdp  torch.distributed.fsdp.FullyShardedDataParallel: parameters, gradients and optimizer
        state all sharded (16 bytes per parameter / ranks at rest); rank 0 gathers the full
        weights to write --out. Needs a PyTorch whose FSDP imports and runs on the device: the
        script checks at start-up and refuses with the reason otherwise (Debian's PyTorch 1.13
        on Python 3.11 cannot import torch.distributed.fsdp at all).

Needs only PyTorch and NumPy (the model and safetensors I/O are in hfmodel.py beside this).
"""
import argparse, hashlib, json, math, os, platform, shutil, struct, sys, time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from hfmodel import CausalLM, load_folder, save_folder

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "generation_config.json"]


def open_split(data_dir, split):
    """The split's shards as read-only memory maps (header checked as mynah does)."""
    man = json.load(open(os.path.join(data_dir, "manifest.json")))
    if man.get("format") != "mynah-shards" or man.get("version") != 2:
        raise SystemExit(f"{data_dir}/manifest.json: not a mynah-shards v2 manifest (prepare it again with this mynah)")
    out = []
    for s in man["splits"][split]["shards"]:
        path = os.path.join(data_dir, s["file"])
        with open(path, "rb") as f:
            head = f.read(32)
        if head[:8] != b"MYNAHTOK":
            raise SystemExit(f"{path}: not a mynah token shard (bad magic)")
        version, bpt = struct.unpack_from("<II", head, 8)
        ntok = struct.unpack_from("<Q", head, 16)[0]
        # version 2: the tokens, then the document index (uint64 starts), which is not needed here
        if version != 2 or bpt not in (2, 4):
            raise SystemExit(f"{path}: shard format {version}, {bpt} bytes per token: not readable")
        if ntok:
            out.append(np.memmap(path, dtype=np.uint16 if bpt == 2 else np.uint32, mode="r", offset=32, shape=(ntok,)))
    return out, man


def draw_batch(shards, B, T, rng):
    """B random windows of T + 1 tokens (a shard chosen by its length): inputs and targets [B, T]."""
    sizes = np.array([len(s) for s in shards], dtype=np.float64)
    rows = []
    for _ in range(B):
        s = shards[rng.choice(len(shards), p=sizes / sizes.sum())]
        if len(s) < T + 1:
            raise SystemExit(f"a shard holds {len(s)} tokens, fewer than --seq-len + 1 = {T + 1}")
        start = int(rng.integers(0, len(s) - T))
        rows.append(np.asarray(s[start:start + T + 1], dtype=np.int64))
    x = torch.from_numpy(np.stack(rows))
    return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def digest(weights):
    """SHA-256 of name -> tensor, in name order (equal on every rank when the ranks agree)."""
    h = hashlib.sha256()
    for _, p in sorted(weights.items()):
        h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def fsdp_unavailable(cuda):
    """None when FSDP can run here, else the reason (checked before anything is loaded)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: F401
    except Exception as e:  # Debian's torch 1.13 on Python 3.11: a dataclass default Python 3.11 rejects
        return (f"torch.distributed.fsdp does not import with PyTorch {torch.__version__} on Python {platform.python_version()} "
                f"({type(e).__name__}: {str(e).splitlines()[0]}); FSDP needs a PyTorch built for this Python (PyTorch >= 2.0 on Python 3.11)")
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if not cuda and major < 2:
        return f"FSDP in PyTorch {torch.__version__} runs on CUDA devices only (CPU support with gloo came in the 2.x series)"
    return None


def optimizer_state_numel(opt):
    """Floats of optimizer state this rank holds (AdamW: exp_avg and exp_avg_sq of its parameters)."""
    inner = getattr(opt, "optim", opt)  # ZeroRedundancyOptimizer keeps its shard's optimizer in .optim
    return sum(t.numel() for st in inner.state.values() for t in st.values() if torch.is_tensor(t) and t.dim() > 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="Hugging Face folder to start from")
    ap.add_argument("--data", required=True, help="mynah token shards (manifest.json)")
    ap.add_argument("--out", required=True, help="output Hugging Face folder (rank 0 writes it)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8, help="rows per rank per step")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--min-lr", type=float, default=None, help="final learning rate (default lr / 10)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32", help="weights written to --out")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per rank (0: cores / ranks)")
    ap.add_argument("--strategy", choices=["ddp", "zero", "fsdp"], default="ddp",
                    help="ddp: replicas; zero: AdamW state sharded across ranks; fsdp: parameters, gradients and state sharded")
    a = ap.parse_args()

    cuda = torch.cuda.is_available()
    if a.strategy == "fsdp":
        why = fsdp_unavailable(cuda)
        if why:
            print(f"train_ddp.py: --strategy fsdp is not available here: {why}. "
                  "Use --strategy zero (AdamW state sharded across ranks; runs on this PyTorch) or --strategy ddp.", file=sys.stderr)
            sys.exit(2)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(a.threads or max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(a.seed)

    cfg, weights = load_folder(a.model)
    model = CausalLM(cfg)
    model.load(weights)
    model.to(device)
    if a.seq_len > cfg["max_position_embeddings"]:
        raise SystemExit(f"--seq-len {a.seq_len} is longer than the model's context {cfg['max_position_embeddings']}")
    names = list(model.shapes)
    if a.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        # One flat parameter for the whole model, split across ranks; use_orig_params keeps the
        # Hugging Face parameters visible so the two AdamW groups (decay / no decay) stay as in DDP.
        try:
            wrapped = FSDP(model, device_id=device if cuda else None, use_orig_params=True, sync_module_states=True)
        except Exception as e:  # e.g. an older 2.x FSDP without CPU support
            raise SystemExit(f"train_ddp.py: --strategy fsdp is not available here: FullyShardedDataParallel failed on {device} with PyTorch "
                             f"{torch.__version__} ({type(e).__name__}: {e}). Use --strategy zero or --strategy ddp.")
    else:
        wrapped = DDP(model, device_ids=[device.index] if cuda else None)
    decay = [p for k, p in model.named_weights().items() if p.dim() >= 2]
    other = [p for k, p in model.named_weights().items() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": a.weight_decay}, {"params": other, "weight_decay": 0.0}]
    if a.strategy == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(decay, optimizer_class=torch.optim.AdamW, lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=a.weight_decay)
        opt.add_param_group({"params": other, "weight_decay": 0.0})
    else:
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    min_lr = a.lr / 10 if a.min_lr is None else a.min_lr

    def lr_at(step):  # linear warmup, cosine to min_lr (as mynah's schedule)
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return min_lr + 0.5 * (a.lr - min_lr) * (1 + math.cos(math.pi * t))

    shards, man = open_split(a.data, "train")
    if man["tokenizer"]["vocabSize"] > cfg["vocab_size"]:
        raise SystemExit(f"the shards' tokenizer has {man['tokenizer']['vocabSize']} tokens, the model {cfg['vocab_size']}")
    rng = np.random.default_rng(a.seed * 1000 + rank)
    log = {"world_size": world, "steps": [], "first_batch": None}
    t0 = time.time()
    for step in range(a.steps):
        x, y = draw_batch(shards, a.batch_size, a.seq_len, rng)
        x, y = x.to(device), y.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        logits = wrapped(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients here; FSDP reduce-scatters them
        if a.clip <= 0:
            norm = torch.tensor(0.0)
        elif a.strategy == "fsdp":
            norm = wrapped.clip_grad_norm_(a.clip)  # the norm over every rank's shard
        else:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        # The mean loss over ranks, for the log.
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        mean /= world
        if step == 0:
            log["first_batch"] = {"rank": rank, "inputs": x.cpu().tolist(), "targets": y.cpu().tolist(), "loss": loss.item()}
        if rank == 0:
            log["steps"].append({"step": step + 1, "loss": mean.item(), "lr": lr_at(step), "grad_norm": float(norm)})
            if (step + 1) % 10 == 0 or step == 0 or step + 1 == a.steps:
                print(f"step {step + 1}/{a.steps} loss {mean.item():.4f} lr {lr_at(step):.2e} "
                      f"{(step + 1) * a.batch_size * a.seq_len * world / (time.time() - t0):.0f} tok/s", flush=True)
    # The full weights (FSDP gathers its shards on every rank; the others hold them already).
    if a.strategy == "fsdp":
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=False)):
            sd = wrapped.state_dict()
        full = {k: sd["w." + k.replace(".", "__")] for k in names}
    else:
        full = {k: p.detach() for k, p in model.named_weights().items()}
    # Every rank's weights must be identical: gather their digests, and what each rank held.
    digests = [None] * world
    dist.all_gather_object(digests, digest(full))
    # (FSDP's use_orig_params views hold only this rank's part of each parameter, often none.)
    held = {"optimizer_floats": optimizer_state_numel(opt), "parameter_floats": sum(p.numel() for p in wrapped.parameters())}
    per_rank = [None] * world
    dist.all_gather_object(per_rank, held)
    first = [None] * world
    dist.all_gather_object(first, log["first_batch"])
    if rank == 0:
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]
        tmp = a.out.rstrip("/") + f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_folder(tmp, cfg, {k: full[k].cpu() for k in names}, dtype=dtype)
        for f in TOKENIZER_FILES:
            if os.path.exists(os.path.join(a.model, f)):
                shutil.copyfile(os.path.join(a.model, f), os.path.join(tmp, f))
        log.update(strategy=a.strategy, first_batch=first, digests=digests, per_rank=per_rank, seconds=time.time() - t0)
        with open(os.path.join(tmp, "train_log.json"), "w") as f:
            json.dump(log, f)
        if os.path.exists(a.out):
            shutil.rmtree(a.out)
        os.replace(tmp, a.out)
        print(f"wrote {a.out} ({'in sync' if len(set(digests)) == 1 else 'RANKS DIFFER'}: {len(set(digests))} distinct weight digests over {world} ranks)")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Everything is written and the group is gone. Leave without running destructors: in
    # PyTorch 1.13, the DDP Reducer freed at interpreter exit destroys the gloo process group,
    # whose destructor joins a worker thread that waits for the GIL the exiting thread holds
    # (seen here: every file written, rank 0 then spinning forever).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

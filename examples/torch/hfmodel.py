"""Hugging Face causal-LM folders in plain PyTorch: read and write safetensors (no extra
packages), and the Llama / Qwen2 / Qwen3 decoder as transformers defines it.

Used by mynah's tests (test/torch/make_hf_fixtures.py writes random-weight models in exact
Hugging Face layout and their logits) and by the cluster companion (train_ddp.py).

    cfg, weights = load_folder("path/to/model")        # config.json + model.safetensors / shards
    model = CausalLM(cfg).double(); model.load(weights)
    logits = model(ids)                                  # [B, T, V]

Architecture (transformers' modeling_llama / modeling_qwen2 / modeling_qwen3):
  x = embed_tokens[ids]
  per layer:  h = rmsnorm(x) * input_layernorm.weight
              q, k, v = h @ W.T (+ bias for Qwen2)           weights are [out, in]
              Qwen3: q, k = rmsnorm over head_dim * q_norm / k_norm
              rope (rotate_half; inv_freq = theta^(-2i/D), rope_scaling linear or llama3)
              causal softmax(q k^T / sqrt(D)) v, grouped-query when fewer kv heads
              x = x + o_proj(attn)
              x = x + down_proj(silu(gate_proj(h2)) * up_proj(h2)),  h2 = rmsnorm(x) * post_attention_layernorm.weight
  logits = (rmsnorm(x) * norm.weight) @ lm_head.T    (embed_tokens when tie_word_embeddings)
"""
import json, math, os, struct

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "F64": torch.float64, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F64": 8, "I64": 8}


def read_safetensors(path):
    """name -> tensor (in the file's dtype), and the metadata."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        raw = bytearray(data[a:b])
        dt = e["dtype"]
        if dt == "BF16":  # frombuffer has no bfloat16 path on older torch: go through int16
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.empty(0, dtype=torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=DTYPES[dt]) if raw else torch.empty(0, dtype=DTYPES[dt])
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes name -> tensor in insertion order, data 8-aligned, atomically (temp + rename)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    js = json.dumps(header, separators=(",", ":"))
    js += " " * ((8 - len(js.encode()) % 8) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(js.encode())))
        f.write(js.encode())
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_folder(d):
    """config dict and name -> tensor from model.safetensors or model.safetensors.index.json."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    single = os.path.join(d, "model.safetensors")
    files = [single] if os.path.exists(single) else sorted(
        {os.path.join(d, f) for f in json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"].values()})
    weights = {}
    for f in files:
        weights.update(read_safetensors(f)[0])
    return cfg, weights


def inv_freq(cfg, D):
    """RoPE inverse frequencies in float64, with rope_scaling (linear, llama3) as transformers applies it."""
    f = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    rs = cfg.get("rope_scaling")
    if not rs:
        return f
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return f / rs["factor"]
    if kind == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / f
        scaled = torch.where(wavelen > old / lo, f / factor, f)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"rope_scaling {kind} not implemented")


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class CausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        arch = cfg["architectures"][0]
        C, H = cfg["hidden_size"], cfg["num_attention_heads"]
        self.H, self.Hkv = H, cfg.get("num_key_value_heads", H)
        self.D = cfg.get("head_dim") or C // H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.bias = arch == "Qwen2ForCausalLM"
        self.qk_norm = arch == "Qwen3ForCausalLM"
        self.tied = cfg.get("tie_word_embeddings", False)
        V, Fh, L, D, Hkv = cfg["vocab_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], self.D, self.Hkv
        self.shapes = {"model.embed_tokens.weight": (V, C)}
        for i in range(L):
            p = f"model.layers.{i}."
            self.shapes.update({p + "input_layernorm.weight": (C,), p + "self_attn.q_proj.weight": (H * D, C),
                                p + "self_attn.k_proj.weight": (Hkv * D, C), p + "self_attn.v_proj.weight": (Hkv * D, C),
                                p + "self_attn.o_proj.weight": (C, H * D), p + "post_attention_layernorm.weight": (C,),
                                p + "mlp.gate_proj.weight": (Fh, C), p + "mlp.up_proj.weight": (Fh, C), p + "mlp.down_proj.weight": (C, Fh)})
            if self.bias:
                self.shapes.update({p + "self_attn.q_proj.bias": (H * D,), p + "self_attn.k_proj.bias": (Hkv * D,), p + "self_attn.v_proj.bias": (Hkv * D,)})
            if self.qk_norm:
                self.shapes.update({p + "self_attn.q_norm.weight": (D,), p + "self_attn.k_norm.weight": (D,)})
        self.shapes["model.norm.weight"] = (C,)
        if not self.tied:
            self.shapes["lm_head.weight"] = (V, C)
        # Parameters by Hugging Face name ('.' is not allowed in module names: keep a dict).
        self.w = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.zeros(s)) for k, s in self.shapes.items()})
        self.register_buffer("inv_freq", inv_freq(cfg, D), persistent=False)

    def W(self, name):
        return self.w[name.replace(".", "__")]

    def named_weights(self):
        return {k: self.W(k) for k in self.shapes}

    def init_random(self, gen, std=0.02):
        with torch.no_grad():
            for k, s in self.shapes.items():
                p = self.W(k)
                if k.endswith("norm.weight"):
                    p.copy_(1 + 0.1 * torch.randn(s, generator=gen, dtype=torch.float64))
                elif k.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(s, generator=gen, dtype=torch.float64))
                else:
                    p.copy_(std * torch.randn(s, generator=gen, dtype=torch.float64))

    def load(self, weights):
        with torch.no_grad():
            for k, s in self.shapes.items():
                t = weights[k]
                assert tuple(t.shape) == tuple(s), (k, t.shape, s)
                self.W(k).copy_(t.to(self.W(k).dtype))

    def forward(self, ids, cache=None):
        """Logits [B, T, V]. With `cache` (a dict, {} at first): keys and values of the earlier
        positions are kept there and reused, so feeding one token at a time decodes (KV cache)."""
        B, T = ids.shape
        H, Hkv, D, eps = self.H, self.Hkv, self.D, self.eps
        W = self.W
        P0 = cache.get("pos", 0) if cache is not None else 0  # positions already in the cache
        x = F.embedding(ids, W("model.embed_tokens.weight"))
        pos = torch.arange(P0, P0 + T, dtype=torch.float64)
        ang = torch.outer(pos, self.inv_freq.double())
        cos = torch.cat((ang, ang), -1).cos().to(x.dtype)
        sin = torch.cat((ang, ang), -1).sin().to(x.dtype)
        mask = torch.ones(T, P0 + T, dtype=torch.bool).triu(P0 + 1)  # query P0+i sees keys 0..P0+i
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rmsnorm(x, W(p + "input_layernorm.weight"), eps)
            q = F.linear(h, W(p + "self_attn.q_proj.weight"), W(p + "self_attn.q_proj.bias") if self.bias else None)
            k = F.linear(h, W(p + "self_attn.k_proj.weight"), W(p + "self_attn.k_proj.bias") if self.bias else None)
            v = F.linear(h, W(p + "self_attn.v_proj.weight"), W(p + "self_attn.v_proj.bias") if self.bias else None)
            q = q.view(B, T, H, D)
            k = k.view(B, T, Hkv, D)
            v = v.view(B, T, Hkv, D)
            if self.qk_norm:
                q = rmsnorm(q, W(p + "self_attn.q_norm.weight"), eps)
                k = rmsnorm(k, W(p + "self_attn.k_norm.weight"), eps)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:  # [B, Hkv, P0 + T, D]: the earlier positions, then these
                if i in cache:
                    k, v = torch.cat((cache[i][0], k), 2), torch.cat((cache[i][1], v), 2)
                cache[i] = (k, v)
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, H * D)
            x = x + F.linear(y, W(p + "self_attn.o_proj.weight"))
            h = rmsnorm(x, W(p + "post_attention_layernorm.weight"), eps)
            x = x + F.linear(F.silu(F.linear(h, W(p + "mlp.gate_proj.weight"))) * F.linear(h, W(p + "mlp.up_proj.weight")), W(p + "mlp.down_proj.weight"))
        if cache is not None:
            cache["pos"] = P0 + T
        x = rmsnorm(x, W("model.norm.weight"), eps)
        return F.linear(x, W("model.embed_tokens.weight") if self.tied else W("lm_head.weight"))


def save_folder(d, cfg, weights, dtype=torch.float32, shards=1):
    """Writes config.json and the weights (one file, or `shards` files plus the index)."""
    os.makedirs(d, exist_ok=True)
    cfg = dict(cfg, torch_dtype={torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    names = list(weights)
    ts = {k: weights[k].detach().to(dtype) for k in names}
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), ts, {"format": "pt"})
        return
    per = math.ceil(len(names) / shards)
    wmap, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: ts[k] for k in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(d, fname), part, {"format": "pt"})
        for k, t in part.items():
            wmap[k] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap}, f, indent=2)

#!/usr/bin/env python3
"""Writes random-weight models in exact Hugging Face layout, and what PyTorch computes on them.

    /usr/bin/python3 test/torch/make_hf_fixtures.py test/fixtures

Each folder test/fixtures/hf-NAME/ holds config.json, the weights as transformers saves them
(model.safetensors, or shards + model.safetensors.index.json; F32, F16 or BF16) and
expected.safetensors: input_ids, targets (-1 = ignored), logits, loss and grad.<every weight>,
computed in float64 from the stored (rounded) weights by examples/torch/hfmodel.py.
"""
import os, sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "torch"))
from hfmodel import CausalLM, save_folder, write_safetensors, load_folder  # noqa: E402

BASE = dict(hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0)

MODELS = {
    # Llama 3 shape: GQA, untied, llama3 RoPE scaling, BF16, two shards.
    "hf-llama3-bf16-sharded": dict(dtype=torch.bfloat16, shards=2, cfg=dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=96, hidden_size=32, intermediate_size=80,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    # Qwen2: q/k/v biases, tied, F16, linear RoPE scaling.
    "hf-qwen2-bias-f16": dict(dtype=torch.float16, shards=1, cfg=dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=80, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, use_sliding_window=False,
        rope_scaling={"type": "linear", "factor": 2.0})),
    # Qwen3: head_dim 16 with 4 heads on width 24 (H·D = 64 ≠ 24), QK-norm, tied, F32.
    "hf-qwen3-headdim": dict(dtype=torch.float32, shards=1, cfg=dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=72, hidden_size=24, intermediate_size=56,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
        attention_bias=False, rope_theta=1000000.0)),
}


def main(out):
    torch.manual_seed(0)
    for i, (name, spec) in enumerate(MODELS.items()):
        d = os.path.join(out, name)
        cfg = dict(BASE, **spec["cfg"])
        gen = torch.Generator().manual_seed(1000 + i)
        m = CausalLM(cfg).double()
        m.init_random(gen)
        save_folder(d, cfg, m.named_weights(), dtype=spec["dtype"], shards=spec["shards"])
        # Reload what was written: the expected values are of the stored (rounded) weights.
        cfg2, w = load_folder(d)
        ref = CausalLM(cfg2).double()
        ref.load(w)
        B, T, V = 2, 11, cfg["vocab_size"]
        ids = torch.randint(0, V, (B, T), generator=gen)
        targets = torch.randint(0, V, (B, T), generator=gen)
        targets[torch.rand(B, T, generator=gen) < 0.2] = -1
        logits = ref(ids)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
        loss.backward()
        exp = {"input_ids": ids.to(torch.int32), "targets": targets.to(torch.int32), "logits": logits.detach().float(),
               "loss": loss.detach().float().reshape(1)}
        for k, p in ref.named_weights().items():
            exp["grad." + k] = p.grad.float()
        write_safetensors(os.path.join(d, "expected.safetensors"), exp)
        print(f"{d}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures")

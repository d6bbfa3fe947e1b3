#!/usr/bin/python3
"""Writes a Hugging Face checkpoint of random bf16 weights with a real model's
shape (default Llama-3-8B: hidden 4096, 32 layers, 32 heads, 8 kv heads, MLP
14336, vocab 128256), split into safetensors shards with an index, and
optionally two pre-tokenized datasets (input_ids/labels JSONL) for diagnose
and tune. No weight is downloaded: the shape is what memory and speed depend on.

  bench/make_checkpoint.py OUT [--layers N] [--shards 4] [--data N --data-len 512]

--layers 2 gives the test-sized version (the real widths, a few layers: 3 GB)."""

import argparse
import json
import os
import struct
import sys

import numpy as np

LLAMA3_8B = dict(hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8, vocab=128256)


def tensor_shapes(c):
    D, F, H, K, V = c["hidden"], c["inter"], c["heads"], c["kv_heads"], c["vocab"]
    d = D // H
    out = [("model.embed_tokens.weight", (V, D))]
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        out += [
            (p + "input_layernorm.weight", (D,)),
            (p + "self_attn.q_proj.weight", (H * d, D)),
            (p + "self_attn.k_proj.weight", (K * d, D)),
            (p + "self_attn.v_proj.weight", (K * d, D)),
            (p + "self_attn.o_proj.weight", (D, H * d)),
            (p + "post_attention_layernorm.weight", (D,)),
            (p + "mlp.gate_proj.weight", (F, D)),
            (p + "mlp.up_proj.weight", (F, D)),
            (p + "mlp.down_proj.weight", (D, F)),
        ]
    out += [("model.norm.weight", (D,)), ("lm_head.weight", (V, D))]
    return out


def bf16_random(rng, n, std, chunk=1 << 24):
    """n bf16 values (as uint16) ~ N(0, std^2), made a chunk at a time."""
    out = np.empty(n, dtype=np.uint16)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = rng.standard_normal(m, dtype=np.float32) * np.float32(std)
        out[s:s + m] = (x.view(np.uint32) >> 16).astype(np.uint16)
    return out


def write_shard(path, entries, rng):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in entries:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape in entries:
            n = int(np.prod(shape))
            if name.endswith("norm.weight"):
                f.write(np.full(n, 0x3F80, dtype=np.uint16).tobytes())  # 1.0
            else:
                std = 0.02 if "proj" in name or "lm_head" in name else 1.0
                f.write(bf16_random(rng, n, std).tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    for k, v in LLAMA3_8B.items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=int, default=0, help="examples per dataset (safety.jsonl, utility.jsonl)")
    ap.add_argument("--data-len", type=int, default=512, help="tokens per example")
    a = ap.parse_args()
    c = {k: getattr(a, k) for k in LLAMA3_8B}
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    shapes = tensor_shapes(c)
    total = sum(int(np.prod(s)) for _, s in shapes)
    per = total / a.shards
    groups, cur, acc = [], [], 0
    for e in shapes:
        cur.append(e)
        acc += int(np.prod(e[1]))
        if acc >= per * (len(groups) + 1) and len(groups) < a.shards - 1:
            groups.append(cur)
            cur = []
    groups = [g for g in groups + [cur] if g]
    weight_map = {}
    for i, g in enumerate(groups):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        write_shard(os.path.join(a.out, name), g, rng)
        for t, _ in g:
            weight_map[t] = name
        print("wrote %s (%d tensors)" % (name, len(g)), file=sys.stderr)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total * 2}, "weight_map": weight_map}, f, indent=1)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": c["hidden"],
        "intermediate_size": c["inter"], "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"], "vocab_size": c["vocab"], "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "torch_dtype": "bfloat16",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for set_name in ("safety", "utility") if a.data else ():
        with open(os.path.join(a.out, "..", os.path.basename(a.out.rstrip("/")) + "-" + set_name + ".jsonl"), "w") as f:
            for _ in range(a.data):
                ids = rng.integers(0, c["vocab"], a.data_len).tolist()
                labels = [-100] * (a.data_len // 2) + ids[a.data_len // 2:]
                f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    print("%s: %.2fB parameters, %.1f GB" % (a.out, total / 1e9, total * 2 / 1e9), file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Cost of `cast diagnose` on the SmolLM2-135M shape (hidden 576, 30 layers, 9 heads, 3 kv heads,
MLP 1536, vocab 49152, tied) with random weights and 128 + 128 pre-tokenized examples of 256 tokens.

usage: bench/diagnose_cost.py [--cast build/cast] [--examples 128] [--seq 256] [--threads 2] [--fs gate]
Prints wall time and peak resident memory (from /usr/bin/time-like rusage of the child).
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import torch  # noqa: E402
import safetensors_io  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cast", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "cast"))
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fs", default="gate")
    a = ap.parse_args()
    D, L, H, K, F, V = 576, 30, 9, 3, 1536, 49152
    d = D // H
    tmp = tempfile.mkdtemp(prefix="cast-diag-cost-")
    g = torch.Generator().manual_seed(0)
    w = {"model.embed_tokens.weight": torch.randn(V, D, generator=g) * 0.02, "model.norm.weight": torch.ones(D)}
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = torch.ones(D)
        w[p + "post_attention_layernorm.weight"] = torch.ones(D)
        for name, shape in [("self_attn.q_proj", (H * d, D)), ("self_attn.k_proj", (K * d, D)), ("self_attn.v_proj", (K * d, D)),
                            ("self_attn.o_proj", (D, H * d)), ("mlp.gate_proj", (F, D)), ("mlp.up_proj", (F, D)), ("mlp.down_proj", (D, F))]:
            w[p + name + ".weight"] = torch.randn(*shape, generator=g) * 0.02
    safetensors_io.save(os.path.join(tmp, "model.safetensors"), w)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D, "intermediate_size": F,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": K, "vocab_size": V,
           "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 2048, "tie_word_embeddings": True,
           "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
    for name, seed in (("safety", 1), ("utility", 2)):
        gg = torch.Generator().manual_seed(seed)
        with open(os.path.join(tmp, name + ".jsonl"), "w") as f:
            for _ in range(a.examples):
                ids = torch.randint(0, V, (a.seq,), generator=gg).tolist()
                labels = [-100] * (a.seq // 4) + ids[a.seq // 4:]
                f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    cmd = [a.cast, "diagnose", tmp, "--safety", os.path.join(tmp, "safety.jsonl"), "--utility", os.path.join(tmp, "utility.jsonl"),
           "--out", os.path.join(tmp, "diag"), "--first", "0", "--max-len", str(a.seq), "--fs", a.fs,
           "--threads", str(a.threads)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    weights_mb = os.path.getsize(os.path.join(tmp, "model.safetensors")) / 2**20
    print(json.dumps({"command": " ".join(cmd[1:2]) + " SmolLM2-135M shape", "examples_per_set": a.examples, "seq": a.seq,
                      "fs": a.fs, "threads": a.threads, "wall_s": round(wall, 1), "peak_rss_mb": round(peak),
                      "weights_mb": round(weights_mb)}))


if __name__ == "__main__":
    main()

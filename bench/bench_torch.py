#!/usr/bin/python3
"""PyTorch (CPU, float32) throughput baseline for `cast bench`, same flags, same JSON.

usage: bench_torch.py --hidden N --layers N --heads N --kv-heads N --inter N --vocab N [--tie]
                      [--head-dim N] --batch B --seq T --mode fwd|fwdbwd|decode
                      --threads N --iters N [--warmup N] [--autocast bf16] [--weights bf16] [--json]

Model: the reference Llama of tests/reference/torch_llama.py (HF eager semantics: RMSNorm,
RoPE, GQA via repeated kv heads, causal softmax attention, SwiGLU), random weights (std 0.02,
seed 0), random token ids, all in float32; torch.set_num_threads(threads). OPENBLAS_* and other
environment variables are left as they are. --autocast bf16 runs each iteration under
torch.autocast("cpu", dtype=torch.bfloat16) (matmuls in bf16, f32 weights); --weights bf16 holds
the weights in bf16 (decode: bf16 weights, bf16 compute).

What one iteration is:
  fwd     logits of B x T tokens + mean cross-entropy (next-token, all positions), no autograd.
          tokens/iter = B*T
  fwdbwd  the same with autograd, then loss.backward() into every parameter (grads reset to
          None before each iteration). tokens/iter = B*T
  decode  one decode step for B sequences at context T: the KV cache holds positions 0..T-1
          (filled once by an untimed prefill of T tokens), each sequence feeds one new token at
          position T, attends to T+1 keys, and the argmax of its logits is taken. The cache is
          not advanced between iterations (slot T is rewritten), so every step costs the same.
          tokens/iter = B
Timing: `warmup` untimed iterations (default 1), then `iters` timed ones; reported values use
the median iteration time: ms_per_iter, tokens_per_s = tokens/iter / time, gflops = flops()/time/1e9.
Output with --json: one line {"tokens_per_s": x, "ms_per_iter": x, "gflops": x}.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from torch_llama import CausalLM, Config, KVCache, param_shapes  # noqa: E402


def flops(hidden, layers, heads, kv_heads, inter, vocab, batch, seq, mode, head_dim=None):
    """Floating-point operations of one benchmark iteration (the C side uses the same formula).

    d = head_dim or hidden // heads.
    Matmul parameters touched per token (lm_head counted even when tied to the embeddings;
    embedding lookup, norms, RoPE, softmax, SiLU and the loss are not counted):
        P = layers * (hidden*heads*d          q_proj
                      + 2*hidden*kv_heads*d   k_proj, v_proj
                      + heads*d*hidden        o_proj
                      + 3*hidden*inter)       gate, up, down
            + vocab*hidden                    lm_head
    Attention (QK^T and PV: 2*d flops each per query-key pair and head), causal:
        fwd     pairs = batch * seq*(seq+1)/2 per head and layer
                flops = 2*P*batch*seq + 4*d*heads*layers*pairs
        fwdbwd  3 * fwd   (backward counted as twice the forward)
        decode  one new token per sequence attending seq+1 keys:
                flops = 2*P*batch + 4*d*heads*layers*batch*(seq+1)
    """
    d = head_dim or hidden // heads
    P = layers * (hidden * heads * d + 2 * hidden * kv_heads * d + heads * d * hidden + 3 * hidden * inter) + vocab * hidden
    if mode == "decode":
        return 2 * P * batch + 4 * d * heads * layers * batch * (seq + 1)
    pairs = batch * seq * (seq + 1) // 2
    fwd = 2 * P * batch * seq + 4 * d * heads * layers * pairs
    if mode == "fwd":
        return fwd
    if mode == "fwdbwd":
        return 3 * fwd
    raise ValueError("unknown mode %r" % mode)


def build_model(a):
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": a.vocab,
        "hidden_size": a.hidden,
        "intermediate_size": a.inter,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": a.tie,
    }
    if a.head_dim:
        hf["head_dim"] = a.head_dim
    cfg = Config.from_hf(hf)
    torch.manual_seed(0)
    params = {}
    for name, shape in param_shapes(cfg).items():
        params[name] = torch.ones(shape) if name.endswith("norm.weight") else 0.02 * torch.randn(shape)
    return CausalLM(cfg, params)


def loss_of(logits, ids):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    for f in ("hidden", "layers", "heads", "kv-heads", "inter", "vocab", "batch", "seq", "threads", "iters"):
        ap.add_argument("--" + f, type=int, required=True)
    ap.add_argument("--head-dim", type=int, default=0, help="default hidden/heads")
    ap.add_argument("--tie", action="store_true", help="lm_head tied to the embeddings")
    ap.add_argument("--mode", choices=("fwd", "fwdbwd", "decode"), required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--autocast", choices=("none", "bf16"), default="none")
    ap.add_argument("--weights", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.heads % a.kv_heads or a.iters < 1 or a.seq < (2 if a.mode != "decode" else 1):
        ap.error("heads must be a multiple of kv-heads, iters >= 1, seq >= 2 (1 for decode)")

    torch.set_num_threads(a.threads)
    model = build_model(a)
    if a.weights == "bf16":
        for k in model.p:
            model.p[k] = model.p[k].to(torch.bfloat16)
    B, T = a.batch, a.seq
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, a.vocab, (B, T), generator=gen)

    if a.mode == "fwd":
        tokens = B * T

        def step():
            with torch.no_grad():
                loss_of(model.forward(ids), ids)

    elif a.mode == "fwdbwd":
        tokens = B * T
        for t in model.p.values():
            t.requires_grad_(True)

        def step():
            for t in model.p.values():
                t.grad = None
            loss_of(model.forward(ids), ids).backward()

    else:
        tokens = B
        cache = KVCache(model.cfg, B, T + 1, torch.bfloat16 if a.weights == "bf16" else torch.float32)
        with torch.no_grad():
            last = model.forward(ids, cache=cache, start=0)[:, -1]  # untimed prefill
        nxt = torch.argmax(last, dim=-1, keepdim=True)  # [B, 1]

        def step():
            with torch.no_grad():
                torch.argmax(model.forward(nxt, cache=cache, start=T)[:, -1], dim=-1)

    if a.autocast == "bf16":
        plain = step

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                plain()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    fl = flops(a.hidden, a.layers, a.heads, a.kv_heads, a.inter, a.vocab, B, T, a.mode, a.head_dim or None)
    res = {"tokens_per_s": tokens / sec, "ms_per_iter": sec * 1e3, "gflops": fl / sec / 1e9}
    if a.json:
        print(json.dumps(res))
    else:
        print("torch %s B=%d T=%d threads=%d: %.1f tokens/s, %.2f ms/iter, %.2f GFLOP/s"
              % (a.mode, B, T, a.threads, res["tokens_per_s"], res["ms_per_iter"], res["gflops"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Write tiny random Hugging Face checkpoints plus the float64 reference values.

usage: make_cases.py OUTDIR [CASE ...]

One folder per case (OUTDIR/<name>/):
  config.json                 HF config (architectures, model_type, sizes, rope, biases, dtype, ...)
  model.safetensors           weights under HF names, stored F32 / BF16 / F16 per torch_dtype
    or model-0000i-of-00003.safetensors + model.safetensors.index.json (sharded case)
  batch.jsonl                 3-4 pre-tokenized sequences {"input_ids": [...], "labels": [...]}
  expected.safetensors (F32)  logits     [total_tokens, V]  all positions, sequences concatenated
                              grad.<HF parameter name>  for every stored parameter
                              gate_grad  [L, H]  dLoss/dxi at xi = 1 (per-head output gates)
  expected.json               {"loss", "prompt", "max_new", "greedy", "tokens", "scored", "sequences"}

Loss: labels aligned with input_ids, position t predicts labels[t+1], -100 not scored,
sum of CE over all scored positions of the batch / number of scored positions. Sequences are
run independently (no padding). Greedy: exactly max_new argmax tokens after the prompt (no
BOS added, no EOS stop; eos_token_id is chosen outside prompt+greedy so either reading agrees,
and every step's top-1/top-2 logit margin is >= MIN_MARGIN so float32 cannot flip it).

The reference is computed in float64 from the stored (rounded) weight values. Each case is
also checked against itself: finite differences of the loss, KV-cache decode vs recompute,
teacher-forced argmax vs greedy, and a file round trip.
"""

import copy
import json
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402
from torch_llama import CausalLM, Config, batch_loss, greedy, greedy_cached, param_shapes, rope_inv_freq  # noqa: E402

MAX_NEW = 8
MIN_MARGIN = 1e-3

# ---------------------------------------------------------------------------------- cases
# A case = BASE updated with its overrides. Add a case by appending one line to CASES.

BASE = {
    "arch": "LlamaForCausalLM",
    "vocab": 64,
    "hidden": 32,
    "inter": 64,
    "layers": 2,
    "heads": 4,
    "kv_heads": 4,
    "head_dim": None,  # written to config.json only when set
    "eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie": False,
    "attention_bias": False,  # Llama only
    "mlp_bias": False,  # Llama only
    "sliding_window": None,  # Mistral, Phi-3, Gemma 2 (and Qwen2's, ignored since use_sliding_window is false)
    "partial_rotary": None,  # Phi-3 partial_rotary_factor
    "qpas": None,  # Gemma 2 query_pre_attn_scalar
    "attn_softcap": None,  # Gemma 2 attn_logit_softcapping
    "final_softcap": None,  # Gemma 2 final_logit_softcapping
    "dtype": "float32",  # storage: float32 | bfloat16 | float16
    "shards": 1,
    "lengths": [5, 11, 24, 8],  # sequence lengths of batch.jsonl
}

LLAMA3_SCALING = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
    "rope_type": "llama3",
}


def case(name, doc, **over):
    c = copy.deepcopy(BASE)
    for k in over:
        assert k in BASE, k
    c.update(over)
    c["name"], c["doc"] = name, doc
    return c


CASES = [
    case("llama_mha", "multi-head attention (K = H = 4), untied"),
    case("llama_tied", "multi-head attention, lm_head tied to embed_tokens", tie=True),
    case("llama_gqa_k1", "grouped-query attention, one kv head (H=4, K=1)", kv_heads=1),
    case("llama_gqa_k2", "grouped-query attention H=6, K=2 (3 heads per group), tied",
         hidden=48, heads=6, kv_heads=2, inter=96, vocab=80, tie=True, lengths=[7, 19, 5]),
    case("qwen2_bias", "Qwen2: q/k/v biases, tied, sliding_window set but use_sliding_window false",
         arch="Qwen2ForCausalLM", kv_heads=2, vocab=72, tie=True, eps=1e-6, rope_theta=1000000.0,
         sliding_window=4),
    case("llama_attn_bias", "Llama attention_bias (q,k,v,o) and mlp_bias (gate,up,down)",
         kv_heads=2, attention_bias=True, mlp_bias=True),
    case("llama_head_dim", "explicit head_dim 16 != hidden/heads 12 (hidden 48, H=4, K=2)",
         hidden=48, heads=4, kv_heads=2, head_dim=16, inter=80, vocab=96),
    case("llama3_rope", "rope_scaling llama3 (factor 8, low 1, high 4, orig 32; theta 100: all three bands)",
         hidden=64, heads=4, kv_heads=2, inter=96, rope_theta=100.0, rope_scaling=LLAMA3_SCALING,
         lengths=[24, 6, 17]),
    case("llama_bf16", "weights stored as BF16 (computed from the rounded values)",
         kv_heads=2, tie=True, dtype="bfloat16"),
    case("llama_f16", "weights stored as F16 (computed from the rounded values)",
         kv_heads=2, dtype="float16"),
    case("llama_sharded", "3 shards + model.safetensors.index.json", kv_heads=2, shards=3),
    case("mistral_sliding", "Mistral sliding_window 4 with sequences up to 24",
         arch="MistralForCausalLM", kv_heads=2, eps=1e-6, sliding_window=4, lengths=[6, 24, 13, 9]),
    case("qwen3_qknorm", "Qwen3: per-head q/k RMSNorm before RoPE, head_dim 16 != hidden/heads 12, no biases",
         arch="Qwen3ForCausalLM", hidden=48, heads=4, kv_heads=2, head_dim=16, inter=64, eps=1e-6, lengths=[7, 15, 5]),
    case("qwen3_bias", "Qwen3 with attention_bias (q, k, v, o biases) and tied embeddings",
         arch="Qwen3ForCausalLM", kv_heads=1, head_dim=8, attention_bias=True, tie=True, lengths=[9, 6]),
    case("phi3_fused", "Phi-3: fused qkv_proj and gate_up_proj, partial_rotary_factor 0.75, sliding_window 5",
         arch="Phi3ForCausalLM", kv_heads=2, partial_rotary=0.75, sliding_window=5, lengths=[6, 17, 9]),
    case("gemma2", "Gemma 2: sqrt(D) embedding scale (bf16), (1+w) norms, post norms, GeGLU, query_pre_attn_scalar 24, "
         "soft-capping 2 / 3, sliding window 4 on layer 0 of 2, tied, head_dim 16",
         arch="Gemma2ForCausalLM", head_dim=16, kv_heads=2, tie=True, eps=1e-6, dtype="bfloat16", qpas=24,
         attn_softcap=2.0, final_softcap=3.0, sliding_window=4, lengths=[6, 14, 9]),
]

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
               "Qwen3ForCausalLM": "qwen3", "Phi3ForCausalLM": "phi3", "Gemma2ForCausalLM": "gemma2"}


def hf_config(c, bos, eos):
    """The config.json dict of a case."""
    cfg = {
        "architectures": [c["arch"]],
        "model_type": MODEL_TYPES[c["arch"]],
        "vocab_size": c["vocab"],
        "hidden_size": c["hidden"],
        "intermediate_size": c["inter"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"],
        "hidden_act": "silu",
        "rms_norm_eps": c["eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": c["rope_scaling"],
        "max_position_embeddings": 256,
        "tie_word_embeddings": c["tie"],
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": c["dtype"],
        "use_cache": True,
    }
    if c["head_dim"] is not None:
        cfg["head_dim"] = c["head_dim"]
    if c["arch"] == "LlamaForCausalLM":
        cfg["attention_bias"] = c["attention_bias"]
        cfg["mlp_bias"] = c["mlp_bias"]
        cfg["pretraining_tp"] = 1
    elif c["arch"] == "MistralForCausalLM":
        cfg["sliding_window"] = c["sliding_window"]
    elif c["arch"] == "Qwen2ForCausalLM":
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = c["sliding_window"]
        cfg["max_window_layers"] = c["layers"]
    elif c["arch"] == "Qwen3ForCausalLM":
        cfg["attention_bias"] = c["attention_bias"]
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
        cfg["max_window_layers"] = c["layers"]
    elif c["arch"] == "Phi3ForCausalLM":
        cfg["sliding_window"] = c["sliding_window"]
        cfg["original_max_position_embeddings"] = 256
        cfg["resid_pdrop"] = cfg["embd_pdrop"] = 0.0
        if c["partial_rotary"] is not None:
            cfg["partial_rotary_factor"] = c["partial_rotary"]
    elif c["arch"] == "Gemma2ForCausalLM":
        cfg["hidden_act"] = cfg["hidden_activation"] = "gelu_pytorch_tanh"
        cfg["attention_bias"] = c["attention_bias"]
        cfg["query_pre_attn_scalar"] = c["qpas"]
        cfg["attn_logit_softcapping"] = c["attn_softcap"]
        cfg["final_logit_softcapping"] = c["final_softcap"]
        cfg["sliding_window"] = c["sliding_window"]
    return cfg


# --------------------------------------------------------------------------- generation


def init_weights(cfg, gen):
    """Random float32 weights: linear std 1.2/sqrt(fan_in) (0.12-0.21 here), biases std 0.1,
    embeddings std 0.25, RMSNorm weights uniform in [0.8, 1.2] (Gemma's (1 + w): w in [-0.2, 0.2])."""
    out = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            t = (-1.0 if cfg.gemma else 0.0) + 0.8 + 0.4 * torch.rand(shape, generator=gen)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=gen)
        elif name == "model.embed_tokens.weight":
            t = 0.25 * torch.randn(shape, generator=gen)
        else:
            t = (1.2 / shape[1] ** 0.5) * torch.randn(shape, generator=gen)
        out[name] = t
    return out


def make_batch(lengths, vocab, gen):
    """Sequences of random ids; labels = ids except -100 on the first 1-4 positions (a prompt)
    and, in the second sequence, one position in the middle."""
    batch = []
    for n, T in enumerate(lengths):
        ids = torch.randint(0, vocab, (T,), generator=gen).tolist()
        labels = list(ids)
        prompt = 1 + int(torch.randint(0, min(4, T - 2), (1,), generator=gen))
        for t in range(prompt):
            labels[t] = -100
        if n == 1 and T > prompt + 3:
            labels[prompt + 2] = -100
        batch.append({"input_ids": ids, "labels": labels})
    return batch


def loss_of(model, batch, gates):
    return batch_loss(model, batch, gates)[0]


def check_finite_differences(cfg, params, batch, grads, gate_grad, gen):
    """Directional derivative check of the float64 gradients: for a random direction v,
    (L(theta + eps v) - L(theta - eps v)) / 2eps == <grad, v>; once over all parameters,
    once over the gates."""
    names = list(params)
    H = cfg.heads

    def loss_at(shift, gshift):
        p = {n: params[n].detach() + shift.get(n, 0) for n in names}
        gates = torch.ones(cfg.layers, H, dtype=torch.float64) + gshift
        with torch.no_grad():
            return float(loss_of(CausalLM(cfg, p), batch, gates))

    eps = 1e-6
    v = {n: torch.randn(params[n].shape, generator=gen, dtype=torch.float64) for n in names}
    zero_g = torch.zeros(cfg.layers, H, dtype=torch.float64)
    fd = (loss_at({n: eps * v[n] for n in names}, zero_g) - loss_at({n: -eps * v[n] for n in names}, zero_g)) / (2 * eps)
    an = sum(float((grads[n] * v[n]).sum()) for n in names)
    assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)), ("param finite differences", fd, an)

    vg = torch.randn(cfg.layers, H, generator=gen, dtype=torch.float64)
    fd = (loss_at({}, eps * vg) - loss_at({}, -eps * vg)) / (2 * eps)
    an = float((gate_grad * vg).sum())
    assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)), ("gate finite differences", fd, an)


def check_rope(c, cfg):
    """For the llama3 case, make sure all three wavelength bands occur (else the case is weak)."""
    if c["rope_scaling"] is None:
        return
    import math

    rs = c["rope_scaling"]
    base = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim))
    wl = 2 * math.pi / base
    orig = rs["original_max_position_embeddings"]
    low = wl > orig / rs["low_freq_factor"]
    high = wl < orig / rs["high_freq_factor"]
    assert low.any() and high.any() and (~low & ~high).any(), "llama3 case should exercise all bands"
    scaled = rope_inv_freq(cfg)
    assert torch.equal(scaled[high], base[high]) and torch.allclose(scaled[low], base[low] / rs["factor"])


def pick_prompt(model, vocab, gen, length=6, tries=50, avoid=None):
    """A prompt of `length` random ids whose greedy continuation (MAX_NEW ids) has no near-tie
    at any step and, if given, does not hold the id `avoid`. -> (prompt, continuation, margins)."""
    for _ in range(tries):
        prompt = torch.randint(0, vocab, (length,), generator=gen).tolist()
        out, margins = greedy(model, prompt, MAX_NEW)
        if min(margins) >= MIN_MARGIN and (avoid is None or avoid not in out):
            return prompt, out, margins
    raise RuntimeError("no prompt without a near-tie found")


def write_weights(folder, stored, shards):
    names = list(stored)
    if shards == 1:
        st.save(os.path.join(folder, "model.safetensors"), stored)
        return
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        part = {n: stored[n] for n in names[s * per : (s + 1) * per]}
        assert part, "too many shards for this model"
        st.save(os.path.join(folder, fname), part)
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def write_case(c, outdir):
    name = c["name"]
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))  # per-case seed: stable when cases are added
    folder = os.path.join(outdir, name)
    os.makedirs(folder, exist_ok=True)

    # Model config as the engine will read it (eos/bos filled in once greedy is known).
    cfg = Config.from_hf(hf_config(c, 0, 1))
    check_rope(c, cfg)

    # Weights: random float32, rounded to the storage dtype; the reference uses those values.
    sdt = TORCH_DTYPES[c["dtype"]]
    stored = {n: t.to(sdt) for n, t in init_weights(cfg, gen).items()}
    params = {n: t.to(torch.float64).requires_grad_(True) for n, t in stored.items()}
    gates = torch.ones(cfg.layers, cfg.heads, dtype=torch.float64, requires_grad=True)
    model = CausalLM(cfg, params)

    batch = make_batch(c["lengths"], cfg.vocab, gen)
    loss, logits = batch_loss(model, batch, gates)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in params.items()}
    gate_grad = gates.grad.detach().clone()
    scored = sum(sum(1 for l in ex["labels"][1:] if l != -100) for ex in batch)
    tokens = sum(len(ex["input_ids"]) for ex in batch)

    check_finite_differences(cfg, params, batch, grads, gate_grad, gen)

    # Greedy decode and its self-checks.
    with torch.no_grad():
        prompt, out, margins = pick_prompt(model, cfg.vocab, gen)
        assert greedy_cached(model, prompt, MAX_NEW) == out, "KV-cache decode differs from recompute"
        full = model.forward(torch.tensor([prompt + out]))[0]
        tf = torch.argmax(full[len(prompt) - 1 : -1], dim=-1).tolist()
        assert tf == out, "teacher-forced argmax differs from greedy"
        # Batched (B>1) forward equals per-sequence forward (used by the benchmark).
        a = model.forward(torch.tensor([batch[0]["input_ids"][:5], batch[1]["input_ids"][:5]]))
        assert torch.allclose(a[1], logits[1][:5], rtol=0, atol=1e-12)

    # Special tokens chosen outside the prompt and generated ids.
    used = set(prompt) | set(out)
    free = [i for i in range(cfg.vocab - 1, -1, -1) if i not in used]
    eos, bos = free[0], free[1]
    config = hf_config(c, bos, eos)
    assert Config.from_hf(config) == cfg

    # Files.
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    write_weights(folder, stored, c["shards"])
    with open(os.path.join(folder, "batch.jsonl"), "w") as f:
        for ex in batch:
            f.write(json.dumps(ex) + "\n")
    exp = {"logits": torch.cat([l.detach() for l in logits], dim=0).float()}
    for n in stored:
        exp["grad." + n] = grads[n].float()
    exp["gate_grad"] = gate_grad.float()
    st.save(os.path.join(folder, "expected.safetensors"), exp)
    meta = {
        "case": name,
        "doc": c["doc"],
        "loss": float(loss),
        "prompt": prompt,
        "max_new": MAX_NEW,
        "greedy": out,
        "greedy_min_margin": min(margins),
        "tokens": tokens,
        "scored": scored,
        "sequences": len(batch),
    }
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    # Round trip: what was written reads back to what the reference used.
    back = st.load_folder(folder)
    assert set(back) == set(stored)
    for n in stored:
        assert back[n].dtype == sdt and torch.equal(back[n], stored[n]), n
    e2 = st.load(os.path.join(folder, "expected.safetensors"))
    assert torch.equal(e2["logits"], exp["logits"])
    return meta


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # float64 reference: deterministic and small
    outdir = argv[1]
    wanted = set(argv[2:])
    chosen = [c for c in CASES if not wanted or c["name"] in wanted]
    unknown = wanted - {c["name"] for c in CASES}
    if unknown:
        print("make_cases.py: unknown case(s): %s" % ", ".join(sorted(unknown)), file=sys.stderr)
        return 2
    os.makedirs(outdir, exist_ok=True)
    for c in chosen:
        m = write_case(c, outdir)
        print("%-16s loss %.6f  tokens %3d  scored %3d  greedy %s" % (c["name"], m["loss"], m["tokens"], m["scored"], m["greedy"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

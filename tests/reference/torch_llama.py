"""Independent PyTorch reference of the Llama / Mistral / Qwen2 / Qwen3 / Phi-3 / Gemma 2 causal LMs.

Written from the math of Hugging Face transformers' LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM and Gemma2ForCausalLM (no code copied, no
transformers import). It is used
  - in float64 by make_cases.py to produce the expected values the C engine is checked against,
  - in float32 by bench/bench_torch.py as the throughput baseline.

Shapes: B batch, T time (new tokens), S keys (cache + new), D hidden, H heads, K kv heads,
d head_dim, I intermediate, V vocab, L layers.

Per layer l (pre-norm residual block):
    a   = RMSNorm(x; input_layernorm)
    q   = a Wq^T (+bq)  -> [B,T,H,d]      k = a Wk^T (+bk), v = a Wv^T (+bv) -> [B,T,K,d]
    q,k = RoPE(q), RoPE(k)        (rotate_half convention: dims i and i + d/2 form a pair)
    z_h = softmax(q_h k_g^T / sqrt(d) + causal/sliding mask) v_g,   g = h // (H/K)
    z_h = xi[l,h] * z_h           (per-head output gate, 1 by default; its gradient is the
                                   "gate" functional sensitivity of DESIGN.md section 3)
    x   = x + concat_h(z_h) Wo^T (+bo)
    m   = RMSNorm(x; post_attention_layernorm)
    x   = x + Wdown (silu(m Wgate^T (+bg)) * (m Wup^T (+bu))) (+bd)
logits = RMSNorm(x; norm) Wlm^T, Wlm = embed_tokens when tie_word_embeddings.
RMSNorm(x; w) = x / sqrt(mean(x^2) + eps) * w.

The other families change these steps:
  Qwen3    q_h, k_g = RMSNorm(q_h; q_norm), RMSNorm(k_g; k_norm) over each head's d dims, before
           RoPE; head_dim explicit (128 when absent); biases on q, k, v, o only with attention_bias.
  Phi-3    one qkv_proj [(H+2K)d, D] (q rows, then k rows, then v rows) and one gate_up_proj
           [2I, D] (gate rows, then up rows); RoPE on the first int(d * partial_rotary_factor)
           dims of each head (inv_freq over that many dims), the rest pass; sliding_window on
           every layer as Mistral.
  Gemma 2  x0 = embed * normalizer, normalizer = sqrt(D) as a tensor of the model dtype (bf16:
           sqrt(32) = 5.65625); RMSNorm weights act as (1 + w); the attention output and the MLP
           output are each RMSNorm'ed (post_attention_layernorm, post_feedforward_layernorm)
           before their residual add, pre_feedforward_layernorm before the MLP; MLP
           gelu_tanh(gate) * up; scores * query_pre_attn_scalar^-0.5 then
           c * tanh(s / c) (attn_logit_softcapping) before the mask; layer l slides
           (sliding_window) when l is even, unless layer_types says otherwise; final logits
           c * tanh(l / c) (final_logit_softcapping); tied embeddings by default.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
                 "Gemma2ForCausalLM")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Config:
    arch: str
    vocab: int
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    rope_theta: float
    rope_scaling: Optional[dict]  # None, or the llama3 dict (factor, low/high_freq_factor, original_max_position_embeddings)
    tie: bool
    qkv_bias: bool  # Qwen2 always; Llama when attention_bias
    o_bias: bool  # Llama when attention_bias
    mlp_bias: bool  # Llama when mlp_bias
    sliding_window: Optional[int]  # Mistral, Phi-3, Gemma 2; None = full causal attention
    full_layers: tuple = ()  # layers that ignore sliding_window (Gemma 2: the odd ones)
    qk_norm: bool = False  # Qwen3
    fused: bool = False  # Phi-3
    rope_dim: int = 0  # rotating dims per head; 0 = head_dim
    gemma: bool = False  # (1 + w) norms, post norms, GeGLU
    embed_scale: Optional[float] = None  # Gemma 2 normalizer, already rounded to the model dtype
    attn_scale: Optional[float] = None  # None = 1/sqrt(d)
    attn_softcap: Optional[float] = None
    final_softcap: Optional[float] = None

    @classmethod
    def from_hf(cls, c):
        """Interpret a Hugging Face config.json dict the way transformers does."""
        arch = c["architectures"][0]
        if arch not in ARCHITECTURES:
            raise ValueError("unsupported architecture %r" % arch)
        hidden, heads = c["hidden_size"], c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        head_dim = c.get("head_dim") or hidden // heads
        rs = c.get("rope_scaling")
        if rs is not None:
            kind = rs.get("rope_type", rs.get("type"))
            if kind == "default":
                rs = None
            elif kind != "llama3":
                raise ValueError("unsupported rope_scaling type %r" % kind)
        is_llama = arch == "LlamaForCausalLM"
        qwen3, phi3, gemma2 = arch == "Qwen3ForCausalLM", arch == "Phi3ForCausalLM", arch == "Gemma2ForCausalLM"
        if qwen3 or gemma2:
            head_dim = c.get("head_dim") or (128 if qwen3 else 256)
        attention_bias = bool(c.get("attention_bias", False)) if (is_llama or qwen3 or gemma2) else False
        window, extra = None, {}
        if arch in ("MistralForCausalLM", "Phi3ForCausalLM"):
            window = c.get("sliding_window")
        elif arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM") and c.get("use_sliding_window", False):
            # Qwen's per-layer sliding window (max_window_layers) is not modelled here.
            raise ValueError("Qwen use_sliding_window=true is not supported by the reference")
        if phi3:
            rot = int(head_dim * c.get("partial_rotary_factor", 1.0))
            extra = dict(fused=True, rope_dim=0 if rot == head_dim else rot)
        if qwen3:
            extra = dict(qk_norm=True)
        if gemma2:
            window = c.get("sliding_window", 4096)
            types = c.get("layer_types") or ["sliding_attention" if l % 2 == 0 else "full_attention"
                                             for l in range(c["num_hidden_layers"])]
            dt = DTYPES[c.get("torch_dtype", "float32")]
            extra = dict(
                gemma=True,
                full_layers=tuple(l for l, t in enumerate(types) if t == "full_attention"),
                embed_scale=float(torch.tensor(hidden ** 0.5, dtype=dt)),
                attn_scale=c.get("query_pre_attn_scalar", 256) ** -0.5,
                attn_softcap=c.get("attn_logit_softcapping", 50.0),
                final_softcap=c.get("final_logit_softcapping", 30.0),
            )
        return cls(
            arch=arch,
            vocab=c["vocab_size"],
            hidden=hidden,
            inter=c["intermediate_size"],
            layers=c["num_hidden_layers"],
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            eps=c.get("rms_norm_eps", 1e-5 if phi3 else 1e-6),
            rope_theta=c.get("rope_theta", 10000.0),
            rope_scaling=rs,
            tie=bool(c.get("tie_word_embeddings", gemma2)),
            qkv_bias=(arch == "Qwen2ForCausalLM") or attention_bias,
            o_bias=attention_bias,
            mlp_bias=bool(c.get("mlp_bias", False)) if is_llama else False,
            sliding_window=window,
            **extra,
        )

    def window(self, layer):
        """Sliding window of a layer, or None."""
        return None if layer in self.full_layers else self.sliding_window


def param_shapes(cfg):
    """Ordered {HF tensor name: shape} of every parameter (lm_head absent when tied)."""
    D, I, V, d = cfg.hidden, cfg.inter, cfg.vocab, cfg.head_dim
    Hd, Kd = cfg.heads * d, cfg.kv_heads * d
    s = {"model.embed_tokens.weight": [V, D]}
    for l in range(cfg.layers):
        p = "model.layers.%d." % l
        s[p + "input_layernorm.weight"] = [D]
        if cfg.fused:
            s[p + "self_attn.qkv_proj.weight"] = [Hd + 2 * Kd, D]
        else:
            s[p + "self_attn.q_proj.weight"] = [Hd, D]
            if cfg.qkv_bias:
                s[p + "self_attn.q_proj.bias"] = [Hd]
            s[p + "self_attn.k_proj.weight"] = [Kd, D]
            if cfg.qkv_bias:
                s[p + "self_attn.k_proj.bias"] = [Kd]
            s[p + "self_attn.v_proj.weight"] = [Kd, D]
            if cfg.qkv_bias:
                s[p + "self_attn.v_proj.bias"] = [Kd]
        s[p + "self_attn.o_proj.weight"] = [D, Hd]
        if cfg.o_bias:
            s[p + "self_attn.o_proj.bias"] = [D]
        if cfg.qk_norm:
            s[p + "self_attn.q_norm.weight"] = [d]
            s[p + "self_attn.k_norm.weight"] = [d]
        s[p + "post_attention_layernorm.weight"] = [D]
        if cfg.gemma:
            s[p + "pre_feedforward_layernorm.weight"] = [D]
            s[p + "post_feedforward_layernorm.weight"] = [D]
        mlp = (("gate_up_proj", [2 * I, D]), ("down_proj", [D, I])) if cfg.fused else \
            (("gate_proj", [I, D]), ("up_proj", [I, D]), ("down_proj", [D, I]))
        for name, shape in mlp:
            s[p + "mlp.%s.weight" % name] = shape
            if cfg.mlp_bias:
                s[p + "mlp.%s.bias" % name] = [shape[0]]
    s["model.norm.weight"] = [D]
    if not cfg.tie:
        s["lm_head.weight"] = [V, D]
    return s


# ----------------------------------------------------------------------------------- RoPE


def rope_inv_freq(cfg, dtype=torch.float64):
    """inv_freq[i] = theta^(-2i/d), i < d/2, then llama3 scaling when configured.

    llama3 (HF "_compute_llama3_parameters"), with wavelen = 2*pi / inv_freq,
    low_wl = orig / low_freq_factor, high_wl = orig / high_freq_factor:
        wavelen < high_wl            -> inv_freq unchanged (high frequencies)
        wavelen > low_wl             -> inv_freq / factor  (low frequencies)
        otherwise (medium)           -> (1 - s) * inv_freq / factor + s * inv_freq,
                                        s = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    The attention scale is unchanged (attention_factor 1).
    """
    d = cfg.rope_dim or cfg.head_dim  # Phi-3 partial rotary: the frequencies of the rotating dims only
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = cfg.rope_scaling
    if rs is not None:
        factor = float(rs["factor"])
        low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        orig = float(rs["original_max_position_embeddings"])
        low_wl, high_wl = orig / low, orig / high
        wavelen = 2 * math.pi / inv
        smooth = (orig / wavelen - low) / (high - low)
        medium = (1 - smooth) * inv / factor + smooth * inv
        inv = torch.where(wavelen > low_wl, inv / factor, torch.where(wavelen < high_wl, inv, medium))
    return inv.to(dtype)


def rope_cos_sin(cfg, positions, dtype):
    """cos, sin of shape [T, d] for absolute positions (a 1-D tensor): angle = pos * inv_freq,
    duplicated so that dims i and i + d/2 share a frequency."""
    ang = positions.to(torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]  # [T, d/2]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x [B, heads, T, d]; cos/sin [T, r], r <= d: the first r dims rotate, the rest pass."""
    r = cos.shape[-1]
    rot = x[..., :r] * cos + rotate_half(x[..., :r]) * sin
    return torch.cat([rot, x[..., r:]], dim=-1) if r < x.shape[-1] else rot


# ---------------------------------------------------------------------------------- model


class KVCache:
    """Preallocated per-layer keys/values [B, K, max_len, d]; positions [0, start+T) valid."""

    def __init__(self, cfg, batch, max_len, dtype):
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.layers)]
        self.v = [torch.zeros(shape, dtype=dtype) for _ in range(cfg.layers)]

    def update(self, layer, start, k, v):
        T = k.shape[2]
        self.k[layer][:, :, start : start + T] = k
        self.v[layer][:, :, start : start + T] = v
        return self.k[layer][:, :, : start + T], self.v[layer][:, :, : start + T]


def rms_norm(x, w, eps, plus_one=False):
    """RMSNorm over the last dim; Gemma's weights act as (1 + w)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * ((1 + w) if plus_one else w)


def softcap(x, c):
    return x if not c else c * torch.tanh(x / c)


def attention_mask(cfg, start, T, S, window=None):
    """Boolean [T, S], True where query (absolute position start+t) may attend key j:
    j <= i, and with a sliding window W also i - W < j."""
    i = torch.arange(start, start + T)[:, None]
    j = torch.arange(S)[None, :]
    ok = j <= i
    if window:
        ok = ok & (j > i - window)
    return ok


class CausalLM:
    """Functional model over a dict of named parameter tensors (HF names)."""

    def __init__(self, cfg, params):
        self.cfg = cfg
        self.p = params

    def lm_head(self):
        return self.p["model.embed_tokens.weight"] if self.cfg.tie else self.p["lm_head.weight"]

    def forward(self, ids, gates=None, cache=None, start=0, return_hidden=False):
        """ids [B, T] (LongTensor) at absolute positions start..start+T-1 -> logits [B, T, V].

        gates: optional [L, H] per-head output multipliers (None = all ones).
        cache: optional KVCache; keys/values of the new tokens are written at [start, start+T)
               and attention runs over [0, start+T). Without a cache, start must be 0.
        """
        cfg, p = self.cfg, self.p
        B, T = ids.shape
        H, K, d = cfg.heads, cfg.kv_heads, cfg.head_dim
        x = F.embedding(ids, p["model.embed_tokens.weight"])  # [B, T, D]
        if cfg.embed_scale is not None:
            x = x * cfg.embed_scale
        dtype = x.dtype
        cos, sin = rope_cos_sin(cfg, torch.arange(start, start + T), dtype)
        S = start + T
        g1 = cfg.gemma

        def norm(t, name):
            return rms_norm(t, p[name], cfg.eps, g1)

        for l in range(cfg.layers):
            pre = "model.layers.%d." % l
            mask = attention_mask(cfg, start, T, S, cfg.window(l))
            a = norm(x, pre + "input_layernorm.weight")
            if cfg.fused:  # qkv_proj rows: q [H*d], then k [K*d], then v [K*d]
                qkv = F.linear(a, p[pre + "self_attn.qkv_proj.weight"])
                q, k, v = qkv.split([H * d, K * d, K * d], dim=-1)
            else:
                q = F.linear(a, p[pre + "self_attn.q_proj.weight"], p.get(pre + "self_attn.q_proj.bias"))
                k = F.linear(a, p[pre + "self_attn.k_proj.weight"], p.get(pre + "self_attn.k_proj.bias"))
                v = F.linear(a, p[pre + "self_attn.v_proj.weight"], p.get(pre + "self_attn.v_proj.bias"))
            q, k = q.reshape(B, T, H, d), k.reshape(B, T, K, d)
            if cfg.qk_norm:  # per head, over its d dims
                q = rms_norm(q, p[pre + "self_attn.q_norm.weight"], cfg.eps)
                k = rms_norm(k, p[pre + "self_attn.k_norm.weight"], cfg.eps)
            q = q.transpose(1, 2)  # [B, H, T, d]
            k = k.transpose(1, 2)  # [B, K, T, d]
            v = v.reshape(B, T, K, d).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if cache is not None:
                k, v = cache.update(l, start, k, v)  # [B, K, S, d]
            else:
                assert start == 0
            if K != H:  # grouped-query attention: query head h reads kv head h // (H/K)
                k = k.repeat_interleave(H // K, dim=1)
                v = v.repeat_interleave(H // K, dim=1)
            scale = cfg.attn_scale if cfg.attn_scale is not None else 1 / math.sqrt(d)
            s = softcap(torch.matmul(q, k.transpose(-1, -2)) * scale, cfg.attn_softcap)  # [B, H, T, S]
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)  # s may be bf16 under autocast
            z = torch.matmul(torch.softmax(s, dim=-1), v)  # [B, H, T, d]
            if gates is not None:
                z = z * gates[l].view(1, H, 1, 1)
            z = z.transpose(1, 2).reshape(B, T, H * d)
            o = F.linear(z, p[pre + "self_attn.o_proj.weight"], p.get(pre + "self_attn.o_proj.bias"))
            if cfg.gemma:
                x = x + norm(o, pre + "post_attention_layernorm.weight")
                m = norm(x, pre + "pre_feedforward_layernorm.weight")
            else:
                x = x + o
                m = norm(x, pre + "post_attention_layernorm.weight")
            if cfg.fused:  # gate_up_proj rows: gate [I], then up [I]
                g, u = F.linear(m, p[pre + "mlp.gate_up_proj.weight"]).chunk(2, dim=-1)
            else:
                g = F.linear(m, p[pre + "mlp.gate_proj.weight"], p.get(pre + "mlp.gate_proj.bias"))
                u = F.linear(m, p[pre + "mlp.up_proj.weight"], p.get(pre + "mlp.up_proj.bias"))
            act = F.gelu(g, approximate="tanh") if cfg.gemma else F.silu(g)
            y = F.linear(act * u, p[pre + "mlp.down_proj.weight"], p.get(pre + "mlp.down_proj.bias"))
            x = x + (norm(y, pre + "post_feedforward_layernorm.weight") if cfg.gemma else y)
        h = norm(x, "model.norm.weight")
        if return_hidden:
            return h
        return softcap(F.linear(h, self.lm_head()), cfg.final_softcap)


def sequence_loss_terms(logits, labels):
    """Sum of cross-entropy and number of scored positions for one sequence.

    logits [T, V], labels [T] aligned with input_ids: position t predicts labels[t+1];
    labels == -100 are not scored."""
    tgt = labels[1:]
    keep = tgt != -100
    if not bool(keep.any()):
        return logits.sum() * 0, 0
    ce = F.cross_entropy(logits[:-1][keep], tgt[keep], reduction="sum")
    return ce, int(keep.sum())


def batch_loss(model, batch, gates=None):
    """Token-weighted mean CE over ALL scored positions of a batch of variable-length
    sequences (each run on its own: no padding, no interaction).

    batch: list of {"input_ids": [...], "labels": [...]}.
    Returns (loss, [logits [T_i, V] per sequence])."""
    total, count, all_logits = 0, 0, []
    for ex in batch:
        ids = torch.tensor(ex["input_ids"], dtype=torch.long)[None]
        logits = model.forward(ids, gates=gates)[0]
        ce, n = sequence_loss_terms(logits, torch.tensor(ex["labels"], dtype=torch.long))
        total, count = total + ce, count + n
        all_logits.append(logits)
    return total / max(count, 1), all_logits


@torch.no_grad()
def greedy(model, prompt, max_new):
    """Greedy decode by full recompute each step. Returns (new ids, top1-top2 margins).
    Generates exactly max_new tokens (no EOS stop)."""
    ids, out, margins = list(prompt), [], []
    for _ in range(max_new):
        logits = model.forward(torch.tensor([ids]))[0, -1]
        top = torch.topk(logits, 2).values
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        margins.append(float(top[0] - top[1]))
        ids.append(nxt)
    return out, margins


@torch.no_grad()
def greedy_cached(model, prompt, max_new):
    """Greedy decode with a KV cache (prefill the prompt, then one token per step)."""
    cache = KVCache(model.cfg, 1, len(prompt) + max_new, model.p["model.embed_tokens.weight"].dtype)
    logits = model.forward(torch.tensor([prompt]), cache=cache, start=0)[0, -1]
    out, pos = [], len(prompt)
    for _ in range(max_new):
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        logits = model.forward(torch.tensor([[nxt]]), cache=cache, start=pos)[0, -1]
        pos += 1
    return out

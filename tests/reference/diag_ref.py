"""Float64 PyTorch reference of `cast diagnose` (DESIGN.md section 3, "CAST, precisely").

Used by test_diagnose.py. Builds on torch_llama (the model, its per-head gates xi and the
token-weighted batch loss) and make_cases (config.json, random weights, weight files).

Per head (l, h), with H heads, K kv heads, head_dim d, group g = h // (H/K):
    vector = q_proj rows [h*d, (h+1)*d) (weight, and bias if any) + o_proj columns
             [h*d, (h+1)*d) (+ with kv_in_score: k_proj and v_proj rows [g*d, (g+1)*d), weight+bias)
    cos    = <g_s, g_u> / (|g_s| |g_u| + 1e-12);  undefined ("null") when either slice is all zero
    OC     neg = max(0, -cos), half = (1 - cos)/2, negdot = max(0, -<g_s, g_u>)
           (a head with an undefined cos gets OC 0 under neg and half: cast's convention; the
           literal formula would give cos = 0, so half = 0.5 -- see the report)
    FS     gate = |dL_u/dxi| at xi = 1; ablation = L_u(xi = 0) - L_u; snip = sum |theta| |G_u|
    score  min-max normalised OC~, FS~ (all equal -> 0): product OC~ FS~, sum (OC~ + FS~)/2,
           rank = mean of the percentile ranks (ascending, ties share their mean rank, / (n-1));
           0 where cos >= 0 or cos is undefined
    rank   0 = highest score, ties in layer-major order
    concentration = top k scores / total, k = max(1, round(0.05 n)) (0 when the total is 0)
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import CausalLM, batch_loss  # noqa: E402

OC_KINDS = ("neg", "half", "negdot")
FS_KINDS = ("gate", "ablation", "snip")
COMBINE_KINDS = ("product", "rank", "sum")


def scored_count(batch):
    return sum(sum(1 for x in ex["labels"][1:] if x != -100) for ex in batch)


def head_slices(cfg, params, l, h, kv_in_score):
    """[(tensor name, index)] of the parameter entries head (l, h) owns (see module doc)."""
    d, H, K = cfg.head_dim, cfg.heads, cfg.kv_heads
    g = h // (H // K)
    p = "model.layers.%d.self_attn." % l
    rows, grows = slice(h * d, (h + 1) * d), slice(g * d, (g + 1) * d)
    out = [(p + "q_proj.weight", (rows, slice(None)))]
    if p + "q_proj.bias" in params:
        out.append((p + "q_proj.bias", (rows,)))
    out.append((p + "o_proj.weight", (slice(None), rows)))
    if kv_in_score:
        for t in ("k_proj", "v_proj"):
            out.append((p + t + ".weight", (grows, slice(None))))
            if p + t + ".bias" in params:
                out.append((p + t + ".bias", (grows,)))
    return out


def head_vector(tensors, slices):
    return torch.cat([tensors[n][idx].reshape(-1) for n, idx in slices])


def set_gradient(cfg, params, batch, with_gates):
    """Token-weighted mean NLL over the whole set, its gradient w.r.t. every parameter and,
    when asked, w.r.t. the gates at xi = 1."""
    p = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
    gates = torch.ones(cfg.layers, cfg.heads, dtype=torch.float64, requires_grad=with_gates)
    loss, _ = batch_loss(CausalLM(cfg, p), batch, gates)
    loss.backward()
    grads = {n: t.grad.detach() if t.grad is not None else torch.zeros_like(t) for n, t in p.items()}
    return float(loss), grads, (gates.grad.detach() if with_gates else None)


def percentile_ranks(v):
    n = len(v)
    order = sorted(range(n), key=lambda i: (v[i], i))
    out = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = 0.5 * (i + j) / (n - 1) if n > 1 else 0.0
        for k in range(i, j + 1):
            out[order[k]] = r
        i = j + 1
    return out


def min_max(v):
    lo, hi = min(v), max(v)
    return [(x - lo) / (hi - lo) if hi > lo else 0.0 for x in v]


def top_count(n):
    return max(1, int(math.floor(0.05 * n + 0.5)))


def combine(cos, oc, fs, how):
    """cos: list of float or None (undefined). Returns (scores, ranks, concentration)."""
    n = len(oc)
    if how == "rank":
        ro, rf = percentile_ranks(oc), percentile_ranks(fs)
        score = [0.5 * (a + b) for a, b in zip(ro, rf)]
    else:
        no, nf = min_max(oc), min_max(fs)
        score = [a * b if how == "product" else 0.5 * (a + b) for a, b in zip(no, nf)]
    score = [0.0 if (c is None or c >= 0) else s for c, s in zip(cos, score)]
    order = sorted(range(n), key=lambda i: (-score[i], i))
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r
    total = sum(score)
    top = sum(score[i] for i in order[: top_count(n)])
    return score, rank, (top / total if total > 0 else 0.0)


class Reference:
    """The reference conflict map of one model and one pair of sets; the set gradients, the
    gate gradients and the ablated losses are computed once and shared by every setting."""

    def __init__(self, cfg, params, safety, utility):
        self.cfg, self.params, self.safety, self.utility = cfg, params, safety, utility
        self.ls, self.gs, _ = set_gradient(cfg, params, safety, False)
        self.lu, self.gu, self.gate_grad = set_gradient(cfg, params, utility, True)
        self._ablated = None

    def ablated(self):
        """[L, H]: L_u with head (l, h)'s output zeroed (xi_{l,h} = 0)."""
        if self._ablated is None:
            cfg = self.cfg
            out = torch.zeros(cfg.layers, cfg.heads, dtype=torch.float64)
            model = CausalLM(cfg, self.params)
            with torch.no_grad():
                for l in range(cfg.layers):
                    for h in range(cfg.heads):
                        gates = torch.ones(cfg.layers, cfg.heads, dtype=torch.float64)
                        gates[l, h] = 0
                        out[l, h] = batch_loss(model, self.utility, gates)[0]
            self._ablated = out
        return self._ablated

    def conflict_map(self, oc="neg", fs="gate", kv_in_score=1, how="product"):
        """{"safety": {examples, tokens, loss}, "utility": {...}, "heads": [per head: layer,
        head, cos (None = undefined), dot, norm_safety, norm_utility, oc, fs, score, rank],
        "concentration"}."""
        assert oc in OC_KINDS and fs in FS_KINDS and how in COMBINE_KINDS
        cfg, heads = self.cfg, []
        for l in range(cfg.layers):
            for h in range(cfg.heads):
                sl = head_slices(cfg, self.params, l, h, kv_in_score)
                a, b = head_vector(self.gs, sl), head_vector(self.gu, sl)
                dot, ns, nu = float(a @ b), float(a.norm()), float(b.norm())
                defined = ns > 0 and nu > 0
                cos = dot / (ns * nu + 1e-12) if defined else None
                if oc == "neg":
                    o = max(0.0, -cos) if defined else 0.0
                elif oc == "half":
                    o = (1 - cos) / 2 if defined else 0.0
                else:
                    o = max(0.0, -dot)
                if fs == "gate":
                    f = abs(float(self.gate_grad[l, h]))
                elif fs == "snip":
                    f = float((head_vector(self.params, sl).abs() * b.abs()).sum())
                else:
                    f = float(self.ablated()[l, h]) - self.lu
                heads.append({"layer": l, "head": h, "cos": cos, "dot": dot, "norm_safety": ns,
                              "norm_utility": nu, "oc": o, "fs": f})
        score, rank, conc = combine([x["cos"] for x in heads], [x["oc"] for x in heads],
                                    [x["fs"] for x in heads], how)
        for x, s, r in zip(heads, score, rank):
            x["score"], x["rank"] = s, r
        return {
            "safety": {"examples": len(self.safety), "tokens": scored_count(self.safety), "loss": self.ls},
            "utility": {"examples": len(self.utility), "tokens": scored_count(self.utility), "loss": self.lu},
            "heads": heads,
            "concentration": conc,
        }

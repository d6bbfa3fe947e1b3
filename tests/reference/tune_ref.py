"""Float64 / bit-level reference of `cast tune` (DESIGN.md section 3, "Sparse tuning").

Used by test_tune.py. Builds on torch_llama (the model), diag_ref (set gradients) and
make_cases (configs, weights).

Head unit: H query heads, K kv heads, head_dim d, group g(h) = h // (H/K). A skipped head
(l, h) freezes q_proj rows [h d, (h+1) d) (+ q bias), o_proj columns [h d, (h+1) d); the k/v
rows [g d, (g+1) d) (+ biases) of its group freeze when every head of the group is skipped
(kv-freeze all) or at least one is (any). Scope: attn = every self_attn.* tensor, attn+mlp
adds every mlp.* tensor, all = every stored tensor. Everything outside the scope is frozen.

Selection (k heads, layer-major index i = l H + h, ties by index):
    cast / oc / fs   the k largest score / oc / fs
    inverse          heads with a defined cos < 0 first, lowest score first; then the rest,
                     lowest score first
PCGrad (one step, whole sets): d = <g_s, g_u>; if d < 0:
    g = g_s - d/|g_u|^2 g_u + w (g_u - d/|g_s|^2 g_s), else g = g_s + w g_u
First AdamW step (m^ = g, v^ = g^2): delta = -lr g / (|g| + eps).
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_ref as dr  # noqa: E402
from torch_llama import CausalLM  # noqa: E402

SCOPES = ("attn", "attn+mlp", "all")


def in_scope(name, scope):
    if scope == "all":
        return True
    if ".self_attn." in name:
        return True
    return scope == "attn+mlp" and ".mlp." in name


def top_count(ratio, n):
    """k = round(ratio n), half away from zero (ratio >= 0 here)."""
    return min(n, int(ratio * n + 0.5))


def select(heads, strategy, k):
    """heads: the conflict map's "heads" list (layer-major). -> sorted list of layer-major indices."""
    n = len(heads)
    if strategy in ("cast", "oc", "fs"):
        key = {"cast": "score", "oc": "oc", "fs": "fs"}[strategy]
        order = sorted(range(n), key=lambda i: (-heads[i][key], i))
    elif strategy == "inverse":
        def conflicting(i):
            c = heads[i].get("cos")
            return c is not None and c < 0
        order = sorted(range(n), key=lambda i: (0 if conflicting(i) else 1, heads[i]["score"], i))
    else:
        raise ValueError(strategy)
    return sorted(order[:k])


def frozen_masks(cfg, shapes, scope, skipped, kv_rule):
    """{name: bool tensor of the shape, True = frozen} for every stored tensor.
    skipped: iterable of (layer, head); kv_rule: "all" | "any"."""
    H, K, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    per_group = H // K
    out = {n: torch.zeros(s, dtype=torch.bool) if in_scope(n, scope) else torch.ones(s, dtype=torch.bool)
           for n, s in shapes.items()}
    skip = set(skipped)
    for l in range(cfg.layers):
        p = "model.layers.%d.self_attn." % l
        for h in range(H):
            if (l, h) not in skip:
                continue
            rows = slice(h * d, (h + 1) * d)
            out[p + "q_proj.weight"][rows] = True
            if p + "q_proj.bias" in out:
                out[p + "q_proj.bias"][rows] = True
            out[p + "o_proj.weight"][:, rows] = True
        for g in range(K):
            n_skipped = sum((l, h) in skip for h in range(g * per_group, (g + 1) * per_group))
            if (n_skipped == per_group) if kv_rule == "all" else (n_skipped > 0):
                rows = slice(g * d, (g + 1) * d)
                for t in ("k_proj", "v_proj"):
                    out[p + t + ".weight"][rows] = True
                    if p + t + ".bias" in out:
                        out[p + t + ".bias"][rows] = True
    return out


def units(cfg, name, shape):
    """The slices whose 'most elements changed' is checked one by one: per head block of
    q rows / o columns, per group block of k/v rows, else the whole tensor."""
    d = cfg.head_dim
    if ".self_attn." in name and len(shape) >= 1:
        kind = name.split(".self_attn.")[1].split(".")[0]
        if kind in ("q_proj", "k_proj", "v_proj"):
            return [("%s rows %d:%d" % (kind, r, r + d), (slice(r, r + d),)) for r in range(0, shape[0], d)]
        if kind == "o_proj" and len(shape) == 2:
            return [("o_proj cols %d:%d" % (c, c + d), (slice(None), slice(c, c + d))) for c in range(0, shape[1], d)]
    return [("whole", (slice(None),))]


def bits(t):
    """An integer view of a float tensor (bit-exact comparisons)."""
    return t.view({torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}[t.dtype])


# --------------------------------------------------------------------------------- PCGrad


def set_grads(cfg, params, batch, names):
    loss, g, _ = dr.set_gradient(cfg, params, batch, False)
    return loss, {n: g[n] for n in names}


def dot(a, b):
    return sum(float((a[n] * b[n]).sum()) for n in a)


def combined_gradient(gs, gu, w, pcgrad):
    """(g, projected) per the module doc; pcgrad False: g = g_s + w g_u."""
    d = dot(gs, gu)
    if pcgrad and d < 0:
        ns, nu = dot(gs, gs), dot(gu, gu)
        return {n: gs[n] - d / nu * gu[n] + w * (gu[n] - d / ns * gs[n]) for n in gs}, True
    return {n: gs[n] + w * gu[n] for n in gs}, False


def first_adam_delta(g, lr, eps):
    return {n: -lr * g[n] / (g[n].abs() + eps) for n in g}


def steered_labels(cfg, params, direction, batch, oppose):
    """A set with batch's input ids (and scored positions) whose labels make its gradient
    oppose (oppose=True) or follow `direction` (a {name: tensor} over some parameters).

    Position t's CE gradient is J_t^T (p_t - e_y), so <direction, grad> = <J_t dir, p_t> -
    (J_t dir)_y: choosing y = argmax of the directional derivative of the logits makes every
    term <= 0; argmin makes it >= 0."""
    eps = 1e-5
    moved = {n: params[n] + eps * direction[n] if n in direction else params[n] for n in params}
    out = []
    with torch.no_grad():
        for ex in batch:
            ids = torch.tensor([ex["input_ids"]])
            dl = (CausalLM(cfg, moved).forward(ids)[0] - CausalLM(cfg, params).forward(ids)[0]) / eps
            pick = dl.argmax(-1) if oppose else dl.argmin(-1)
            labels = [-100] + [int(pick[t - 1]) if ex["labels"][t] != -100 else -100 for t in range(1, len(ex["labels"]))]
            out.append({"input_ids": list(ex["input_ids"]), "labels": labels})
    return out

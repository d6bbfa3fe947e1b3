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

Variants (docs/cast.md):
    fs gate-abs   sum over examples x of |dL_u(x)/dxi| * n_x / N  (L_u(x): x's token-mean NLL,
                  n_x its scored tokens, N the set's): the token-weighted mean of per-example |.|
    oc trajectory rise_u = L_u(theta0 + Delta_u) - L_u(theta0), Delta = theta_N - theta0 after N AdamW
                  steps (cast's AdamW, global-norm clip 1) on the safety set, every attention tensor
                  trainable; OC = max(0, rise); a unit conflicts when rise > 0
    unit group    a k/v group's heads together: slices = all its heads' q rows and o columns (+ its
                  k/v rows once); gate = |sum of its heads' dL/dxi|, ablation zeroes all its gates;
                  every head carries its group's numbers; ranks: groups by score (ties in
                  layer-major order), a group's heads consecutive; concentration over groups
    null          R shuffles of FS across units (xoshiro256** seeded with the seed, each a
                  Fisher-Yates shuffle of the previous permutation), OC and conflict flags fixed;
                  null_mean = mean top share, p = (1 + #{null >= observed}) / (1 + R)
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import CausalLM, batch_loss  # noqa: E402

OC_KINDS = ("neg", "half", "negdot", "trajectory")
FS_KINDS = ("gate", "ablation", "snip", "gate-abs")
COMBINE_KINDS = ("product", "rank", "sum")


def scored_count(batch):
    return sum(sum(1 for x in ex["labels"][1:] if x != -100) for ex in batch)


def head_slices(cfg, params, l, h, kv_in_score):
    """[(tensor name, index)] of the parameter entries head (l, h) owns (see module doc)."""
    d, H, K = cfg.head_dim, cfg.heads, cfg.kv_heads
    g = h // (H // K)
    p = "model.layers.%d.self_attn." % l
    rows, grows = slice(h * d, (h + 1) * d), slice(g * d, (g + 1) * d)
    if p + "qkv_proj.weight" in params:  # Phi-3: q rows, then k rows, then v rows of one tensor
        out = [(p + "qkv_proj.weight", (rows, slice(None))), (p + "o_proj.weight", (slice(None), rows))]
        if kv_in_score:
            for off in (H * d, H * d + K * d):
                out.append((p + "qkv_proj.weight", (slice(off + g * d, off + (g + 1) * d), slice(None))))
        return out
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


def combine_units(conflict, oc, fs, how):
    """Unit scores (0 where a unit does not conflict), units by score (highest first, ties in
    index order) and the top-5% share."""
    n = len(oc)
    if how == "rank":
        ro, rf = percentile_ranks(oc), percentile_ranks(fs)
        score = [0.5 * (a + b) for a, b in zip(ro, rf)]
    else:
        no, nf = min_max(oc), min_max(fs)
        score = [a * b if how == "product" else 0.5 * (a + b) for a, b in zip(no, nf)]
    score = [s if c else 0.0 for c, s in zip(conflict, score)]
    order = sorted(range(n), key=lambda i: (-score[i], i))
    total = sum(score)
    top = sum(score[i] for i in order[: top_count(n)])
    return score, order, (top / total if total > 0 else 0.0)


def combine(cos, oc, fs, how):
    """cos: list of float or None (undefined). Returns (scores, ranks, concentration)."""
    score, order, conc = combine_units([c is not None and c < 0 for c in cos], oc, fs, how)
    rank = [0] * len(oc)
    for r, i in enumerate(order):
        rank[i] = r
    return score, rank, conc


M64 = (1 << 64) - 1


class Rng:
    """cast's base/rng.c: xoshiro256** seeded through splitmix64."""

    def __init__(self, seed):
        x, self.s = seed & M64, []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    def u64(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & M64  # noqa: E731
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        if n <= 1:
            return 0
        limit = M64 - M64 % n
        while True:
            x = self.u64()
            if x < limit:
                return x % n

    def shuffle(self, v):
        for i in range(len(v) - 1, 0, -1):
            j = self.below(i + 1)
            v[i], v[j] = v[j], v[i]


def concentration_null(conflict, oc, fs, how, observed, permutations, seed):
    """-> (null mean, p, [null concentrations]): FS shuffled across units, OC and conflict kept."""
    rng, perm, null = Rng(seed), list(range(len(fs))), []
    for _ in range(permutations):
        rng.shuffle(perm)
        null.append(combine_units(conflict, oc, [fs[j] for j in perm], how)[2])
    return sum(null) / permutations, (1 + sum(1 for c in null if c >= observed)) / (1 + permutations), null


def attention_names(cfg, params):
    return [n for n in params if ".self_attn." in n]


def unit_slices(cfg, params, l, h0, count, kv_in_score):
    """The slices of the unit of heads [h0, h0 + count) of layer l: every head's q rows and o
    columns, the group's k/v rows once (with kv_in_score)."""
    if count == 1:
        return head_slices(cfg, params, l, h0, kv_in_score)
    out = []
    for h in range(h0, h0 + count):
        out += head_slices(cfg, params, l, h, 0)
    if kv_in_score:
        out += [x for x in head_slices(cfg, params, l, h0, 1) if "k_proj" in x[0] or "v_proj" in x[0]]
    return out


class Reference:
    """The reference conflict map of one model and one pair of sets; the set gradients, the
    gate gradients and the ablated losses are computed once and shared by every setting."""

    def __init__(self, cfg, params, safety, utility):
        self.cfg, self.params, self.safety, self.utility = cfg, params, safety, utility
        self.ls, self.gs, _ = set_gradient(cfg, params, safety, False)
        self.lu, self.gu, self.gate_grad = set_gradient(cfg, params, utility, True)
        self._ablated, self._example_gates, self._probe = {}, None, {}

    def ablated(self, heads):
        """L_u with the outputs of heads [(l, h), ...] zeroed (xi = 0)."""
        key = tuple(heads)
        if key not in self._ablated:
            cfg = self.cfg
            gates = torch.ones(cfg.layers, cfg.heads, dtype=torch.float64)
            for l, h in heads:
                gates[l, h] = 0
            with torch.no_grad():
                self._ablated[key] = float(batch_loss(CausalLM(cfg, self.params), self.utility, gates)[0])
        return self._ablated[key]

    def example_gates(self):
        """[examples, L, H]: d(sum of x's token CE / N)/dxi per example x (N: the set's scored
        tokens) = (n_x / N) dL_u(x)/dxi."""
        if self._example_gates is None:
            cfg, N, out = self.cfg, scored_count(self.utility), []
            model = CausalLM(cfg, self.params)
            for ex in self.utility:
                gates = torch.ones(cfg.layers, cfg.heads, dtype=torch.float64, requires_grad=True)
                loss, _ = batch_loss(model, [ex], gates)
                (loss * scored_count([ex]) / N).backward()
                out.append(gates.grad.detach())
            self._example_gates = torch.stack(out)
        return self._example_gates

    def probe(self, steps, lr, batch):
        """theta_N: `steps` AdamW steps of cast's optimizer (beta 0.9/0.999, eps 1e-8, no decay,
        global-norm clip 1) on the safety set, every attention tensor trainable. batch must
        cover the set (each step then uses it whole, whatever the data order)."""
        assert batch >= len(self.safety)
        key = (steps, lr)
        if key not in self._probe:
            names = attention_names(self.cfg, self.params)
            p = {n: t.clone() for n, t in self.params.items()}
            m = {n: torch.zeros_like(p[n]) for n in names}
            v = {n: torch.zeros_like(p[n]) for n in names}
            b1, b2, eps = 0.9, 0.999, 1e-8
            for t in range(1, steps + 1):
                g = set_gradient(self.cfg, p, self.safety, False)[1]
                norm = math.sqrt(sum(float((g[n] ** 2).sum()) for n in names))
                scale = 1.0 / norm if norm > 1.0 else 1.0
                c1, c2 = 1 - b1 ** t, 1 - b2 ** t
                for n in names:
                    gn = g[n] * scale
                    m[n] = b1 * m[n] + (1 - b1) * gn
                    v[n] = b2 * v[n] + (1 - b2) * gn * gn
                    p[n] = p[n] - (lr / c1) * m[n] / (torch.sqrt(v[n] / c2) + eps)
            self._probe[key] = p
        return self._probe[key]

    def rise(self, theta_n, sl):
        """L_u(theta0 with the slices sl taken from theta_n) - L_u(theta0)."""
        p = dict(self.params)
        for name, idx in sl:
            t = p[name].clone() if p[name] is self.params[name] else p[name]
            t[idx] = theta_n[name][idx]
            p[name] = t
        with torch.no_grad():
            return float(batch_loss(CausalLM(self.cfg, p), self.utility)[0]) - self.lu

    def conflict_map(self, oc="neg", fs="gate", kv_in_score=1, how="product", unit="head", probe=(8, 2e-5, 16),
                     null=None):
        """{"safety": {examples, tokens, loss}, "utility": {...}, "heads": [per head: layer,
        head, cos (None = undefined), dot, norm_safety, norm_utility, rise, oc, fs, score, rank],
        "concentration", "null_mean", "null_p"}; probe = (steps, lr, batch) for trajectory;
        null = (permutations, seed) or None."""
        assert oc in OC_KINDS and fs in FS_KINDS and how in COMBINE_KINDS and unit in ("head", "group")
        cfg = self.cfg
        G = cfg.heads // cfg.kv_heads if unit == "group" else 1
        theta_n = self.probe(*probe) if oc == "trajectory" else None
        units = []
        for l in range(cfg.layers):
            for h0 in range(0, cfg.heads, G):
                heads = [(l, h) for h in range(h0, h0 + G)]
                sl = unit_slices(cfg, self.params, l, h0, G, kv_in_score)
                a, b = head_vector(self.gs, sl), head_vector(self.gu, sl)
                dot, ns, nu = float(a @ b), float(a.norm()), float(b.norm())
                defined = ns > 0 and nu > 0
                cos = dot / (ns * nu + 1e-12) if defined else None
                rise = 0.0
                if oc == "neg":
                    o = max(0.0, -cos) if defined else 0.0
                elif oc == "half":
                    o = (1 - cos) / 2 if defined else 0.0
                elif oc == "negdot":
                    o = max(0.0, -dot)
                else:
                    rise = self.rise(theta_n, sl)
                    o = max(0.0, rise)
                if fs == "gate":
                    f = abs(float(sum(self.gate_grad[x] for x in heads)))
                elif fs == "gate-abs":
                    eg = self.example_gates()
                    f = float(sum(abs(float(sum(eg[i][x] for x in heads))) for i in range(eg.shape[0])))
                elif fs == "snip":
                    f = float((head_vector(self.params, sl).abs() * b.abs()).sum())
                else:
                    f = self.ablated(heads) - self.lu
                conflict = o > 0 if oc == "trajectory" else (defined and cos < 0)
                units.append({"cos": cos, "dot": dot, "norm_safety": ns, "norm_utility": nu, "rise": rise,
                              "oc": o, "fs": f, "conflict": conflict})
        score, order, conc = combine_units([u["conflict"] for u in units], [u["oc"] for u in units],
                                           [u["fs"] for u in units], how)
        rank = [0] * len(units)
        for r, i in enumerate(order):
            rank[i] = r
        heads = []
        for i, u in enumerate(units):
            l, h0 = i * G // cfg.heads, i * G % cfg.heads
            for j in range(G):
                x = {k: u[k] for k in ("cos", "dot", "norm_safety", "norm_utility", "rise", "oc", "fs")}
                x.update(layer=l, head=h0 + j, score=score[i], rank=rank[i] * G + j)
                heads.append(x)
        out = {
            "safety": {"examples": len(self.safety), "tokens": scored_count(self.safety), "loss": self.ls},
            "utility": {"examples": len(self.utility), "tokens": scored_count(self.utility), "loss": self.lu},
            "heads": heads,
            "concentration": conc,
            "conflict": [u["conflict"] for u in units],
        }
        if null:
            out["null_mean"], out["null_p"], _ = concentration_null(
                out["conflict"], [u["oc"] for u in units], [u["fs"] for u in units], how, conc, *null)
        return out

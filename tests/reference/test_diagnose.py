#!/usr/bin/python3
"""Reference test of `cast diagnose` (the conflict map, DESIGN.md section 3) against float64 PyTorch.

Environment (set by ctest): CAST (the cast binary), CAST_TEST_TMP (scratch folder, created),
CAST_SOURCE_DIR (unused).

1. Tiny random models (make_cases' llama_mha, llama_gqa_k2 (H=6, K=2, tied), qwen2_bias (q/k/v
   biases)), stored f32, 2 layers; a "safety" and a different "utility" pre-tokenized JSONL set
   each (7 and 8 sequences of 8-20 tokens, prompt labels -100). `cast diagnose` runs with
   --batch 3 (micro-batch accumulation) for settings covering every fs, kv-in-score, oc and
   combine value on every model; conflict_map.json/.csv are compared with diag_ref.Reference
   (float64): keys and order, model/data/settings blocks, per-head cos, norms, oc, fs, score,
   rank, concentration; the CSV holds the same numbers; score/rank/concentration are also
   recomputed from the file's own cos/oc/fs (exact up to rounding). Convention pinned here: a
   head whose slice is all zero has cos null and OC 0 under neg and half (the literal formula
   would give cos 0, half 0.5).
2. Known by construction:
   - a head whose q rows, v rows and o columns are zero (MHA, so z_h = 0): both its gradient
     slices are exactly 0 -> "cos": null (strict JSON, no NaN), norms 0, fs 0, score 0;
   - a head whose o columns are zero (GQA): no gradient reaches its q rows and its output has
     no effect -> fs 0 exactly for gate, ablation and snip (kv-in-score 0);
   - safety set == utility set: cos = 1 everywhere, every score 0, concentration 0, ranks in
     layer-major order;
   - --batch 1 and --batch 64 (> set size) match the reference too (Qwen2 model).
3. Errors (exit 1, one stderr line "cast: ..." naming the offending file or option, no
   conflict_map.* in the --out folder): empty safety file, utility set without scored tokens,
   token id >= vocab_size, label >= vocab_size, --fs nonsense, missing --utility file, no
   --utility at all.
4. Negative controls: the per-head comparison rejects a map checked against wrong references
   (micro-batch-mean instead of token-weighted gradients, the other kv-in-score, another fs,
   the wrong k/v group of a GQA head).

Prints one line per check and ends with "N passed, N failed"; exit 1 on any failure.
"""

import json
import math
import os
import shutil
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
import diag_ref as dr  # noqa: E402
from cast_test import Checks, case_dict, run_cast  # noqa: E402

BATCH = 3

# tolerances (float32 engine vs float64 reference)
TOL_COS = 1e-4  # absolute, also oc neg/half
TOL_REL = 1e-3  # norms, fs, oc negdot: |x - ref| <= TOL_REL * max(|ref|, FLOOR * max_heads |ref|)
FLOOR = 0.01
TOL_SCORE = 1e-3  # absolute
TOL_CONC = 1e-3
TOL_LOSS = 1e-5  # relative
TOL_SELF = 1e-9  # recomputing score/rank/concentration from the file's own numbers
TOL_RISE = 2e-3  # trajectory rise and OC: |x - ref| <= TOL_RISE * max_heads |ref rise| (float32 AdamW vs float64)

HEAD_KEYS = ["layer", "head", "cos", "norm_safety", "norm_utility", "oc", "fs", "score", "rank"]
TRAJECTORY_HEAD_KEYS = ["layer", "head", "cos", "norm_safety", "norm_utility", "rise", "oc", "fs", "score", "rank"]
TOP_KEYS = {"model", "data", "settings", "heads", "concentration_top5pct", "concentration_null_mean", "concentration_null_p"}
MODEL_KEYS = {"path", "architecture", "layers", "heads", "kv_heads", "head_dim"}
SET_KEYS = {"path", "examples", "skipped", "tokens", "loss"}
SETTINGS_KEYS = {"kv_in_score", "oc", "fs", "combine", "unit", "null_permutations", "seed"}
PROBE_KEYS = {"probe_steps", "probe_batch", "probe_lr"}
NULL_R = 200  # permutations of the concentration null in these runs (the default is 1000)

# (fs, kv_in_score, oc, combine): every value of every knob on every model, not the full product
COMBOS = [
    ("gate", 1, "neg", "product"),
    ("ablation", 0, "half", "rank"),
    ("snip", 1, "negdot", "sum"),
    ("snip", 0, "neg", "rank"),
    ("gate", 0, "half", "sum"),
    ("ablation", 1, "negdot", "product"),
]
MODELS = ["llama_mha", "llama_gqa_k2", "qwen2_bias"]


# ------------------------------------------------------------------------------ fixtures


def variant_args(unit, probe):
    """The flags of a map variant: --unit, and the probe's for --oc trajectory."""
    args = ["--unit", unit, "--null-permutations", str(NULL_R)]
    if probe:
        args += ["--probe-steps", str(probe[0]), "--probe-lr", repr(probe[1]), "--probe-batch", str(probe[2])]
    return args


def diagnose(model, s_path, u_path, out, fs, kv, oc, how, batch=BATCH, unit="head", probe=None):
    """Runs cast diagnose; -> (map dict, csv text, None) or (None, None, error string)."""
    shutil.rmtree(out, ignore_errors=True)
    code, so, se = run_cast(["diagnose", model, "--safety", s_path, "--utility", u_path, "--out", out,
                             "--batch", str(batch), "--fs", fs, "--kv-in-score", str(kv), "--oc", oc,
                             "--combine", how] + variant_args(unit, probe))
    if code != 0:
        return None, None, "exit %s; stderr: %s" % (code, se.strip()[-500:])
    try:
        m = ct.read_json(os.path.join(out, "conflict_map.json"))
        with open(os.path.join(out, "conflict_map.csv")) as f:
            csv = f.read()
    except (OSError, ValueError) as e:
        return None, None, "output unreadable: %s" % e
    return m, csv, None


# ---------------------------------------------------------------------------- comparisons


def check_structure(m, model, s_path, u_path, cfg, arch, fs, kv, oc, how, unit="head", probe=None):
    """Keys, order, model/settings blocks. -> list of problems."""
    bad = []
    head_keys = TRAJECTORY_HEAD_KEYS if oc == "trajectory" else HEAD_KEYS
    if set(m) != TOP_KEYS:
        bad.append("top-level keys %s" % sorted(m))
        return bad
    if set(m["model"]) != MODEL_KEYS:
        bad.append("model keys %s" % sorted(m["model"]))
    else:
        want = {"path": model, "architecture": arch, "layers": cfg.layers, "heads": cfg.heads,
                "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim}
        for k, v in want.items():
            if m["model"][k] != v or type(m["model"][k]) is not type(v):
                bad.append("model.%s = %r, expected %r" % (k, m["model"][k], v))
    if set(m["data"]) != {"safety", "utility"}:
        bad.append("data keys %s" % sorted(m["data"]))
    else:
        for k, p in (("safety", s_path), ("utility", u_path)):
            if set(m["data"][k]) != SET_KEYS:
                bad.append("data.%s keys %s" % (k, sorted(m["data"][k])))
            elif m["data"][k]["path"] != p:
                bad.append("data.%s.path = %r, expected %r" % (k, m["data"][k]["path"], p))
    want = {"kv_in_score": bool(kv), "oc": oc, "fs": fs, "combine": how, "unit": unit, "null_permutations": NULL_R,
            "seed": 0}
    if probe:
        want.update(probe_steps=probe[0], probe_lr=probe[1], probe_batch=probe[2])
    if set(m["settings"]) != SETTINGS_KEYS | (PROBE_KEYS if probe else set()):
        bad.append("settings keys %s" % sorted(m["settings"]))
    else:
        for k, v in want.items():
            if m["settings"][k] != v or type(m["settings"][k]) is not type(v):
                bad.append("settings.%s = %r, expected %r" % (k, m["settings"][k], v))
    heads = m["heads"]
    n = cfg.layers * cfg.heads
    if not isinstance(heads, list) or len(heads) != n:
        bad.append("heads has %s entries, expected %d" % (len(heads) if isinstance(heads, list) else "no", n))
        return bad
    for i, h in enumerate(heads):
        if list(h) != head_keys:
            bad.append("heads[%d] keys %s" % (i, list(h)))
            break
        if (h["layer"], h["head"]) != (i // cfg.heads, i % cfg.heads):
            bad.append("heads[%d] is layer %s head %s: not layer-major" % (i, h["layer"], h["head"]))
            break
        for k in head_keys:
            v = h[k]
            if k == "cos" and v is None:
                continue
            if k in ("layer", "head", "rank"):
                if type(v) is not int:
                    bad.append("heads[%d].%s = %r is not an integer" % (i, k, v))
            elif not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                bad.append("heads[%d].%s = %r is not a finite number" % (i, k, v))
    if sorted(h["rank"] for h in heads) != list(range(n)):
        bad.append("ranks are not a permutation of 0..%d" % (n - 1))
    for k in ("concentration_top5pct", "concentration_null_mean", "concentration_null_p"):
        c = m[k]
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 <= c <= 1:
            bad.append("%s = %r" % (k, c))
    return bad


def rel_scale(ref, key):
    return FLOOR * max(abs(x[key]) for x in ref["heads"])


def check_data(m, ref, C, tag):
    bad = []
    for k in ("safety", "utility"):
        got, want = m["data"][k], ref[k]
        if got["examples"] != want["examples"] or got["tokens"] != want["tokens"]:
            bad.append("%s examples/tokens %s/%s, expected %s/%s" % (k, got["examples"], got["tokens"],
                                                                     want["examples"], want["tokens"]))
        err = abs(got["loss"] - want["loss"]) / abs(want["loss"])
        C.note("loss (rel, / %g)" % TOL_LOSS, err / TOL_LOSS)
        if err > TOL_LOSS:
            bad.append("%s loss %.9g, reference %.9g (rel err %.2g)" % (k, got["loss"], want["loss"], err))
    C.add(tag + ": data (examples, scored tokens, losses)", not bad, "; ".join(bad))


def check_heads(m, ref, oc, how, C, tag):
    """Per-head numbers against the reference."""
    heads, rh = m["heads"], ref["heads"]
    n = len(rh)
    bad, skipped = [], []
    # which heads' scores are ill-conditioned: cos within tolerance of 0 (the cos >= 0 switch),
    # or (rank combine) an oc/fs within tolerance of another head's but not equal
    rise_scale = max(abs(x["rise"]) for x in rh)
    if oc == "negdot":
        tol_oc = lambda i: TOL_REL * max(abs(rh[i]["oc"]), rel_scale(ref, "oc"))  # noqa: E731
    elif oc == "trajectory":
        tol_oc = lambda i: TOL_RISE * rise_scale  # noqa: E731
    else:
        tol_oc = lambda i: TOL_COS  # noqa: E731
    tol_fs = lambda i: TOL_REL * max(abs(rh[i]["fs"]), rel_scale(ref, "fs"))  # noqa: E731
    ambiguous = set()
    for i in range(n):
        if oc != "trajectory" and rh[i]["cos"] is not None and abs(rh[i]["cos"]) < TOL_COS:
            ambiguous.add(i)
        if oc == "trajectory" and abs(rh[i]["rise"]) <= 2 * tol_oc(i):
            ambiguous.add(i)
        if how == "rank":
            for j in range(n):
                if j != i and (0 < abs(rh[i]["oc"] - rh[j]["oc"]) <= 2 * tol_oc(i) or
                               0 < abs(rh[i]["fs"] - rh[j]["fs"]) <= 2 * tol_fs(i)):
                    ambiguous.add(i)
    for i in range(n):
        g, r = heads[i], rh[i]
        where = "L%dH%d" % (r["layer"], r["head"])
        if (g["cos"] is None) != (r["cos"] is None):
            bad.append("%s cos %r, reference %r" % (where, g["cos"], r["cos"]))
        elif r["cos"] is not None:
            e = abs(g["cos"] - r["cos"])
            C.note("cos (abs, / %g)" % TOL_COS, e / TOL_COS)
            if e > TOL_COS:
                bad.append("%s cos %.8g, reference %.8g" % (where, g["cos"], r["cos"]))
        for k in ("norm_safety", "norm_utility", "fs") + (("oc",) if oc == "negdot" else ()):
            tol = TOL_REL * max(abs(r[k]), rel_scale(ref, k))
            e = abs(g[k] - r[k])
            C.note("%s (rel, / %g)" % (k if k != "oc" else "oc negdot", TOL_REL), e / tol if tol > 0 else (0 if e == 0 else math.inf))
            if e > tol:
                bad.append("%s %s %.8g, reference %.8g (err %.2g, tol %.2g)" % (where, k, g[k], r[k], e, tol))
        if oc == "trajectory":
            for k in ("rise", "oc"):
                e = abs(g[k] - r[k])
                C.note("%s trajectory (abs, / %g max |rise|)" % (k, TOL_RISE), e / tol_oc(i) if tol_oc(i) > 0 else 0)
                if e > tol_oc(i):
                    bad.append("%s %s %.8g, reference %.8g (tol %.2g)" % (where, k, g[k], r[k], tol_oc(i)))
        elif oc != "negdot":
            e = abs(g["oc"] - r["oc"])
            C.note("oc neg/half (abs, / %g)" % TOL_COS, e / TOL_COS)
            if e > TOL_COS:
                bad.append("%s oc %.8g, reference %.8g" % (where, g["oc"], r["oc"]))
        if i in ambiguous:
            skipped.append(where)
            continue
        e = abs(g["score"] - r["score"])
        C.note("score (abs, / %g)" % TOL_SCORE, e / TOL_SCORE)
        if e > TOL_SCORE:
            bad.append("%s score %.8g, reference %.8g" % (where, g["score"], r["score"]))
    C.add(tag + ": per-head cos, norms, oc, fs, score vs reference", not bad,
          "; ".join(bad[:6]) + (" (+%d more)" % (len(bad) - 6) if len(bad) > 6 else ""))
    if skipped:
        print("    (score not compared for ill-conditioned heads: %s)" % ", ".join(skipped))
    # ranks vs the reference where the reference scores are well separated
    dmax = max([abs(heads[i]["score"] - rh[i]["score"]) for i in range(n) if i not in ambiguous] + [0])
    sep = 1e-6 + 2 * dmax
    bad = []
    for i in range(n):
        for j in range(n):
            if i in ambiguous or j in ambiguous:
                continue
            if rh[i]["score"] > rh[j]["score"] + sep and not heads[i]["rank"] < heads[j]["rank"]:
                bad.append("L%dH%d (ref score %.6g) ranked %d after L%dH%d (ref score %.6g) ranked %d" % (
                    rh[i]["layer"], rh[i]["head"], rh[i]["score"], heads[i]["rank"],
                    rh[j]["layer"], rh[j]["head"], rh[j]["score"], heads[j]["rank"]))
    C.add(tag + ": ranks vs reference", not bad, "; ".join(bad[:4]))
    e = abs(m["concentration_top5pct"] - ref["concentration"])
    C.note("concentration (abs, / %g)" % TOL_CONC, e / TOL_CONC)
    C.add(tag + ": concentration_top5pct vs reference", e <= TOL_CONC,
          "" if e <= TOL_CONC else "%.8g, reference %.8g" % (m["concentration_top5pct"], ref["concentration"]))


def check_self(m, oc, how, C, tag):
    """oc from the file's cos (or rise), score/rank/concentration from the file's cos/oc/fs, and
    the concentration null recomputed from the file's oc/fs with the same permutations (cast's
    RNG, replayed in diag_ref.Rng): exact up to rounding."""
    heads, st = m["heads"], m["settings"]
    G = m["model"]["heads"] // m["model"]["kv_heads"] if st["unit"] == "group" else 1
    bad = []
    for h in heads:
        c = h["cos"]
        if oc == "neg":
            want = max(0.0, -c) if c is not None else 0.0
        elif oc == "half":
            want = (1 - c) / 2 if c is not None else 0.0
        elif oc == "trajectory":
            want = max(0.0, h["rise"])
        else:  # negdot: -dot where dot = cos (|g_s||g_u| + 1e-12) < 0
            want = max(0.0, -c * (h["norm_safety"] * h["norm_utility"] + 1e-12)) if c is not None else 0.0
        if abs(h["oc"] - want) > TOL_SELF * max(1.0, abs(want)) * (1e3 if oc == "negdot" else 1):
            bad.append("L%dH%d oc %.17g from cos %r: expected %.17g" % (h["layer"], h["head"], h["oc"], c, want))
    units = heads[::G]
    for i, h in enumerate(heads):  # a group's heads carry the group's numbers
        u = units[i // G]
        if any(h[k] != u[k] for k in h if k not in ("head", "rank")):
            bad.append("L%dH%d differs from the first head of its unit" % (h["layer"], h["head"]))
    conflict = [u["oc"] > 0 if oc == "trajectory" else (u["cos"] is not None and u["cos"] < 0) for u in units]
    oc_u, fs_u = [u["oc"] for u in units], [u["fs"] for u in units]
    score, order, conc = dr.combine_units(conflict, oc_u, fs_u, how)
    rank = [0] * len(units)
    for r, i in enumerate(order):
        rank[i] = r
    for i, h in enumerate(heads):
        s, r = score[i // G], rank[i // G] * G + i % G
        if abs(h["score"] - s) > TOL_SELF:
            bad.append("L%dH%d score %.17g, from its own oc/fs %.17g" % (h["layer"], h["head"], h["score"], s))
        elif h["rank"] != r:
            bad.append("L%dH%d rank %d, from the scores %d" % (h["layer"], h["head"], h["rank"], r))
    if abs(m["concentration_top5pct"] - conc) > TOL_SELF:
        bad.append("concentration %.17g, from the scores %.17g" % (m["concentration_top5pct"], conc))
    C.add(tag + ": oc/score/rank/concentration consistent with the file's own cos/oc/fs", not bad, "; ".join(bad[:4]))
    mean, p, _ = dr.concentration_null(conflict, oc_u, fs_u, how, m["concentration_top5pct"], st["null_permutations"],
                                       st["seed"])
    ok = abs(m["concentration_null_mean"] - mean) <= 1e-12 and m["concentration_null_p"] == p
    C.add(tag + ": concentration_null_mean/_p replayed from the file's oc/fs with the seed's permutations", ok,
          "" if ok else "file %.17g / %.17g, replayed %.17g / %.17g" % (
              m["concentration_null_mean"], m["concentration_null_p"], mean, p))


def check_csv(m, csv, C, tag):
    keys = list(m["heads"][0])
    lines = csv.splitlines()
    bad = []
    if not lines or lines[0] != ",".join(keys):
        bad.append("header %r" % (lines[0] if lines else ""))
    elif len(lines) != 1 + len(m["heads"]):
        bad.append("%d rows for %d heads" % (len(lines) - 1, len(m["heads"])))
    else:
        for line, h in zip(lines[1:], m["heads"]):
            f = line.split(",")
            if len(f) != len(keys):
                bad.append("row %r" % line)
                continue
            for k, v in zip(keys, f):
                want = h[k]
                if want is None:
                    ok = v == ""
                else:
                    try:
                        ok = float(v) == float(want) and (k not in ("layer", "head", "rank") or v == str(want))
                    except ValueError:
                        ok = False
                if not ok:
                    bad.append("L%sH%s %s: csv %r, json %r" % (h["layer"], h["head"], k, v, want))
    C.add(tag + ": conflict_map.csv holds the JSON's numbers", not bad, "; ".join(bad[:4]))


def check_files(out, C, tag):
    names = sorted(os.listdir(out))
    want = ["conflict_map.csv", "conflict_map.json", "conflict_map.svg"]
    ok = names == want
    detail = "" if ok else "folder holds %s" % names
    if ok:
        with open(os.path.join(out, "conflict_map.svg")) as f:
            head = f.read(200)
        ok = "<svg" in head
        detail = "" if ok else "conflict_map.svg does not start like an SVG: %r" % head[:60]
    C.add(tag + ": --out holds exactly conflict_map.json, .csv, .svg", ok, detail)


def full_check(C, tag, model, s_path, u_path, out, cfg, arch, ref, combo, batch=BATCH, unit="head", probe=None):
    fs, kv, oc, how = combo
    m, csv, err = diagnose(model, s_path, u_path, out, fs, kv, oc, how, batch, unit, probe)
    if err:
        C.add(tag + ": runs", False, err)
        return None
    bad = check_structure(m, model, s_path, u_path, cfg, arch, fs, kv, oc, how, unit, probe)
    C.add(tag + ": JSON keys, layer-major order, model/settings", not bad, "; ".join(bad[:5]))
    if bad:
        return None
    check_files(out, C, tag)
    r = ref.conflict_map(oc, fs, kv, how, unit, probe or (8, 2e-5, 16))
    check_data(m, r, C, tag)
    check_heads(m, r, oc, how, C, tag)
    check_self(m, oc, how, C, tag)
    check_csv(m, csv, C, tag)
    return m


# -------------------------------------------------------------------------- the sections


def setup_model(root, name, c, edit=None):
    f = ct.Fixture(os.path.join(root, name), c, zlib.crc32(("diagnose/" + name).encode()), edit)
    return f.dir, f.cfg, f.params, f.safety, f.utility, f.s_path, f.u_path


def section_reference(root, C):
    for name in MODELS:
        c = case_dict(name)
        folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, name, c)
        ref = dr.Reference(cfg, params, safety, utility)
        negative = sum(1 for h in ref.conflict_map()["heads"] if h["cos"] is not None and h["cos"] < 0)
        print("# %s: H=%d K=%d d=%d, %d of %d heads with cos < 0 in the reference (kv-in-score 1)" % (
            name, cfg.heads, cfg.kv_heads, cfg.head_dim, negative, cfg.layers * cfg.heads))
        for combo in COMBOS:
            tag = "%s fs=%s kv=%d oc=%s combine=%s" % ((name,) + combo)
            full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", name), cfg, c["arch"], ref, combo)
        if name == "qwen2_bias":  # micro-batch accumulation: the map does not depend on --batch
            for b in (1, 64):
                tag = "%s --batch %d fs=gate kv=1 oc=neg combine=product" % (name, b)
                full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", name), cfg, c["arch"], ref,
                           ("gate", 1, "neg", "product"), batch=b)


def section_families(root, C):
    """Qwen3 (q/k norms), Phi-3 (a head's q/k/v rows inside the fused qkv_proj) and Gemma 2 against
    the reference, with the k/v rows in the score; gate and snip (which reads the weights too)."""
    for name in ("qwen3_qknorm", "phi3_fused", "gemma2"):
        c = dict(case_dict(name), dtype="float32")
        folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, name, c)
        ref = dr.Reference(cfg, params, safety, utility)
        for combo in (("gate", 1, "neg", "product"), ("snip", 1, "negdot", "sum")):
            tag = "%s fs=%s kv=%d oc=%s combine=%s" % ((name,) + combo)
            full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", name), cfg, c["arch"], ref, combo)


def section_constructed(root, C):
    # (a) a head with zero q rows, v rows and o columns (MHA: its v rows are its own): z_h = 0 and
    #     no gradient reaches it -> both slices exactly 0 -> cos undefined ("null").
    L0, H0 = 1, 2
    c = case_dict("llama_mha")

    def zero_head(cfg, w):
        d, p = cfg.head_dim, "model.layers.%d.self_attn." % L0
        rows = slice(H0 * d, (H0 + 1) * d)
        w[p + "q_proj.weight"][rows] = 0
        w[p + "v_proj.weight"][rows] = 0
        w[p + "o_proj.weight"][:, rows] = 0

    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, "zero_head", c, zero_head)
    ref = dr.Reference(cfg, params, safety, utility)
    i0 = L0 * cfg.heads + H0
    for combo in (("gate", 0, "neg", "product"), ("snip", 1, "negdot", "rank"), ("ablation", 0, "half", "sum")):
        tag = "zero_head fs=%s kv=%d oc=%s combine=%s" % combo
        m = full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", "zero_head"), cfg, c["arch"], ref, combo)
        if m is None:
            continue
        h = m["heads"][i0]
        ok = h["cos"] is None and h["norm_safety"] == 0 and h["norm_utility"] == 0 and h["score"] == 0 and h["fs"] == 0
        C.add(tag + ": zeroed head L%dH%d has cos null, norms 0, fs 0, score 0" % (L0, H0), ok, "" if ok else json.dumps(h))
        with open(os.path.join(root, "out", "zero_head", "conflict_map.csv")) as f:
            row = f.read().splitlines()[1 + i0].split(",")
        C.add(tag + ": its CSV cos field is empty", row[2] == "", "" if row[2] == "" else "row %r" % row)

    # (b) a head with zero o columns only (GQA: its k/v rows are shared): its output has no effect
    #     and no gradient reaches its q rows -> fs exactly 0 under gate, ablation, snip (kv 0).
    L1, H1 = 0, 1
    c = case_dict("llama_gqa_k2")

    def dead_o(cfg, w):
        d = cfg.head_dim
        w["model.layers.%d.self_attn.o_proj.weight" % L1][:, H1 * d:(H1 + 1) * d] = 0

    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, "dead_o", c, dead_o)
    ref = dr.Reference(cfg, params, safety, utility)
    i1 = L1 * cfg.heads + H1
    for combo in (("gate", 1, "neg", "sum"), ("ablation", 1, "half", "product"), ("snip", 0, "neg", "sum")):
        tag = "dead_o fs=%s kv=%d oc=%s combine=%s" % combo
        m = full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", "dead_o"), cfg, c["arch"], ref, combo)
        if m is None:
            continue
        h = m["heads"][i1]
        ok = h["fs"] == 0 and h["norm_safety"] > 0
        C.add(tag + ": head L%dH%d with zero o columns has fs 0" % (L1, H1), ok, "" if ok else json.dumps(h))

    # (c) the same set as safety and utility: identical gradients -> cos 1, no score anywhere
    c = case_dict("llama_gqa_k2")
    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, "same_sets", c)
    for combo in (("gate", 1, "neg", "product"), ("snip", 0, "half", "rank")):
        tag = "same_sets fs=%s kv=%d oc=%s combine=%s" % combo
        m, csv, err = diagnose(folder, s_path, s_path, os.path.join(root, "out", "same_sets"), *combo)
        if err:
            C.add(tag + ": runs", False, err)
            continue
        bad = []
        for i, h in enumerate(m["heads"]):
            if h["cos"] is None or abs(h["cos"] - 1) > 1e-6 or h["score"] != 0 or h["rank"] != i or \
                    abs(h["norm_safety"] - h["norm_utility"]) > 1e-6 * h["norm_safety"]:
                bad.append(json.dumps(h))
        if m["concentration_top5pct"] != 0:
            bad.append("concentration %r" % m["concentration_top5pct"])
        C.add(tag + ": safety == utility -> cos 1, |g_s| = |g_u|, scores 0, ranks layer-major, concentration 0",
              not bad, "; ".join(bad[:3]))


# The variants of docs/cast.md: (model, (fs, kv_in_score, oc, combine), unit, probe (steps, lr, batch) or
# None). The probe's batch covers each safety set (7 sequences), so every step uses the whole set and
# the reference needs no data order; its learning rate is large enough for the rises to stand well
# above float32 rounding.
VARIANTS = [
    ("llama_gqa_k2", ("gate-abs", 1, "neg", "product"), "head", None),
    ("qwen2_bias", ("gate-abs", 0, "half", "rank"), "group", None),
    ("llama_gqa_k2", ("gate", 1, "neg", "product"), "group", None),
    ("llama_gqa_k2", ("ablation", 0, "negdot", "sum"), "group", None),
    ("llama_gqa_k2", ("snip", 1, "trajectory", "product"), "head", (3, 1e-2, 16)),
    ("qwen2_bias", ("gate", 1, "trajectory", "rank"), "group", (2, 1e-2, 16)),
    ("llama_attn_bias", ("gate-abs", 0, "trajectory", "sum"), "head", (2, 5e-3, 8)),
]


def section_variants(root, C):
    refs = {}
    for name, combo, unit, probe in VARIANTS:
        c = case_dict(name)
        if name not in refs:
            setup = setup_model(root, "v_" + name, c)
            refs[name] = (setup, dr.Reference(*setup[1:5]))
        (folder, cfg, params, safety, utility, s_path, u_path), ref = refs[name]
        tag = "%s fs=%s kv=%d oc=%s combine=%s unit=%s%s" % ((name,) + combo + (unit, " probe=%s" % (probe,) if probe else ""))
        m = full_check(C, tag, folder, s_path, u_path, os.path.join(root, "out", "v_" + name), cfg, c["arch"], ref, combo,
                       unit=unit, probe=probe)
        if m is None:
            continue
        if combo[0] == "gate-abs":  # |sum| <= sum of |.|: gate-abs bounds gate from above, per unit
            gate = ref.conflict_map(combo[2], "gate", combo[1], combo[3], unit, probe or (8, 2e-5, 16))["heads"]
            ok = all(h["fs"] >= g["fs"] * (1 - 1e-4) for h, g in zip(m["heads"], gate)) and \
                any(h["fs"] > g["fs"] * 1.01 for h, g in zip(m["heads"], gate))
            C.add(tag + ": gate-abs >= gate on every unit, > on some", ok)
        if unit == "group" and combo == ("gate", 1, "neg", "product"):
            # cast tune reads the group map: --skip-heads 2 of groups of 3 -> the top group, whole
            tuned = os.path.join(root, "out", "v_tune")
            shutil.rmtree(tuned, ignore_errors=True)
            code, _, se = run_cast(["tune", folder, "--safety", s_path, "--map", os.path.join(root, "out", "v_" + name,
                                    "conflict_map.json"), "--skip-heads", "2", "--steps", "1", "--out", tuned])
            G = cfg.heads // cfg.kv_heads
            top = sorted((h["rank"], h["layer"], h["head"]) for h in m["heads"])[:G]
            want = [{"layer": l, "head": h} for _, l, h in top]
            try:
                run = ct.read_json(os.path.join(tuned, "cast_run.json"))
                got = (run["skip_heads"], sorted(run["skipped"], key=lambda x: (x["layer"], x["head"])))
            except (OSError, ValueError, KeyError) as e:
                got = "exit %s, %s: %s" % (code, e, se.strip()[-300:])
            C.add(tag + ": cast tune --map --skip-heads 2 skips the top group whole (%d heads)" % G,
                  got == (G, want) and len({h["head"] // G for h in want}) == 1, "got %s, want %s" % (got, want))
        if combo[2] == "trajectory" and combo[0] == "snip":
            # snip reads the weights after the probe: equal bits to a run without the probe only if
            # the probe restored theta0 bit for bit
            plain, _, err = diagnose(folder, s_path, u_path, os.path.join(root, "out", "v_plain"), "snip", combo[1], "neg",
                                     combo[3], unit=unit)
            ok = not err and [h["fs"] for h in plain["heads"]] == [h["fs"] for h in m["heads"]]
            C.add(tag + ": fs snip after the probe equals a run without it, bit for bit (theta0 restored)", ok,
                  err or "")


class _MicroBatchMean(dr.Reference):
    """A wrong reference: G = mean over micro-batches of each micro-batch's mean gradient
    (not token-weighted over the whole set)."""

    def __init__(self, cfg, params, safety, utility):
        super().__init__(cfg, params, safety, utility)
        for attr, data in (("gs", safety), ("gu", utility)):
            parts = [data[i:i + BATCH] for i in range(0, len(data), BATCH)]
            acc = {}
            for part in parts:
                g = dr.set_gradient(cfg, params, part, False)[1]
                for n in g:
                    acc[n] = acc.get(n, 0) + g[n] / len(parts)
            setattr(self, attr, acc)


def _wrong_group_slices(cfg, params, l, h, kv_in_score):
    """A wrong head unit: group h % K instead of h // (H/K)."""
    out = dr.head_slices_right(cfg, params, l, h, kv_in_score)
    if not kv_in_score or cfg.kv_heads in (1, cfg.heads):
        return out
    d, g = cfg.head_dim, h % cfg.kv_heads
    rows = slice(g * d, (g + 1) * d)
    return [(n, ((rows, slice(None)) if n.endswith("weight") else (rows,)) if ("k_proj" in n or "v_proj" in n) else idx)
            for n, idx in out]


def section_controls(root, C):
    """Negative controls: the comparison must reject the file against a wrong reference."""
    name = "llama_gqa_k2"
    c = case_dict(name)
    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, name, c)
    combo = ("gate", 1, "neg", "product")
    m, csv, err = diagnose(folder, s_path, u_path, os.path.join(root, "out", "controls"), *combo)
    if err:
        C.add("controls: runs", False, err)
        return
    right = dr.Reference(cfg, params, safety, utility)
    wrongs = [("micro-batch-mean gradients", _MicroBatchMean(cfg, params, safety, utility).conflict_map("neg", "gate", 1, "product")),
              ("kv-in-score 0 reference for a kv-in-score 1 map", right.conflict_map("neg", "gate", 0, "product")),
              ("fs snip reference for an fs gate map", right.conflict_map("neg", "snip", 1, "product"))]
    dr.head_slices_right, saved = dr.head_slices, dr.head_slices
    dr.head_slices = _wrong_group_slices
    try:
        wrongs.append(("k/v group h % K instead of h // (H/K)", right.conflict_map("neg", "gate", 1, "product")))
    finally:
        dr.head_slices = saved
    for what, ref in wrongs:
        C.add("control: a map checked against a wrong reference (%s) is rejected" % what,
              rejected(m, ref, "neg", "product"))


def rejected(m, ref, oc, how):
    """Whether check_heads fails m against ref (its output hidden)."""
    scratch, out = Checks(), sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        check_heads(m, ref, oc, how, scratch, "control")
    finally:
        sys.stdout.close()
        sys.stdout = out
    return "control: per-head cos, norms, oc, fs, score vs reference" in scratch.failed


def section_variant_controls(root, C):
    """The variants' comparisons reject maps checked against a wrong variant's reference, and the
    null replay rejects another seed."""
    name = "llama_gqa_k2"
    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, "vc_" + name, case_dict(name))
    ref = dr.Reference(cfg, params, safety, utility)
    out = os.path.join(root, "out", "variant_controls")
    probe = (3, 1e-2, 16)
    runs = [(("gate-abs", 1, "neg", "product"), "head", None,
             [("fs gate reference for a gate-abs map", ("neg", "gate", 1, "product", "head"))]),
            (("gate", 1, "neg", "product"), "group", None,
             [("unit head reference for a unit group map", ("neg", "gate", 1, "product", "head"))]),
            (("gate", 1, "trajectory", "product"), "head", probe,
             [("probe lr halved", ("trajectory", "gate", 1, "product", "head", (3, 5e-3, 16))),
              ("one probe step fewer", ("trajectory", "gate", 1, "product", "head", (2, 1e-2, 16))),
              ("kv-in-score 0 slices of the update", ("trajectory", "gate", 0, "product", "head", probe))])]
    for (fs, kv, oc, how), unit, pr, wrongs in runs:
        m, _, err = diagnose(folder, s_path, u_path, out, fs, kv, oc, how, unit=unit, probe=pr)
        if err:
            C.add("variant controls: %s %s %s runs" % (fs, oc, unit), False, err)
            continue
        for what, args in wrongs:
            C.add("control: a map checked against a wrong reference (%s) is rejected" % what,
                  rejected(m, ref.conflict_map(*args), oc, how))
    # the null: a replay with another seed does not give the file's numbers
    conflict = [h["oc"] > 0 for h in m["heads"]]  # the last run's: trajectory, head units
    mean, p, _ = dr.concentration_null(conflict, [h["oc"] for h in m["heads"]], [h["fs"] for h in m["heads"]], "product",
                                       m["concentration_top5pct"], NULL_R, 1)
    C.add("control: the null replayed with seed 1 differs from the seed-0 file",
          (mean, p) != (m["concentration_null_mean"], m["concentration_null_p"]))


def section_errors(root, C):
    c = case_dict("llama_mha")
    folder, cfg, params, safety, utility, s_path, u_path = setup_model(root, "errors", c)
    d = os.path.join(root, "errors_data")
    os.makedirs(d, exist_ok=True)
    empty = os.path.join(d, "empty.jsonl")
    open(empty, "w").close()
    unscored = os.path.join(d, "unscored.jsonl")
    ct.write_jsonl(unscored, [{"input_ids": ex["input_ids"], "labels": [-100] * len(ex["input_ids"])} for ex in utility])
    big = os.path.join(d, "big_id.jsonl")
    rows = [dict(ex) for ex in safety]
    rows[2] = {"input_ids": list(rows[2]["input_ids"]), "labels": list(rows[2]["labels"])}
    rows[2]["input_ids"][4] = cfg.vocab  # one past the last row of embed_tokens
    ct.write_jsonl(big, rows)
    big_label = os.path.join(d, "big_label.jsonl")
    rows = [dict(ex) for ex in utility]
    rows[1] = {"input_ids": list(rows[1]["input_ids"]), "labels": list(rows[1]["labels"])}
    rows[1]["labels"][-1] = cfg.vocab  # a scored label with no row in lm_head
    ct.write_jsonl(big_label, rows)
    missing = os.path.join(d, "does_not_exist.jsonl")

    cases = [
        ("empty safety file", ["--safety", empty, "--utility", u_path], [empty]),
        ("utility set without scored tokens", ["--safety", s_path, "--utility", unscored], [unscored]),
        ("token id = vocab_size", ["--safety", big, "--utility", u_path], [big]),
        ("label = vocab_size", ["--safety", s_path, "--utility", big_label], [big_label]),
        ("--fs nonsense", ["--safety", s_path, "--utility", u_path, "--fs", "nonsense"], ["--fs", "nonsense"]),
        ("missing --utility file", ["--safety", s_path, "--utility", missing], [missing]),
        ("no --utility", ["--safety", s_path], ["--utility"]),
        ("--unit nonsense", ["--safety", s_path, "--utility", u_path, "--unit", "layer"], ["--unit", "layer"]),
        ("--oc trajectory --probe-steps 0", ["--safety", s_path, "--utility", u_path, "--oc", "trajectory",
                                             "--probe-steps", "0"], ["--probe-steps"]),
        ("--oc trajectory --probe-lr -1", ["--safety", s_path, "--utility", u_path, "--oc", "trajectory",
                                           "--probe-lr", "-1"], ["--probe-lr"]),
        ("--probe-steps without --oc trajectory", ["--safety", s_path, "--utility", u_path, "--probe-steps", "4"],
         ["--probe-steps", "--oc trajectory"]),
        ("--oc trajectory with an empty safety (probe) set", ["--safety", empty, "--utility", u_path, "--oc", "trajectory"],
         [empty]),
        ("--null-permutations -1", ["--safety", s_path, "--utility", u_path, "--null-permutations", "-1"],
         ["--null-permutations"]),
    ]
    for i, (what, args, names) in enumerate(cases):
        out = os.path.join(root, "errors_out", str(i))
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        code, so, se = run_cast(["diagnose", folder] + args + ["--out", out, "--batch", str(BATCH)])
        ct.check_error(C, "error: %s" % what, code, se, names, out, ["conflict_map"])


def main():
    torch.set_num_threads(1)
    C, root = ct.begin("diagnose", "cast_diag_")
    if root is None:
        return C.finish()
    for section in (section_reference, section_families, section_constructed, section_variants, section_controls, section_variant_controls,
                    section_errors):
        ct.guarded(C, "%s completed" % section.__name__, section, root, C)
    print("# worst error / tolerance: " + ", ".join("%s %.3g" % kv for kv in sorted(C.worst.items())))
    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

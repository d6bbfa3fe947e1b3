#!/usr/bin/python3
"""Reference test of `cast tune` and `cast apply-delta` (DESIGN.md section 3, "Sparse tuning").

Environment (set by ctest): CAST (the cast binary), CAST_TEST_TMP (scratch folder, created),
CAST_SOURCE_DIR (unused).

Models: make_cases' llama_gqa_k2 (H=6, K=2, tied), qwen2_bias (q/k/v biases, tied), llama_mha
(untied), llama_bf16 (stored bf16), random weights; pre-tokenized JSONL sets (prompt labels
-100). Conflict maps are hand-written (so that the selection is known: whole and partial GQA
groups, a head with cos null) or made by tune's own diagnosis.

1. Masks: for each strategy (cast, --skip-heads, random --seed 3, inverse (also with more heads
   than conflict), oc, fs), --kv-freeze all/any, --train attn/attn+mlp/all: cast_run.json's
   "skipped" is the expected selection, "trainable_parameters"/"total_parameters" equal our
   count; in model.safetensors every frozen element (skipped q rows/bias, o columns, the k/v
   rows of a group frozen by the kv rule, every tensor outside the scope) is bit-identical to
   the base, and every trainable head block / group block / tensor changed (>= 90 %; an untied
   embedding: exactly the rows of tokens the run read). bf16 model saved bf16: same, on bits.
   --weight-decay 0.1 leaves frozen bits alone too. Negative controls: the checker rejects a
   run against the other kv rule / a shifted head.
2. --skip 0 (strategy cast, with a map) == --strategy full, byte for byte.
3. Resume (a 4-layer model, random heads, utility anchor): --steps 12 --save-every 2, SIGKILLed
   (A) the moment a checkpoint of step >= 4 appears, resumed, killed at the next checkpoint,
   resumed; (B) once train_log.jsonl holds 7 lines, resumed: model.safetensors == the
   uninterrupted run's bytes; train_log.jsonl has steps 1..12 once each, with the uninterrupted
   run's losses; cast_run.json resumed_from_step = the last checkpoint.
4. PCGrad / anchor vs float64: one step over whole sets with --clip 0 --lr 1 --eps 1 reveals
   the combined gradient g (delta = -g/(|g|+1)): pcgrad with a conflict (dot < 0, projected:
   true) at w = 1 and 0.5, without one (dot > 0), and --anchor-weight 0.3 without pcgrad;
   losses in train_log.jsonl; negative controls (unprojected formula, wrong weight rejected).
5. Tuned folders load: `cast score --json` loss == float64 loss on the saved weights (1e-5
   rel), `cast generate --ids --json` greedy ids == reference (f32 and bf16 outputs).
6. --delta + `cast apply-delta` reproduces model.safetensors byte for byte (f32, bf16, --train
   all with 1-D tensors); the delta holds exactly the unfrozen slices and is smaller than the
   attention weights; a delta applied to a model of another shape fails (exit 1, one line).
7. Errors (exit 1, one stderr line "cast: ...", naming the file/option; no model.safetensors
   or cast_run.json): map of another model, --skip 1, --skip -0.1, --skip-heads > L H, empty
   safety file, pcgrad without --utility, inf weights (step 1), --lr 1e30 --save-every 1 (step 2
   non-finite: names the step and the checkpoint, which holds step 1's weights).

Prints one line per check and ends with "N passed, N failed"; exit 1 on any failure.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
import diag_ref as dr  # noqa: E402
import make_cases as mc  # noqa: E402
import safetensors_io as st  # noqa: E402
import tune_ref as tr  # noqa: E402
from cast_test import (case_dict, file_bytes, first_diff, make_set, read_json, read_jsonl, run_cast,  # noqa: E402
                       strict_json, write_jsonl)
from torch_llama import CausalLM, Config, batch_loss, param_shapes  # noqa: E402

THREADS = ["--threads", "2"]
TOL_LOSS = 1e-5  # relative
TOL_STEP = 1e-4  # absolute, on the first AdamW step
CHANGED = 0.9  # share of a trainable block that must have changed
OUTPUTS = ["model.safetensors", "cast_run.json"]  # what a refused run must not leave in its --out


# ------------------------------------------------------------------------------ fixtures


class Model(ct.Fixture):
    """ROOT/models/NAME, with a safety and a utility set; dtype: the stored weights' (f32 without)."""

    def __init__(self, root, name, case, seed, dtype=None, edit=None, n_s=8, n_u=8):
        def prep(cfg, w):
            if edit:
                edit(cfg, w)
            if dtype is not None:
                for n in w:
                    w[n] = w[n].to(dtype)

        super().__init__(os.path.join(root, "models", name), case, seed, prep, n_s, n_u)
        self.name = name
        self.shapes = param_shapes(self.cfg)

    def write_map(self, heads, name="map.json"):
        cfg = self.cfg
        m = {"model": {"path": self.dir, "architecture": self.case["arch"], "layers": cfg.layers, "heads": cfg.heads,
                       "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim},
             "settings": {"kv_in_score": True, "oc": "neg", "fs": "gate", "combine": "product"},
             "heads": heads, "concentration_top5pct": 0.0}
        path = os.path.join(self.dir, name)
        ct.write_json(path, m, indent=1)
        return path


def hand_map_gqa(cfg):
    """12 heads (L=2, H=6, K=2: groups {0,1,2}, {3,4,5}). Top 3 by score: L0 H0-2 (a whole
    group); top 5: + L1 H3, H4 (part of a group); L1 H5 has cos null."""
    score = [.90, .85, .80, .00, .05, .00, .20, .15, .00, .70, .60, .00]
    cos = [-.5, -.4, -.3, .2, -.01, .1, -.6, -.7, .3, -.35, -.2, None]
    fs = [.10, .20, .05, .90, .30, .80, .15, .25, .70, .40, .35, .60]
    return [{"layer": i // cfg.heads, "head": i % cfg.heads, "cos": cos[i], "norm_safety": 1.0, "norm_utility": 1.0,
             "oc": max(0.0, -cos[i]) if cos[i] is not None else 0.0, "fs": fs[i], "score": score[i], "rank": 0}
            for i in range(12)]


def random_map(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    n = cfg.layers * cfg.heads
    cos = [float(x) for x in (2 * torch.rand(n, generator=gen) - 1)]
    fs = [float(x) for x in torch.rand(n, generator=gen)]
    oc = [max(0.0, -c) for c in cos]
    score, rank, _ = dr.combine(cos, oc, fs, "product")
    return [{"layer": i // cfg.heads, "head": i % cfg.heads, "cos": cos[i], "norm_safety": 1.0, "norm_utility": 1.0,
             "oc": oc[i], "fs": fs[i], "score": score[i], "rank": rank[i]} for i in range(n)]


def tune(model, out, *args, safety=None):
    shutil.rmtree(out, ignore_errors=True)
    return run_cast(["tune", model.dir, "--safety", safety or model.s_path, "--out", out] + list(args) + THREADS)


def read_log(out):
    return read_jsonl(os.path.join(out, "train_log.jsonl"))


# ------------------------------------------------------------------- invariant 1: masks


def check_tuned(m, out, scope, kv_rule, train_sets, want_skipped=None, k=None):
    """-> (problems, run json). train_sets: the sets whose sequences the run read."""
    bad = []
    run = read_json(os.path.join(out, "cast_run.json"))
    skipped = [(x["layer"], x["head"]) for x in run["skipped"]]
    if len(set(skipped)) != len(skipped) or any(not (0 <= l < m.cfg.layers and 0 <= h < m.cfg.heads) for l, h in skipped):
        bad.append("skipped %s: duplicates or out of range" % skipped)
    if k is not None and len(skipped) != k:
        bad.append("%d heads skipped, expected %d" % (len(skipped), k))
    if want_skipped is not None and sorted(skipped) != sorted(want_skipped):
        bad.append("skipped %s, expected %s" % (sorted(skipped), sorted(want_skipped)))
    base, tuned = st.load(m.weights_path), st.load(os.path.join(out, "model.safetensors"))
    if set(base) != set(tuned):
        return bad + ["tensor names differ: %s" % sorted(set(base) ^ set(tuned))], run
    masks = tr.frozen_masks(m.cfg, {n: list(t.shape) for n, t in base.items()}, scope, skipped, kv_rule)
    seen = set()  # tokens read at a position that has a successor: their embedding rows get a gradient
    for ex in (e for s in train_sets for e in s):
        seen.update(ex["input_ids"][:-1])
    untied_embed = "lm_head.weight" in base
    trainable = 0
    for n, b in base.items():
        t = tuned[n]
        if t.dtype != b.dtype or t.shape != b.shape:
            bad.append("%s: %s %s, base %s %s" % (n, t.dtype, list(t.shape), b.dtype, list(b.shape)))
            continue
        fz = masks[n]
        same = tr.bits(t) == tr.bits(b)
        moved = int((fz & ~same).sum())
        if moved:
            bad.append("%s: %d of %d frozen elements changed" % (n, moved, int(fz.sum())))
        trainable += int((~fz).sum())
        if bool(fz.all()):
            continue
        if n == "model.embed_tokens.weight" and untied_embed:
            rows_changed = {r for r in range(b.shape[0]) if not bool(same[r].all())}
            never = {r for r in range(b.shape[0]) if r not in seen}
            if (seen - rows_changed) or (rows_changed & never):
                bad.append("%s: rows changed %s, rows read %s" % (n, sorted(rows_changed), sorted(seen)))
            continue
        for what, idx in tr.units(m.cfg, n, list(b.shape)):
            f, s = fz[idx], same[idx]
            if bool(f.all()):
                continue
            share = float((~s & ~f).sum()) / float((~f).sum())
            if share < CHANGED:
                bad.append("%s %s: only %.0f %% of its trainable elements changed" % (n, what, 100 * share))
    if run.get("trainable_parameters") != trainable:
        bad.append("trainable_parameters %s, expected %d" % (run.get("trainable_parameters"), trainable))
    total = sum(t.numel() for t in base.values())
    if run.get("total_parameters") != total:
        bad.append("total_parameters %s, expected %d" % (run.get("total_parameters"), total))
    return bad, run


def mask_run(C, m, out, scope, kv_rule, args, want_skipped=None, k=None, train_sets=None):
    tag = "%s %s" % (m.name, " ".join(args))
    code, so, se = tune(m, out, *args)
    if code != 0:
        C.add(tag + ": runs", False, "exit %s; stderr: %s" % (code, se.strip()[-400:]))
        return None
    bad, run = check_tuned(m, out, scope, kv_rule, train_sets or [m.safety], want_skipped, k)
    C.add(tag + ": skipped heads, frozen bits, trainable changed, parameter counts", not bad, "; ".join(bad[:5]))
    return run


def L(*idx, H=6):
    return [(i // H, i % H) for i in idx]


def section_masks(root, C, models):
    gqa, qwen, mha, bf = models["gqa"], models["qwen"], models["mha"], models["bf16"]
    outs = os.path.join(root, "out")
    gmap = gqa.write_map(hand_map_gqa(gqa.cfg))
    heads = hand_map_gqa(gqa.cfg)
    common = ["--steps", "5", "--batch", "4", "--grad-accum", "1", "--lr", "1e-2"]
    # the selection rules on the hand-written map (layer-major indices), checked against tune_ref.select too
    sel = {("cast", 3): L(0, 1, 2), ("cast", 5): L(0, 1, 2, 9, 10), ("oc", 3): L(7, 6, 0), ("fs", 3): L(3, 5, 8),
           ("inverse", 3): L(4, 7, 6), ("inverse", 10): L(0, 1, 2, 4, 6, 7, 9, 10, 3, 5)}
    for (s, k), want in sel.items():
        assert sorted(want) == [(i // 6, i % 6) for i in tr.select(heads, s, k)], (s, k)

    mask_run(C, gqa, os.path.join(outs, "g_cast"), "attn", "all",
             ["--map", gmap, "--strategy", "cast", "--skip", "0.25"] + common, sel[("cast", 3)], 3)
    o = os.path.join(outs, "g_cast5")
    mask_run(C, gqa, o, "attn", "all", ["--map", gmap, "--strategy", "cast", "--skip-heads", "5", "--delta"] + common,
             sel[("cast", 5)], 5)
    # negative controls on that run (a whole group and a partial one): the checker must reject
    if os.path.exists(os.path.join(o, "cast_run.json")):
        for what, kv, shift in (("the other kv rule (any)", "any", 0), ("heads shifted by one", "all", 1)):
            saved = tr.frozen_masks

            def wrong(cfg, shapes, scope, skipped, kv_rule, _s=shift):
                return saved(cfg, shapes, scope, [(l, (h + _s) % cfg.heads) for l, h in skipped], kv_rule)
            tr.frozen_masks = wrong
            try:
                bad, _ = check_tuned(gqa, o, "attn", kv, [gqa.safety])
            finally:
                tr.frozen_masks = saved
            C.add("control: the mask check rejects the run checked with %s" % what, bool(bad))
    mask_run(C, gqa, os.path.join(outs, "g_cast5_any"), "attn", "any",
             ["--map", gmap, "--strategy", "cast", "--skip-heads", "5", "--kv-freeze", "any", "--weight-decay", "0.1"] + common, sel[("cast", 5)], 5)
    for s in ("oc", "fs", "inverse"):
        mask_run(C, gqa, os.path.join(outs, "g_" + s), "attn", "all",
                 ["--map", gmap, "--strategy", s, "--skip", "0.25"] + common, sel[(s, 3)], 3)
    mask_run(C, gqa, os.path.join(outs, "g_inverse10"), "attn", "any",
             ["--map", gmap, "--strategy", "inverse", "--skip-heads", "10", "--kv-freeze", "any"] + common, sel[("inverse", 10)], 10)
    # random: k heads, reproducible with the seed (selection and bits), another seed differs
    runs = []
    for tag, seed in (("g_rand3", "3"), ("g_rand3b", "3"), ("g_rand4", "4")):
        r = mask_run(C, gqa, os.path.join(outs, tag), "attn", "all", ["--strategy", "random", "--seed", seed, "--skip", "0.25"] + common,
                     None, 3)
        runs.append(r and sorted((x["layer"], x["head"]) for x in r["skipped"]))
    if all(runs):
        same = file_bytes(os.path.join(outs, "g_rand3", "model.safetensors")) == file_bytes(os.path.join(outs, "g_rand3b", "model.safetensors"))
        C.add("random --seed 3 twice: same heads, same bytes; --seed 4 other heads", runs[0] == runs[1] and same and runs[0] != runs[2],
              "heads %s / %s / %s, bytes %s" % (runs[0], runs[1], runs[2], "same" if same else "differ"))

    # qwen2 (biases): map diagnosed by tune itself (no --map): skipped = top 2 by its conflict_map.json
    o = os.path.join(outs, "q_diag")
    code, so, se = tune(qwen, o, "--utility", qwen.u_path, "--strategy", "cast", "--skip", "0.25", "--train", "attn+mlp", *common)
    if code != 0:
        C.add("qwen2 diagnosed map: runs", False, "exit %s; %s" % (code, se.strip()[-300:]))
    else:
        dm = read_json(os.path.join(o, "conflict_map.json"))
        want = [(i // qwen.cfg.heads, i % qwen.cfg.heads) for i in tr.select(dm["heads"], "cast", 2)]
        bad, _ = check_tuned(qwen, o, "attn+mlp", "all", [qwen.safety], want, 2)
        C.add("qwen2 --skip 0.25 --train attn+mlp, map diagnosed by tune: skipped = top 2 of its conflict_map.json, masks",
              not bad, "; ".join(bad[:5]))
    qmap = qwen.write_map(random_map(qwen.cfg, 11))
    qheads = read_json(qmap)["heads"]
    mask_run(C, qwen, os.path.join(outs, "q_all"), "all", "any",
             ["--map", qmap, "--strategy", "cast", "--skip-heads", "3", "--kv-freeze", "any", "--train", "all", "--delta"] + common,
             [(i // 4, i % 4) for i in tr.select(qheads, "cast", 3)], 3)
    # untied MHA: --train all (embedding rows of unread tokens must stay), attn+mlp with random
    mmap = mha.write_map(random_map(mha.cfg, 12))
    mheads = read_json(mmap)["heads"]
    mask_run(C, mha, os.path.join(outs, "m_all"), "all", "all",
             ["--map", mmap, "--strategy", "cast", "--skip", "0.25", "--train", "all"] + common,
             [(i // 4, i % 4) for i in tr.select(mheads, "cast", 2)], 2)
    mask_run(C, mha, os.path.join(outs, "m_mlp"), "attn+mlp", "all",
             ["--strategy", "random", "--seed", "3", "--skip", "0.375", "--train", "attn+mlp"] + common, None, 3)
    # bf16 model, saved bf16: frozen bits identical
    bmap = bf.write_map(random_map(bf.cfg, 13))
    bheads = read_json(bmap)["heads"]
    mask_run(C, bf, os.path.join(outs, "b_cast"), "attn", "all",
             ["--map", bmap, "--strategy", "cast", "--skip", "0.25", "--delta"] + common,
             [(i // 4, i % 4) for i in tr.select(bheads, "cast", 2)], 2)
    if os.path.exists(os.path.join(outs, "b_cast", "model.safetensors")):
        dts = {t.dtype for t in st.load(os.path.join(outs, "b_cast", "model.safetensors")).values()}
        cfgj = read_json(os.path.join(outs, "b_cast", "config.json"))
        C.add("bf16 model tuned: saved as BF16, config torch_dtype bfloat16", dts == {torch.bfloat16} and cfgj.get("torch_dtype") == "bfloat16",
              "dtypes %s, torch_dtype %r" % (dts, cfgj.get("torch_dtype")))

    # invariant 2: --skip 0 with strategy cast and a map == --strategy full, bytes
    for m, mp, extra in ((gqa, gmap, []), (qwen, qmap, ["--train", "all"])):
        a, b = os.path.join(outs, m.name + "_skip0"), os.path.join(outs, m.name + "_full")
        r1 = tune(m, a, "--map", mp, "--strategy", "cast", "--skip", "0", *(common + extra))
        r2 = tune(m, b, "--strategy", "full", *(common + extra))
        if r1[0] != 0 or r2[0] != 0:
            C.add("%s --skip 0 == --strategy full: runs" % m.name, False, "exits %s %s; %s %s" % (r1[0], r2[0], r1[2][-200:], r2[2][-200:]))
            continue
        x, y = file_bytes(os.path.join(a, "model.safetensors")), file_bytes(os.path.join(b, "model.safetensors"))
        run = read_json(os.path.join(a, "cast_run.json"))
        changed = x != file_bytes(m.weights_path)
        C.add("%s%s: --strategy cast --skip 0 --map == --strategy full, byte for byte (and tuned at all)" % (m.name, " " + " ".join(extra) if extra else ""),
              x == y and run["skipped"] == [] and changed,
              "" if x == y else first_diff(x, y) if run["skipped"] == [] else "skipped %s" % run["skipped"])
    s3 = os.path.join(outs, "g_cast", "model.safetensors")
    if os.path.exists(s3) and os.path.exists(os.path.join(outs, "llama_gqa_k2_full", "model.safetensors")):
        C.add("control: --skip 0.25 differs from --strategy full",
              file_bytes(s3) != file_bytes(os.path.join(outs, "llama_gqa_k2_full", "model.safetensors")))


# ------------------------------------------------------------- invariant 6: sparse deltas


def section_delta(root, C, models):
    outs = os.path.join(root, "out")
    for key, run, scope, kv in (("gqa", "g_cast5", "attn", "all"), ("qwen", "q_all", "all", "any"), ("bf16", "b_cast", "attn", "all")):
        m, o = models[key], os.path.join(outs, run)
        dpath = os.path.join(o, "delta.safetensors")
        if not os.path.exists(dpath):
            C.add("%s: --delta wrote delta.safetensors" % run, False)
            continue
        x = os.path.join(outs, run + "_applied")
        for arg in (o, dpath):  # the folder or the file
            shutil.rmtree(x, ignore_errors=True)  # a non-empty --out needs --force
            code, so, se = run_cast(["apply-delta", m.dir, arg, "--out", x])
            ok = code == 0 and file_bytes(os.path.join(x, "model.safetensors")) == file_bytes(os.path.join(o, "model.safetensors"))
            C.add("%s: apply-delta BASE %s reproduces model.safetensors byte for byte" % (run, "DIR" if arg == o else "DELTA"), ok,
                  "exit %s %s" % (code, se.strip()[-300:]) if code else "" if ok else first_diff(
                      file_bytes(os.path.join(x, "model.safetensors")), file_bytes(os.path.join(o, "model.safetensors"))))
        # content: exactly the unfrozen slices (every unfrozen row / column changed here)
        d = st.load(dpath)
        runj = read_json(os.path.join(o, "cast_run.json"))
        skipped = [(a["layer"], a["head"]) for a in runj["skipped"]]
        base, tuned = st.load(m.weights_path), st.load(os.path.join(o, "model.safetensors"))
        masks = tr.frozen_masks(m.cfg, {n: list(t.shape) for n, t in base.items()}, scope, skipped, kv)
        bad = []
        for n, t in d.items():
            if n.startswith(("rows.", "cols.")):
                continue
            if not tr.in_scope(n, scope):
                bad.append("%s outside the --train scope" % n)
            fz = masks[n]
            if "rows." + n in d:
                got = [int(v) for v in d["rows." + n].tolist()]
                want = [r for r in range(fz.shape[0]) if not bool(fz[r].all()) and
                        not bool((tr.bits(tuned[n][r]) == tr.bits(base[n][r])).all())]
            elif "cols." + n in d:
                got = [int(v) for v in d["cols." + n].tolist()]
                want = [c for c in range(fz.shape[1]) if not bool(fz[:, c].all())]
            else:
                got, want = "whole", "whole"
            if got != want:
                bad.append("%s: slices %s, expected %s" % (n, got, want))
        for n in base:
            if n in d or not bool((~masks[n]).any()):
                continue
            if not bool((tr.bits(tuned[n]) == tr.bits(base[n])).all()):
                bad.append("%s changed but is not in the delta" % n)
        C.add("%s: the delta holds exactly the trained slices" % run, not bad, "; ".join(bad[:4]))
        if scope == "attn":
            attn_bytes = sum(4 * t.numel() for n, t in base.items() if ".self_attn." in n)
            size, full = os.path.getsize(dpath), os.path.getsize(m.weights_path)
            C.add("%s: delta (%d B) smaller than the model (%d B) and than its attention weights in f32 (%d B)" % (run, size, full, attn_bytes),
                  size < full and size < attn_bytes)
    # a delta of another shape
    o = os.path.join(outs, "g_cast5")
    if os.path.exists(os.path.join(o, "delta.safetensors")):
        x = os.path.join(outs, "wrong_shape")
        shutil.rmtree(x, ignore_errors=True)
        dpath = os.path.join(o, "delta.safetensors")
        for target in ("mha", "qwen"):
            code, so, se = run_cast(["apply-delta", models[target].dir, dpath, "--out", x])
            ct.check_error(C, "apply-delta of an H=6 delta onto %s: exit 1, one line naming the delta, nothing written" %
                           models[target].name, code, se, [dpath], x, ["model.safetensors"])


# ------------------------------------------------------------ invariant 5: tuned folders load


def section_load(root, C, models):
    outs = os.path.join(root, "out")
    for key, run in (("gqa", "g_cast5"), ("qwen", "q_all"), ("mha", "m_all"), ("bf16", "b_cast")):
        m, o = models[key], os.path.join(outs, run)
        if not os.path.exists(os.path.join(o, "cast_run.json")):
            C.add("%s: tuned folder exists" % run, False)
            continue
        cfgj = read_json(os.path.join(o, "config.json"))
        C.add("%s: config.json describes the same model" % run, Config.from_hf(cfgj) == m.cfg)
        w = {n: t.to(torch.float64) for n, t in st.load(os.path.join(o, "model.safetensors")).items()}
        model = CausalLM(m.cfg, w)
        with torch.no_grad():
            ref = float(batch_loss(model, m.safety)[0])
            ref0 = float(batch_loss(CausalLM(m.cfg, m.params), m.safety)[0])
        code, so, se = run_cast(["score", o, "--data", m.s_path, "--json"] + THREADS)
        if code != 0:
            C.add("%s: cast score runs" % run, False, se.strip()[-300:])
        else:
            got = strict_json(so)["loss"]
            err = abs(got - ref) / abs(ref)
            C.add("%s: cast score loss == float64 loss on the saved weights (base model's: %.4f)" % (run, ref0),
                  err <= TOL_LOSS and abs(ref0 - ref) > 100 * TOL_LOSS * ref, "%.9g vs %.9g (rel %.2g)" % (got, ref, err))
        eos = cfgj.get("eos_token_id")
        try:  # 8 greedy ids (make_cases.MAX_NEW) after 5 random ids, no near-tie, no eos
            prompt, want, _ = mc.pick_prompt(model, m.cfg.vocab, torch.Generator().manual_seed(5), length=5, tries=200, avoid=eos)
        except RuntimeError:
            C.add("%s: a prompt without near-ties" % run, False)
            continue
        code, so, se = run_cast(["generate", o, "--ids", ",".join(map(str, prompt)), "--max-new", "8", "--json"] + THREADS)
        got = strict_json(so)["ids"] if code == 0 else "exit %s %s" % (code, se.strip()[-200:])
        C.add("%s: cast generate greedy ids == reference" % run, got == want, "%s vs %s" % (got, want))


# --------------------------------------------------------------------- invariant 4: PCGrad


def section_pcgrad(root, C, models):
    outs = os.path.join(root, "out")
    qwen, gqa = models["qwen"], models["gqa"]
    n_s = 5

    def sets(m, oppose, tag):
        gen = torch.Generator().manual_seed(77)
        s = make_set(gen, m.cfg.vocab, n_s)
        names = dr.attention_names(m.cfg, m.params)
        ls, gs = tr.set_grads(m.cfg, m.params, s, names)
        if oppose:
            u = tr.steered_labels(m.cfg, m.params, gs, s, True)
        else:  # other inputs, labels that follow g_s
            u = tr.steered_labels(m.cfg, m.params, gs, make_set(gen, m.cfg.vocab, n_s), False)
        lu, gu = tr.set_grads(m.cfg, m.params, u, names)
        sp, up = os.path.join(m.dir, tag + "_s.jsonl"), os.path.join(m.dir, tag + "_u.jsonl")
        write_jsonl(sp, s)
        write_jsonl(up, u)
        return sp, up, ls, lu, gs, gu

    q_neg = sets(qwen, True, "pc_neg")
    g_pos = sets(gqa, False, "pc_pos")
    cos = lambda gs, gu: tr.dot(gs, gu) / (tr.dot(gs, gs) * tr.dot(gu, gu)) ** 0.5  # noqa: E731
    c1, c2 = cos(q_neg[4], q_neg[5]), cos(g_pos[4], g_pos[5])
    C.add("reference: the conflicting sets have dot < 0 (cos %.3f), the others dot > 0 (cos %.3f)" % (c1, c2), c1 < -0.1 and c2 > 0.1)
    cases = [("pcgrad w=1, dot<0", qwen, q_neg, ["--strategy", "pcgrad"], 1.0, True),
             ("pcgrad --anchor-weight 0.5, dot<0", qwen, q_neg, ["--strategy", "pcgrad", "--anchor-weight", "0.5"], 0.5, True),
             ("pcgrad w=1, dot>0", gqa, g_pos, ["--strategy", "pcgrad"], 1.0, True),
             ("full --anchor-weight 0.3 (no pcgrad), dot<0", qwen, q_neg, ["--strategy", "full", "--anchor-weight", "0.3"], 0.3, False)]
    for i, (what, m, (sp, up, ls, lu, gs, gu), args, w, pc) in enumerate(cases):
        o = os.path.join(outs, "pc%d" % i)
        shutil.rmtree(o, ignore_errors=True)
        code, so, se = run_cast(["tune", m.dir, "--safety", sp, "--utility", up, "--out", o, "--steps", "1", "--batch", "1",
                                 "--grad-accum", str(n_s), "--clip", "0", "--lr", "1", "--eps", "1", "--train", "attn"] + args + THREADS)
        if code != 0:
            C.add(what + ": runs", False, "exit %s; %s" % (code, se.strip()[-300:]))
            continue
        g, projected = tr.combined_gradient(gs, gu, w, pc)
        base, tuned = st.load(m.weights_path), st.load(os.path.join(o, "model.safetensors"))
        step = {n: tuned[n].to(torch.float64) - base[n].to(torch.float64) for n in gs}

        def worst(grad):
            want = tr.first_adam_delta(grad, 1.0, 1.0)
            return max(float((step[n] - want[n]).abs().max()) for n in want)

        e = worst(g)
        others = [n for n in base if n not in gs and not torch.equal(tr.bits(base[n]), tr.bits(tuned[n]))]
        C.add("%s: first step == -g/(|g|+1) of the float64 combination (projected %s)" % (what, projected),
              e <= TOL_STEP and not others, "max error %.3g%s" % (e, "; changed outside attn: %s" % others if others else ""))
        log = read_log(o)
        bad = []
        if len(log) != 1:
            bad.append("%d log lines" % len(log))
        else:
            r = log[0]
            if r.get("projected") is not projected:
                bad.append("projected %r, expected %r" % (r.get("projected"), projected))
            if abs(r["loss_safety"] - ls) > TOL_LOSS * ls:
                bad.append("loss_safety %.9g vs %.9g" % (r["loss_safety"], ls))
            if "loss_utility" not in r or abs(r["loss_utility"] - lu) > TOL_LOSS * lu:
                bad.append("loss_utility %r vs %.9g" % (r.get("loss_utility"), lu))
        C.add("%s: train_log.jsonl projected, loss_safety, loss_utility" % what, not bad, "; ".join(bad))
        # negative controls: the comparison tells the formulas apart
        if i == 0:
            wrong = worst(tr.combined_gradient(gs, gu, w, False)[0])
            C.add("control: the unprojected sum is rejected for the conflicting case (error %.3g)" % wrong, wrong > 10 * TOL_STEP)
        if i == 3:
            wrong = worst(tr.combined_gradient(gs, gu, 1.0, False)[0])
            C.add("control: anchor weight 1 instead of 0.3 is rejected (error %.3g)" % wrong, wrong > 10 * TOL_STEP)


# ---------------------------------------------------------------------- invariant 3: resume


def section_resume(root, C):
    c = mc.case("resume_big", "bigger model so that a run can be interrupted", hidden=128, heads=8, kv_heads=4, inter=256,
                vocab=256, layers=4)
    m = Model(root, "resume_big", c, 4242, n_s=16, n_u=10)
    gen = torch.Generator().manual_seed(9)
    rows = []
    for i in range(16):  # longer sequences than make_set's
        T = int(torch.randint(80, 121, (1,), generator=gen))
        ids = torch.randint(0, 256, (T,), generator=gen).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * 5 + ids[5:]})
    write_jsonl(m.s_path, rows)
    args = ["--utility", m.u_path, "--anchor-weight", "0.5", "--strategy", "random", "--seed", "5", "--skip", "0.25",
            "--steps", "12", "--save-every", "2", "--batch", "2", "--grad-accum", "2", "--lr", "1e-3"]
    ref = os.path.join(root, "out", "resume_ref")
    t0 = time.time()
    code, so, se = tune(m, ref, *args)
    if code != 0:
        C.add("resume: the uninterrupted run", False, se.strip()[-300:])
        return
    print("# resume: uninterrupted run %.2f s" % (time.time() - t0))
    want = file_bytes(os.path.join(ref, "model.safetensors"))
    ref_log = {r["step"]: r for r in read_log(ref)}
    out = os.path.join(root, "out", "resume_cut")
    state = os.path.join(out, "checkpoint", "state.json")
    log_path = os.path.join(out, "train_log.jsonl")
    cmd = [os.environ["CAST"], "tune", m.dir, "--safety", m.s_path, "--out", out] + args + THREADS

    def ckpt_step():
        with open(state) as f:
            return json.load(f)["step"]

    def log_steps():
        with open(log_path) as f:
            return len([line for line in f if line.endswith("\n")])

    def interrupted(extra, probe, at_least):
        """Runs cmd+extra, SIGKILLs it as soon as probe() >= at_least.
        -> the checkpoint step left behind, or None if the run ended first."""
        p = subprocess.Popen(cmd + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = False
        deadline = time.time() + 60
        while p.poll() is None and time.time() < deadline:
            try:
                if probe() >= at_least:
                    os.kill(p.pid, signal.SIGKILL)
                    killed = True
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.001)
        if p.poll() is None and not killed:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        if not killed or os.path.exists(os.path.join(out, "cast_run.json")):
            return None  # finished before the kill landed
        try:
            return ckpt_step()
        except (OSError, ValueError, KeyError):
            return None

    # A: killed the moment a checkpoint of step >= 4 appears, resumed, killed again at the next
    #    checkpoint, resumed. B: killed once the log holds 7 lines (between two checkpoints).
    for scenario, first, second in (("A: killed as soon as a checkpoint appears", (ckpt_step, 4), (ckpt_step, 2)),
                                     ("B: killed after log line 7 (between checkpoints)", (log_steps, 7), None)):
        cuts = []
        for attempt in range(4):
            shutil.rmtree(out, ignore_errors=True)
            s1 = interrupted([], *first)
            if s1 is None or s1 < 4 or s1 >= 12:
                continue
            cuts = [s1]
            if second:
                s2 = interrupted(["--resume"], second[0], s1 + second[1]) if s1 + second[1] < 12 else None
                cuts += [s2] if s2 else []
            break
        tag = "resume %s (checkpoint steps %s)" % (scenario, cuts)
        if not cuts:
            C.add("resume %s: the run could be interrupted after a checkpoint of step >= 4" % scenario, False)
            continue
        code, so, se = run_cast(cmd[1:] + ["--resume"])
        if code != 0:
            C.add(tag + ": --resume runs", False, se.strip()[-300:])
            continue
        got = file_bytes(os.path.join(out, "model.safetensors"))
        C.add(tag + ": model.safetensors == uninterrupted bytes", got == want, "" if got == want else first_diff(got, want))
        log = read_log(out)
        steps = [r["step"] for r in log]
        same = all(r["loss_safety"] == ref_log[r["step"]]["loss_safety"] and
                   r.get("loss_utility") == ref_log[r["step"]].get("loss_utility") for r in log if r["step"] in ref_log)
        C.add(tag + ": train_log.jsonl has steps 1..12 once each, with the uninterrupted losses",
              steps == list(range(1, 13)) and same, "steps %s, losses %s" % (steps, "same" if same else "differ"))
        run = read_json(os.path.join(out, "cast_run.json"))
        C.add(tag + ": cast_run.json resumed_from_step is the last checkpoint", run.get("resumed_from_step") == cuts[-1],
              "resumed_from_step %r" % run.get("resumed_from_step"))


# ---------------------------------------------------------------------- invariant 7: errors


def section_errors(root, C, models):
    gqa, mha = models["gqa"], models["mha"]
    d = os.path.join(root, "err_data")
    os.makedirs(d, exist_ok=True)
    empty = os.path.join(d, "empty.jsonl")
    open(empty, "w").close()
    other_map = mha.write_map(random_map(mha.cfg, 3), "other_map.json")

    def inf_weight(cfg, w):
        w["model.layers.0.mlp.up_proj.weight"][3, 5] = float("inf")

    inf_model = Model(root, "inf_weights", case_dict("llama_mha"), 99, edit=inf_weight)
    common = ["--steps", "3", "--batch", "4", "--grad-accum", "1", "--lr", "1e-2"]
    cases = [
        ("--map of another model (2x4 map, 2x6 model)", gqa, ["--map", other_map, "--strategy", "cast", "--skip", "0.25"], [other_map]),
        ("--skip 1", gqa, ["--strategy", "random", "--skip", "1"], ["--skip"]),
        ("--skip -0.1", gqa, ["--strategy", "random", "--skip", "-0.1"], ["--skip"]),
        ("--skip-heads 13 of 12", gqa, ["--strategy", "random", "--skip-heads", "13"], ["13", "12"]),
        ("empty safety file", gqa, ["--strategy", "full"], [empty]),
        ("--strategy pcgrad without --utility", gqa, ["--strategy", "pcgrad"], ["--utility"]),
        ("inf in the weights (non-finite loss at step 1)", inf_model, ["--strategy", "full"], ["step 1"]),
    ]
    for i, (what, m, args, names) in enumerate(cases):
        out = os.path.join(root, "err_out", str(i))
        shutil.rmtree(out, ignore_errors=True)
        code, so, se = tune(m, out, *(args + common), safety=empty if what.startswith("empty") else None)
        ct.check_error(C, "error: %s" % what, code, se, names, out, OUTPUTS)
    # --lr 1e30 --save-every 1: step 1 blows the weights up, step 2 is non-finite
    out = os.path.join(root, "err_out", "lr")
    code, so, se = tune(gqa, out, "--strategy", "full", "--lr", "1e30", "--save-every", "1", "--steps", "5", "--batch", "4", "--grad-accum", "1")
    ck = os.path.join(out, "checkpoint")
    ct.check_error(C, "error: --lr 1e30 --save-every 1 (non-finite at step 2)", code, se, ["step 2", ck], out, OUTPUTS)
    one = os.path.join(root, "err_out", "lr_one")
    code1, _, se1 = tune(gqa, one, "--strategy", "full", "--lr", "1e30", "--steps", "1", "--batch", "4", "--grad-accum", "1")
    try:
        stj = read_json(os.path.join(ck, "state.json"))
        state = st.load(os.path.join(ck, "state.safetensors"))
        after = st.load(os.path.join(one, "model.safetensors"))
        params = {n[len("param."):]: t for n, t in state.items() if n.startswith("param.")}
        want = {n for n in after if ".self_attn." in n}
        same = set(params) == want and all(torch.equal(tr.bits(params[n]), tr.bits(after[n])) for n in want)
        C.add("--lr 1e30: DIR/checkpoint holds step 1 (state.json step 1, param.* == the weights after one step)",
              stj.get("step") == 1 and same and code1 == 0, "state.json %s, params %s" % (stj, "same" if same else "differ"))
    except (OSError, ValueError, KeyError) as e:
        C.add("--lr 1e30: DIR/checkpoint holds step 1", False, "%s: %s" % (type(e).__name__, e))


# ------------------------------------------------------------------------------------ main


def make_models(root):
    return {"gqa": Model(root, "llama_gqa_k2", case_dict("llama_gqa_k2"), 101),
            "qwen": Model(root, "qwen2_bias", case_dict("qwen2_bias"), 102),
            "mha": Model(root, "llama_mha", case_dict("llama_mha"), 103),
            "bf16": Model(root, "llama_bf16", case_dict("llama_bf16"), 104, dtype=torch.bfloat16)}


def main():
    torch.set_num_threads(1)
    C, root = ct.begin("tune", "cast_tune_")
    if root is None:
        return C.finish()
    t0 = time.time()
    models = ct.guarded(C, "fixtures", make_models, root)
    if models:
        for section in (section_masks, section_delta, section_load, section_pcgrad, section_resume, section_errors):
            args = (root, C) if section is section_resume else (root, C, models)
            ct.guarded(C, "%s completed" % section.__name__, section, *args)
            print("# %s done at %.1f s" % (section.__name__, time.time() - t0))
    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

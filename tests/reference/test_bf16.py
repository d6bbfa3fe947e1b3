#!/usr/bin/python3
"""Reference test: bf16 compute against the float64 PyTorch reference and against f32 compute.

bf16 compute rounds every product's inputs and weights to bf16 and accumulates in f32
(tensor/linear.h). On a CPU with AVX512-BF16 or AMX oneDNN computes it; elsewhere
CAST_BF16_EMULATE=1 gives the same numbers from f32 instructions, which is how this
test runs on any machine (it says which).

Checks (the accuracy contract of docs/scale.md):
  1. every reference case (make_cases.CASES, 9 families and variants): the bf16 loss of the
     case's batch within 1 % of the float64 reference loss;
  2. conflict maps of three small models, bf16 vs f32 compute: every head's cos within 0.05;
     FS (|dL_u/dxi|) within 5 % of the largest FS for every head (the map's FS scale), and within
     5 % relative for the heads above half the largest (smaller ones are sums whose terms
     cancel, and carry the rounding of terms larger than themselves);
  3. the shipped organism: the ranking of its conflict map under bf16 vs f32 compute, Spearman
     and the overlap of the top 5 % (printed; Spearman >= 0.9 asserted).
Also a negative control: a loss moved by 2 % fails check 1's comparison.

Environment (set by ctest): CAST (the cast binary), CAST_TEST_TMP, CAST_SOURCE_DIR.
Ends with "N passed, N failed"; exit 1 on any failure.
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
import make_cases  # noqa: E402

CAST = os.environ.get("CAST") or os.path.join(os.environ.get("CAST_BUILD_DIR", "build"), "cast")
SRC = os.environ.get("CAST_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
TMP = os.path.join(os.environ.get("CAST_TEST_TMP", "/tmp"), "bf16")
ENV = dict(os.environ, CAST_BF16_EMULATE="1", OMP_NUM_THREADS="2")

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)


def cast_json(*args):
    out = subprocess.run([CAST, *args], env=ENV, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("cast %s: %s" % (" ".join(args), out.stderr.strip()))
    return json.loads(out.stdout)


def within(a, ref, rel):
    return abs(a - ref) <= rel * abs(ref)


def spearman(a, b):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):  # average ranks of ties
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den > 0 else 1.0


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    info = cast_json("info", os.path.join(SRC, "organism", "base"), "--json")
    engine = "oneDNN (bf16 instructions: %s)" % info["cpu_bf16"] if info["cpu_bf16"] != "none" else "emulated (no bf16 instructions here)"
    print("bf16 products: " + engine)

    # 1. losses against float64
    cases = os.path.join(TMP, "cases")
    subprocess.run([sys.executable, os.path.join(HERE, "make_cases.py"), cases], check=True, capture_output=True, timeout=600)
    worst = 0.0
    for c in make_cases.CASES:
        d = os.path.join(cases, c["name"])
        ref = ct.read_json(os.path.join(d, "expected.json"))["loss"]
        got = cast_json("score", d, "--data", os.path.join(d, "batch.jsonl"), "--compute", "bf16", "--json")
        check(got["compute"] == "bf16", "%s: computed in %s" % (c["name"], got["compute"]))
        rel = abs(got["loss"] - ref) / ref
        worst = max(worst, rel)
        check(rel < 0.01, "%s: bf16 loss %.6f vs float64 %.6f (%.3f %%)" % (c["name"], got["loss"], ref, 100 * rel))
    print("losses: %d cases, worst |bf16 - float64| / float64 = %.3f %%" % (len(make_cases.CASES), 100 * worst))
    check(not within(1.02 * ref, ref, 0.01), "negative control: a 2 % error must fail the 1 % bound")

    # 2. conflict maps, bf16 vs f32, on three of the cases (two sets cut from random token sequences)
    import random
    rng = random.Random(5)
    for name in ("llama_gqa_k2", "qwen2_bias", "phi3_fused"):
        d = os.path.join(cases, name)
        V = ct.read_json(os.path.join(d, "config.json"))["vocab_size"]
        sets = {}
        for s in ("safety", "utility"):
            p = os.path.join(TMP, "%s_%s.jsonl" % (name, s))
            with open(p, "w") as f:
                for _ in range(8):
                    n = rng.randint(12, 24)
                    ids = [rng.randrange(V) for _ in range(n)]
                    f.write(json.dumps({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2:]}) + "\n")
            sets[s] = p
        maps = {}
        for mode in ("f32", "bf16"):
            maps[mode] = cast_json("diagnose", d, "--safety", sets["safety"], "--utility", sets["utility"], "--compute", mode,
                                   "--null-permutations", "0", "--json")
        hf, hb = maps["f32"]["heads"], maps["bf16"]["heads"]
        dcos = max(abs(a["cos"] - b["cos"]) for a, b in zip(hf, hb))
        # FS = |sum over examples and tokens of dL/dxi|: a signed sum whose terms cancel, so a head's FS far
        # below the largest carries the rounding of terms far larger than itself. The map uses FS scaled
        # by its largest value (min-max); the contract is on that scale: |FS_bf16 - FS_f32| <= 5 % of max FS.
        fmax = max(a["fs"] for a in hf)
        dfs = max(abs(b["fs"] - a["fs"]) for a, b in zip(hf, hb)) / fmax
        big = [abs(b["fs"] - a["fs"]) / a["fs"] for a, b in zip(hf, hb) if a["fs"] >= 0.5 * fmax]
        check(dcos <= 0.05, "%s: cos differs by %.4f between bf16 and f32 compute" % (name, dcos))
        check(dfs <= 0.05, "%s: FS differs by %.2f %% of the largest FS between bf16 and f32 compute" % (name, 100 * dfs))
        check(max(big) <= 0.05, "%s: FS of heads above half the largest differs by %.2f %%" % (name, 100 * max(big)))
        print("%-13s heads %2d: max |cos_bf16 - cos_f32| = %.4f; max |FS_bf16 - FS_f32| = %.3f %% of the largest FS, "
              "%.3f %% relative on the %d heads above half of it" % (name, len(hf), dcos, 100 * dfs, 100 * max(big), len(big)))

    # 3. the organism: ranking of the conflict map
    data = os.path.join(TMP, "organism")
    subprocess.run([CAST, "organism", "data", "--out", data], env=ENV, check=True, capture_output=True, timeout=600)
    base = os.path.join(SRC, "organism", "base")
    maps = {}
    for mode in ("f32", "bf16"):
        maps[mode] = cast_json("diagnose", base, "--safety", os.path.join(data, "diag_safety.jsonl"), "--utility",
                               os.path.join(data, "diag_utility.jsonl"), "--first", "64", "--compute", mode,
                               "--null-permutations", "0", "--json")
    sf = [h["score"] for h in maps["f32"]["heads"]]
    sb = [h["score"] for h in maps["bf16"]["heads"]]
    rho = spearman(sf, sb)
    k = max(1, round(0.05 * len(sf)))
    top = lambda v: set(sorted(range(len(v)), key=lambda i: -v[i])[:k])  # noqa: E731
    overlap = len(top(sf) & top(sb)) / k
    dcos = max(abs(a["cos"] - b["cos"]) for a, b in zip(maps["f32"]["heads"], maps["bf16"]["heads"]))
    ff = [h["fs"] for h in maps["f32"]["heads"]]
    fb = [h["fs"] for h in maps["bf16"]["heads"]]
    print("organism FS: max |FS_bf16 - FS_f32| = %.3f %% of the largest" % (100 * max(abs(a - b) for a, b in zip(ff, fb)) / max(ff)))
    print("organism (%d heads): score Spearman bf16 vs f32 = %.4f, top-5 %% (%d heads) overlap = %.2f, max |dcos| = %.4f"
          % (len(sf), rho, k, overlap, dcos))
    check(rho >= 0.9, "organism: Spearman %.3f" % rho)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Reference test: the C engine against the float64 PyTorch reference.

Environment (set by ctest):
  CAST_TEST_TMP      scratch folder (created); the cases are written to $CAST_TEST_TMP/cases
  CAST_CHECK_MODEL   path of the C test binary `check_model CASEDIR`, which loads the model,
                     runs batch.jsonl, compares with expected.safetensors / expected.json and
                     exits 0 on a match, non-zero otherwise
  CAST_SOURCE_DIR    repository root (optional; only used to locate this folder)

Besides the cases of make_cases.CASES, negative controls copy one case with one expected
value corrupted (a logit, a gradient, the gate gradient, the loss, a greedy id): check_model must
reject each, which shows that it compares that quantity at all.

Prints each check's result and ends with "N passed, N failed" (N = cases + controls); exit 1 if
any failed, if no case exists, or if CAST_CHECK_MODEL is missing (a failure, never a skip).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_cases  # noqa: E402
import safetensors_io as st  # noqa: E402

TIMEOUT_S = 300
CONTROL_BASE = "llama_attn_bias"  # the case the negative controls are copied from
N_CONTROLS = 5


def make_controls(outdir):
    """Copies of CONTROL_BASE with one expected value wrong -> [(name, folder)]."""
    src = os.path.join(outdir, CONTROL_BASE)
    exp = st.load(os.path.join(src, "expected.safetensors"))
    meta = json.load(open(os.path.join(src, "expected.json")))
    L = len(exp["gate_grad"])
    grad_name = "grad.model.layers.%d.self_attn.q_proj.weight" % (L - 1)

    def bump(t):  # move one element by 10% of the tensor's largest magnitude
        t = t.clone()
        t.view(-1)[t.numel() // 2] += 0.1 * float(t.abs().max())
        return t

    edits = {
        "control_logits": ("logits", None),
        "control_grad": (grad_name, None),
        "control_gate_grad": ("gate_grad", None),
        "control_loss": (None, ("loss", meta["loss"] + 0.01)),
        "control_greedy": (None, ("greedy", [(meta["greedy"][0] + 1) % exp["logits"].shape[1]] + meta["greedy"][1:])),
    }
    out = []
    for name, (tensor, field) in edits.items():
        dst = os.path.join(outdir, name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        if tensor is not None:
            e = dict(exp)
            e[tensor] = bump(e[tensor])
            st.save(os.path.join(dst, "expected.safetensors"), e)
        else:
            m = dict(meta)
            m[field[0]] = field[1]
            with open(os.path.join(dst, "expected.json"), "w") as f:
                json.dump(m, f, indent=2)
        out.append((name, dst))
    return out


def run_check(check, folder):
    """-> (exit status or a reason string, combined output)."""
    try:
        r = subprocess.run([check, folder], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=TIMEOUT_S, universal_newlines=True)
    except subprocess.TimeoutExpired:
        return "timeout after %ds" % TIMEOUT_S, ""
    code = r.returncode if r.returncode >= 0 else "signal %d" % -r.returncode
    return code, r.stdout


def main():
    tmp = os.environ.get("CAST_TEST_TMP") or tempfile.mkdtemp(prefix="cast_ref_")
    outdir = os.path.join(tmp, "cases")
    os.makedirs(outdir, exist_ok=True)

    cases = [c["name"] for c in make_cases.CASES]
    assert cases, "make_cases.CASES is empty"
    # Writing the cases also runs the reference's self-checks (finite differences, decode).
    rc = make_cases.main(["make_cases.py", outdir])
    if rc != 0:
        print("test_model: make_cases.py failed (%d)" % rc)
        print("0 passed, %d failed" % (len(cases) + N_CONTROLS))
        return 1

    check = os.environ.get("CAST_CHECK_MODEL", "")
    if not check or not os.access(check, os.X_OK):
        print("test_model: FAIL: CAST_CHECK_MODEL is %s; it must name the built check_model binary"
              % ("not set" if not check else "not an executable file: " + check))
        print("0 passed, %d failed" % (len(cases) + N_CONTROLS))
        return 1

    checks = [(name, os.path.join(outdir, name), True) for name in cases]
    checks += [(name, folder, False) for name, folder in make_controls(outdir)]
    passed, failed = 0, []
    for name, folder, should_match in checks:
        code, out = run_check(check, folder)
        if should_match:
            ok = code == 0
            why = "" if ok else " (exit %s)" % code
        else:  # a negative control: check_model must exit 1-style (non-zero, not a crash)
            ok = isinstance(code, int) and code != 0
            why = " (rejected the corrupted expectation, exit %s)" % code if ok else \
                  " (exit %s: expected a plain non-zero exit for a corrupted expectation)" % code
        print("%s %s%s" % ("PASS" if ok else "FAIL", name, why))
        for line in out.rstrip().splitlines():
            print("    " + line)
        if ok:
            passed += 1
        else:
            failed.append(name)
    if failed:
        print("failed cases: " + ", ".join(failed))
    print("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

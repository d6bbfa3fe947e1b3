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

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
import make_cases  # noqa: E402
import safetensors_io as st  # noqa: E402

TIMEOUT_S = 300
CONTROL_BASE = "llama_attn_bias"  # the case the negative controls are copied from
N_CONTROLS = 5


def make_controls(outdir):
    """Copies of CONTROL_BASE with one expected value wrong -> [(name, folder)]."""
    src = os.path.join(outdir, CONTROL_BASE)
    exp = st.load(os.path.join(src, "expected.safetensors"))
    meta = ct.read_json(os.path.join(src, "expected.json"))
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
            ct.write_json(os.path.join(dst, "expected.json"), m)
        out.append((name, dst))
    return out


def main():
    C = ct.Checks()
    outdir = ct.scratch("cases", "cast_ref_")
    cases = [c["name"] for c in make_cases.CASES]
    assert cases, "make_cases.CASES is empty"
    # Writing the cases also runs the reference's self-checks (finite differences, decode).
    rc = make_cases.main(["make_cases.py", outdir])
    if rc != 0:
        C.add("make_cases.py writes the cases", False, "exit %d" % rc)
        return C.finish()
    check = ct.executable(C, "CAST_CHECK_MODEL", "check_model binary")
    if not check:
        return C.finish()

    checks = [(name, os.path.join(outdir, name), True) for name in cases]
    checks += [(name, folder, False) for name, folder in make_controls(outdir)]
    for name, folder, should_match in checks:
        code, out, _ = ct.run([check, folder], TIMEOUT_S, merge=True)
        if should_match:
            ok = code == 0
            why = "" if ok else "exit %s" % code
        else:  # a negative control: check_model must exit 1-style (non-zero, not a crash)
            ok = isinstance(code, int) and code != 0
            why = "rejected the corrupted expectation, exit %s" % code if ok else \
                  "exit %s: expected a plain non-zero exit for a corrupted expectation" % code
        C.add(name, ok, why)
        for line in out.rstrip().splitlines():
            print("    " + line)
    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

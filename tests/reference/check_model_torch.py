#!/usr/bin/python3
"""check_model_torch.py CASEDIR: a float32 PyTorch stand-in for the C `check_model` binary.

It does what check_model is expected to do, so that test_model.py can be exercised without the
C engine (CAST_CHECK_MODEL=tests/reference/check_model_torch.py), and it spells out the
comparisons:
  - load config.json and the weights (single file or index + shards), upcast to float32;
  - run every sequence of batch.jsonl on its own; loss = sum of CE over scored positions of the
    batch / their number (position t predicts labels[t+1], -100 skipped);
  - backward through the loss with per-head gates xi = 1 ([L, H]) for gate_grad;
  - greedy-decode expected.json's "max_new" tokens after "prompt" (no BOS, no EOS stop).
Tolerances, each against expected.safetensors / expected.json:
  logits       max|a - e| <= 1e-4 * max|e|
  loss         |a - e|    <= 1e-5 * max(1, |e|)
  grad.<name>  max|a - e| <= 1e-3 * max|e|   and cos(a, e) >= 0.9999  (for every parameter)
  gate_grad    same as the gradients
  greedy       identical ids
Prints one line per failed check and "N passed, N failed"; exit 0 iff nothing failed.
"""

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
from torch_llama import CausalLM, Config, batch_loss, greedy  # noqa: E402

TOL_LOGITS, TOL_LOSS, TOL_GRAD, MIN_COS = 1e-4, 1e-5, 1e-3, 0.9999


def main(folder):
    torch.set_num_threads(1)
    cfg = Config.from_hf(json.load(open(os.path.join(folder, "config.json"))))
    params = {n: t.float().requires_grad_(True) for n, t in st.load_folder(folder).items()}
    gates = torch.ones(cfg.layers, cfg.heads, requires_grad=True)
    batch = [json.loads(l) for l in open(os.path.join(folder, "batch.jsonl"))]
    exp = st.load(os.path.join(folder, "expected.safetensors"))
    meta = json.load(open(os.path.join(folder, "expected.json")))

    model = CausalLM(cfg, params)
    loss, logits = batch_loss(model, batch, gates)
    loss.backward()

    results = []  # (name, ok, detail)

    def tensor_check(name, got, want, tol, cos=False):
        got, want = got.detach().double().reshape(-1), want.double().reshape(-1)
        if got.shape != want.shape:
            results.append((name, False, "shape %s vs %s" % (list(got.shape), list(want.shape))))
            return
        scale = float(want.abs().max())
        err = float((got - want).abs().max())
        ok = err <= tol * scale
        detail = "max err %.3g (scale %.3g)" % (err, scale)
        if cos:
            c = float(torch.dot(got, want) / (got.norm() * want.norm() + 1e-30))
            ok = ok and c >= MIN_COS
            detail += " cos %.6f" % c
        results.append((name, ok, detail))

    tensor_check("logits", torch.cat(logits, 0), exp["logits"], TOL_LOGITS)
    e = meta["loss"]
    results.append(("loss", abs(float(loss) - e) <= TOL_LOSS * max(1.0, abs(e)), "%.8f vs %.8f" % (float(loss), e)))
    for n, p in params.items():
        tensor_check("grad." + n, p.grad, exp["grad." + n], TOL_GRAD, cos=True)
    missing = [k[5:] for k in exp if k.startswith("grad.") and k[5:] not in params]
    results.append(("all gradients present", not missing, ", ".join(missing)))
    tensor_check("gate_grad", gates.grad, exp["gate_grad"], TOL_GRAD, cos=True)
    out, _ = greedy(model, meta["prompt"], meta["max_new"])
    results.append(("greedy", out == meta["greedy"], "%s vs %s" % (out, meta["greedy"])))

    bad = [r for r in results if not r[1]]
    for name, _, detail in bad:
        print("mismatch %s: %s" % (name, detail))
    print("%d passed, %d failed" % (len(results) - len(bad), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: check_model_torch.py CASEDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

#!/usr/bin/python3
"""Shared helpers of the Python tests (tests/reference/test_*.py, tests/cli/make_*.py and the
Python snippets of the shell tests, which find this folder on PYTHONPATH through tests/cli/lib.sh).

- checks: Checks (PASS/FAIL lines, "N passed, N failed"), guarded (a crash is a failed check),
  executable (an environment variable naming a binary), scratch (a fresh folder under CAST_TEST_TMP),
  begin (both, for a test of $CAST);
- running: run, run_cast (exit status or "timeout ..." / "signal N", stdout, stderr),
  check_error (a refused run: exit 1, one "cast: " line naming what it should, no output);
- files: strict_json, read_json, read_jsonl, write_json, write_jsonl, file_bytes, first_diff;
- fixtures: case_dict, random_model, save_model, write_model (make_cases' models),
  make_set / Fixture (a model folder with a safety and a utility set of pre-tokenized sequences),
  byte_symbols / byte_level_tokenizer (tokenizer.json of a byte-level BPE without merges);
- comparisons, also from the shell:
    cast_test.py json-close A B TOL [KEY...]   every number of two JSON files within TOL relative
                                               (in a list of objects: to the field's largest
                                               magnitude in the list; plus 1e-12 absolute),
                                               every other value equal; keys KEY skipped
    cast_test.py weights-close A B TOL [BASE]  per tensor of two .safetensors files, max|a-b| <=
                                               TOL max|a|; with BASE also that some tensor moved
                                               from it (so that the check can fail)
  exit 0 when they hold, 1 (with the differences on stdout) when not.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cases as mc  # noqa: E402
import safetensors_io as st  # noqa: E402
from torch_llama import Config  # noqa: E402

TIMEOUT_S = 60  # per cast run

# ---------------------------------------------------------------------------------- checks


class Checks:
    """One line per check ("PASS name" or "FAIL name: detail"), a tally, and the worst error /
    tolerance ratio seen per quantity (for the report of a reference test)."""

    def __init__(self):
        self.passed, self.failed = 0, []
        self.worst = {}  # quantity -> worst error / tolerance seen over all runs

    def add(self, name, ok, detail=""):
        print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""))
        sys.stdout.flush()
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)

    def note(self, what, ratio):
        self.worst[what] = max(self.worst.get(what, 0.0), ratio)

    def finish(self):
        """Prints the failed checks' names and "N passed, N failed"; -> the exit status."""
        if self.failed:
            print("failed: " + ", ".join(self.failed))
        print("%d passed, %d failed" % (self.passed, len(self.failed)))
        return 1 if self.failed else 0


def guarded(C, name, fn, *args):
    """fn(*args); a crash of the test itself is the failed check `name`, never a skip.
    -> fn's result, None after a crash."""
    try:
        return fn(*args)
    except Exception as e:
        traceback.print_exc()
        C.add(name, False, "%s: %s" % (type(e).__name__, e))
        return None


def executable(C, var, what):
    """The path in environment variable var; None, and a failed check, unless it names an
    executable file."""
    path = os.environ.get(var, "")
    if path and os.access(path, os.X_OK):
        return path
    C.add("%s names the %s" % (var, what), False, "%s is %r" % (var, path))
    return None


def begin(sub, prefix):
    """The start of a test of the cast binary: (Checks, scratch(sub, prefix)), or (Checks, None)
    with a failed check when $CAST does not name an executable."""
    C = Checks()
    return C, (scratch(sub, prefix) if executable(C, "CAST", "cast binary") else None)


def scratch(sub, prefix):
    """An empty folder CAST_TEST_TMP/sub (without CAST_TEST_TMP: sub of a new temporary
    folder named prefix...), absolute."""
    root = os.path.join(os.path.abspath(os.environ.get("CAST_TEST_TMP") or tempfile.mkdtemp(prefix=prefix)), sub)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    return root


# --------------------------------------------------------------------------------- running


def run(argv, timeout=TIMEOUT_S, merge=False):
    """-> (exit status, or a reason string for a timeout or a signal; stdout; stderr). merge:
    stderr goes into stdout (stderr then "")."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                           timeout=timeout, universal_newlines=True, errors="replace")
    except subprocess.TimeoutExpired:
        return "timeout after %ds" % timeout, "", ""
    return (r.returncode if r.returncode >= 0 else "signal %d" % -r.returncode), r.stdout, r.stderr or ""


def run_cast(args, timeout=TIMEOUT_S):
    """run() of the cast binary named by $CAST."""
    return run([os.environ["CAST"]] + args, timeout)


def check_error(C, name, code, stderr, names, out, outputs):
    """The check `name` of a refused run: exit 1, stderr one line starting "cast: " that holds
    every string of names, and no file in folder out whose name starts with one of outputs."""
    lines = stderr.splitlines()
    bad = []
    if code != 1:
        bad.append("exit %s" % code)
    if len(lines) != 1 or not lines[0].startswith("cast: "):
        bad.append("stderr %r (want one line starting with 'cast: ')" % stderr[:400])
    elif not all(n in lines[0] for n in names):
        bad.append("stderr %r does not name %s" % (lines[0], " and ".join(names)))
    left = sorted(f for f in (os.listdir(out) if os.path.isdir(out) else []) if f.startswith(tuple(outputs)))
    if left:
        bad.append("%s holds %s" % (out, left))
    C.add(name, not bad, "; ".join(bad))


# ----------------------------------------------------------------------------------- files


def strict_json(text):
    """json.loads that refuses NaN and Infinity (cast writes strict JSON)."""
    def bad(tok):
        raise ValueError("non-standard JSON token %s" % tok)
    return json.loads(text, parse_constant=bad)


def read_json(path):
    with open(path) as f:
        return strict_json(f.read())


def read_jsonl(path):
    """The objects of a JSONL file (strict), blank lines skipped."""
    with open(path) as f:
        return [strict_json(line) for line in f if line.strip()]


def write_json(path, obj, indent=2, **kw):
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, **kw)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def first_diff(a, b):
    """Where two byte strings differ, in words."""
    if len(a) != len(b):
        return "sizes %d and %d" % (len(a), len(b))
    i = next(i for i in range(len(a)) if a[i] != b[i])
    return "first difference at byte %d of %d" % (i, len(a))


# -------------------------------------------------------------------------------- fixtures


def case_dict(name):
    """make_cases' case of that name."""
    return next(c for c in mc.CASES if c["name"] == name)


def random_model(c, seed, bos=0, eos=1, edit=None):
    """make_cases case c with random float32 weights drawn from seed; edit(cfg, weights) may
    change them. -> (config.json dict, torch_llama Config, {name: tensor})."""
    config = mc.hf_config(c, bos, eos)
    cfg = Config.from_hf(config)
    weights = mc.init_weights(cfg, torch.Generator().manual_seed(seed))
    if edit:
        edit(cfg, weights)
    return config, cfg, weights


def save_model(folder, config, weights, shards=1):
    """folder/config.json and the weights (model.safetensors, or that many shards and an index)."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "config.json"), config)
    mc.write_weights(folder, weights, shards)


def write_model(folder, c, seed, edit=None):
    """config.json + model.safetensors of make_cases case c with weights from seed; edit(cfg,
    weights) may change the weights (or their dtype) first. -> (cfg, float64 params)."""
    config, cfg, weights = random_model(c, seed, edit=edit)
    save_model(folder, config, weights)
    return cfg, {n: t.to(torch.float64) for n, t in weights.items()}


def make_set(gen, vocab, n):
    """n sequences of 8-20 random ids; labels -100 on a 1-4 token prompt and on one later
    position of every third sequence."""
    out = []
    for i in range(n):
        T = int(torch.randint(8, 21, (1,), generator=gen))
        ids = torch.randint(0, vocab, (T,), generator=gen).tolist()
        p = 1 + int(torch.randint(0, 4, (1,), generator=gen))
        labels = [-100] * p + ids[p:]
        if i % 3 == 1:
            labels[p + 2] = -100
        out.append({"input_ids": ids, "labels": labels})
    return out


class Fixture:
    """A model folder (write_model) with a safety and a utility set (make_set, drawn from seed + 1)
    in safety.jsonl and utility.jsonl beside the weights."""

    def __init__(self, folder, case, seed, edit=None, n_s=7, n_u=8):
        self.dir, self.case = folder, case
        self.cfg, self.params = write_model(folder, case, seed, edit)
        gen = torch.Generator().manual_seed(seed + 1)
        self.safety, self.utility = make_set(gen, self.cfg.vocab, n_s), make_set(gen, self.cfg.vocab, n_u)
        self.s_path, self.u_path = os.path.join(folder, "safety.jsonl"), os.path.join(folder, "utility.jsonl")
        write_jsonl(self.s_path, self.safety)
        write_jsonl(self.u_path, self.utility)
        self.weights_path = os.path.join(folder, "model.safetensors")


def byte_symbols():
    """GPT-2's byte -> printable unicode symbol table (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_level_tokenizer(byte_id, specials):
    """tokenizer.json (a dict) of a byte-level BPE without merges: one token per byte, byte b ->
    id byte_id(b); specials are added tokens 256, 257, ... (not in the BPE vocab)."""
    sym = byte_symbols()
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, s in enumerate(specials)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": level,
        "post_processor": level,
        "decoder": level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {sym[b]: byte_id(b) for b in range(256)}, "merges": []},
    }


# ----------------------------------------------------------------------------- comparisons


def json_differences(a, b, tol, ignore=()):
    """[(path, ...)] where two parsed JSON values differ: numbers by more than tol relative
    (plus 1e-12 absolute), anything else at all; keys in ignore skipped. In a list of objects
    (a map's heads, a run list) a field is relative to its largest magnitude in the list, as
    weights-close is per tensor: a near-zero cosine is a difference of large sums, and its own
    relative error says nothing about the computation."""
    bad = []

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def walk(x, y, path, scale=0.0, field_scales=None):
        if isinstance(x, dict) and isinstance(y, dict):
            if set(x) != set(y):
                bad.append((path, "keys", sorted(set(x) ^ set(y))))
            for k in x:
                if k not in ignore and k in y:
                    walk(x[k], y[k], path + "." + k, (field_scales or {}).get(k, 0.0))
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                bad.append((path, "length", len(x), len(y)))
            fields = {}
            for e in x + y:
                if isinstance(e, dict):
                    for k, v in e.items():
                        if is_num(v):
                            fields[k] = max(fields.get(k, 0.0), abs(v))
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, "%s[%d]" % (path, i), 0.0, fields)
        elif is_num(x) and is_num(y):
            if abs(x - y) > tol * max(abs(x), abs(y), scale) + 1e-12:
                bad.append((path, x, y))
        elif x != y:
            bad.append((path, x, y))

    walk(a, b, "")
    return bad


def weights_difference(a, b, base=None):
    """Two {name: tensor} with the same names -> (worst over tensors of max|a-b| / max|a|,
    number of tensors of a that differ from base's (None without base))."""
    assert set(a) == set(b), "different tensors"
    worst, moved = 0.0, 0
    for k in a:
        x, y = a[k].to(torch.float64), b[k].to(torch.float64)
        worst = max(worst, float((x - y).abs().max()) / max(float(x.abs().max()), 1e-30))
        if base is not None:
            moved += bool(float((x - base[k].to(torch.float64)).abs().max()) > 0)
    return worst, (moved if base is not None else None)


def main(argv):
    if len(argv) >= 5 and argv[1] == "json-close":
        with open(argv[2]) as f, open(argv[3]) as g:
            bad = json_differences(json.load(f), json.load(g), float(argv[4]), set(argv[5:]))
        if bad:
            print(len(bad), "differences, first:", bad[:3])
        return 1 if bad else 0
    if len(argv) in (5, 6) and argv[1] == "weights-close":
        base = st.load(argv[5]) if len(argv) > 5 else None
        worst, moved = weights_difference(st.load(argv[2]), st.load(argv[3]), base)
        print("worst relative difference %.3g" % worst)
        if worst > float(argv[4]):
            return 1
        if moved == 0:
            print("nothing trained")
            return 1
        return 0
    print("usage: cast_test.py json-close A B TOL [KEY...] | weights-close A B TOL [BASE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Broken model folders must be refused cleanly by `cast info DIR`.

Environment (set by ctest): CAST (path of the cast binary), CAST_TEST_TMP (scratch folder).

Each broken case starts from a small valid Llama folder (config.json, model.safetensors or
3 shards + index, a byte-level tokenizer.json, tokenizer_config.json) and breaks one thing.
Expected of `cast info DIR` for every broken case:
  - exit status exactly 1 (not 0, not 2, not a signal or a sanitizer abort),
  - stderr exactly one line, starting with "cast: ",
  - that line contains the path of the offending file: DIR + "/" + file name, DIR being the
    absolute path passed on the command line (where two files can be blamed, either is accepted).
Two unbroken controls (single file, sharded) must exit 0.
Prints one line per case and ends with "N passed, N failed".
"""

import copy
import json
import os
import shutil
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
import safetensors_io as st  # noqa: E402
from cast_test import write_json  # noqa: E402
from make_cases import BASE, init_weights  # noqa: E402
from torch_llama import Config  # noqa: E402

SHARDS = ["model-%05d-of-00003.safetensors" % i for i in (1, 2, 3)]
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
CONFIG = "config.json"

# The valid model: Llama, untied (lm_head stored), GQA; vocab = 256 bytes + 3 specials.
MODEL = dict(copy.deepcopy(BASE), vocab=259, hidden=16, inter=32, heads=2, kv_heads=1, lengths=[])
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# ------------------------------------------------------------------------- valid folder


def tokenizer_files():
    """tokenizer.json: token id = byte, the specials in the BPE vocab too; tokenizer_config.json."""
    tok = ct.byte_level_tokenizer(lambda b: b, SPECIALS)
    tok["model"]["vocab"].update({s: 256 + i for i, s in enumerate(SPECIALS)})
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 256,
        "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    }
    return tok, tcfg


def valid_model():
    """-> (config dict, {name: float32 tensor})."""
    config, _, weights = ct.random_model(MODEL, 1234, None, 258)
    return config, weights


def write_folder(folder, config, weights, sharded):
    ct.save_model(folder, config, weights, len(SHARDS) if sharded else 1)
    tok, tcfg = tokenizer_files()
    write_json(os.path.join(folder, "tokenizer.json"), tok)
    write_json(os.path.join(folder, "tokenizer_config.json"), tcfg)


# ------------------------------------------------------------------- ways to break it
# Helpers that rewrite a safetensors file at the level of its header.


def tensor_order(header):
    """Tensor names sorted by their data offset."""
    return sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def edit_header(path, fn):
    header, data = st.read_raw(path)
    data = fn(header, data)
    st.save_raw(path, header, data)


def brk_remove(name):
    def f(d, config, weights):
        os.remove(os.path.join(d, name))
    return f


def brk_config(change):
    def f(d, config, weights):
        c = copy.deepcopy(config)
        change(c)
        write_json(os.path.join(d, CONFIG), c)
    return f


def brk_write(name, content):
    def f(d, config, weights):
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(content)
    return f


def brk_header_len_past_eof(d, config, weights):
    path = os.path.join(d, SINGLE)
    with open(path, "r+b") as fh:
        size = os.path.getsize(path)
        fh.write(struct.pack("<Q", size + 1000))


def brk_header_not_json(d, config, weights):
    path = os.path.join(d, SINGLE)
    header, data = st.read_raw(path)
    text = json.dumps(header).encode()[:-7] + b"!garbage"  # cut the JSON, add non-JSON
    text += b" " * ((-(8 + len(text))) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + data)


def brk_overlap(d, config, weights):
    def f(h, data):
        second = tensor_order(h)[1]
        b, e = h[second]["data_offsets"]
        h[second]["data_offsets"] = [b - 4, e - 4]  # overlaps the first tensor by 4 bytes
        return data
    edit_header(os.path.join(d, SINGLE), f)


def brk_outside(d, config, weights):
    def f(h, data):
        last = tensor_order(h)[-1]
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b + 4096, e + 4096]  # same span, past the end of the data
        return data
    edit_header(os.path.join(d, SINGLE), f)


def brk_span(d, config, weights):
    def f(h, data):
        last = tensor_order(h)[-1]
        b, e = h[last]["data_offsets"]
        h[last]["data_offsets"] = [b, e - 4]  # span one element short of shape x dtype size
        return data[:-4]
    edit_header(os.path.join(d, SINGLE), f)


def brk_weights(change):
    """Rewrite model.safetensors from a modified copy of the weights dict."""
    def f(d, config, weights):
        w = dict(weights)
        change(w)
        st.save(os.path.join(d, SINGLE), w)
    return f


def k_transposed(w):
    n = "model.layers.1.self_attn.k_proj.weight"
    w[n] = w[n].t().contiguous()  # [D, K*d] instead of [K*d, D]; same byte count


def as_dtype(dt):
    def change(w):
        n = "model.layers.0.self_attn.q_proj.weight"
        w[n] = (w[n] * 100).to(dt)
    return change


def drop_up(w):
    del w["model.layers.1.mlp.up_proj.weight"]


def brk_truncate(d, config, weights):
    path = os.path.join(d, SINGLE)
    header, data = st.read_raw(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - len(data) // 2)  # cut in the middle of the data section


def brk_duplicate(d, config, weights):
    """Shard 2 also carries a tensor that the index (and shard 1) already has."""
    index = json.load(open(os.path.join(d, INDEX)))
    in_first = [n for n, f in index["weight_map"].items() if f == SHARDS[0]]
    path = os.path.join(d, SHARDS[1])
    part = st.load(path)
    part[in_first[-1]] = weights[in_first[-1]]
    st.save(path, part)


def brk_kv_heads(d, config, weights):
    """num_key_value_heads 3 does not divide num_attention_heads 2; the weights are written
    with the shapes that config implies, so the config is the only thing wrong."""
    c = copy.deepcopy(config)
    c.update(num_attention_heads=2, num_key_value_heads=3)
    write_json(os.path.join(d, CONFIG), c)
    st.save(os.path.join(d, SINGLE), init_weights(Config.from_hf(c), torch.Generator().manual_seed(7)))


def brk_index_json(d, config, weights):
    with open(os.path.join(d, INDEX), "a") as fh:
        fh.write("}, {\n")


def blamed(*names):
    return list(names)


# (name, sharded base?, break function, files that may be blamed; None = a control, exit 0)
CASES = [
    ("control_single", False, None, None),
    ("control_sharded", True, None, None),
    ("missing_config", False, brk_remove(CONFIG), blamed(CONFIG)),
    ("missing_weights", False, brk_remove(SINGLE), blamed(SINGLE, INDEX)),
    ("unknown_architecture", False, brk_config(lambda c: c.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")), blamed(CONFIG)),
    ("header_length_past_eof", False, brk_header_len_past_eof, blamed(SINGLE)),
    ("header_not_json", False, brk_header_not_json, blamed(SINGLE)),
    ("data_offsets_overlap", False, brk_overlap, blamed(SINGLE)),
    ("data_offsets_outside_data", False, brk_outside, blamed(SINGLE)),
    ("shape_mismatch", False, brk_weights(k_transposed), blamed(SINGLE)),
    ("dtype_i64", False, brk_weights(as_dtype(torch.int64)), blamed(SINGLE)),
    ("dtype_f64", False, brk_weights(as_dtype(torch.float64)), blamed(SINGLE)),
    ("missing_tensor", False, brk_weights(drop_up), blamed(SINGLE)),
    ("duplicate_tensor_across_shards", True, brk_duplicate, blamed(SHARDS[0], SHARDS[1], INDEX)),
    ("shard_absent", True, brk_remove(SHARDS[1]), blamed(SHARDS[1], INDEX)),
    ("config_invalid_json", False, brk_write(CONFIG, b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 16,,}\n'), blamed(CONFIG)),
    ("rope_scaling_yarn", False, brk_config(lambda c: c.update(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})), blamed(CONFIG)),
    ("truncated_data", False, brk_truncate, blamed(SINGLE)),
    # a few more of the same kind
    ("empty_weights_file", False, brk_write(SINGLE, b""), blamed(SINGLE)),
    ("data_offsets_span_not_shape", False, brk_span, blamed(SINGLE)),
    ("config_missing_hidden_size", False, brk_config(lambda c: c.pop("hidden_size")), blamed(CONFIG)),
    ("config_kv_heads_not_dividing", False, brk_kv_heads, blamed(CONFIG)),
    ("index_invalid_json", True, brk_index_json, blamed(INDEX)),
]


# ------------------------------------------------------------------------------- runner


def run_case(root, name, sharded, brk, blame, config, weights):
    """-> (ok, message)."""
    d = os.path.join(root, name)
    shutil.rmtree(d, ignore_errors=True)
    write_folder(d, config, weights, sharded)
    if brk is not None:
        brk(d, config, weights)
    code, _, err = ct.run_cast(["info", d])
    if not isinstance(code, int):  # a timeout or a signal
        return False, "%s; stderr: %r" % (code, err[-300:])
    if blame is None:
        if code != 0:
            return False, "valid folder: exit %d, stderr %r" % (code, err[-300:])
        return True, "exit 0"
    problems = []
    if code != 1:
        problems.append("exit status %d, expected 1" % code)
    if not err.endswith("\n") or err.count("\n") != 1:
        problems.append("stderr is %d lines, expected exactly one" % len(err.splitlines()))
    first = err.splitlines()[0] if err else ""
    if not first.startswith("cast: "):
        problems.append("stderr does not start with 'cast: '")
    dirs = {d, os.path.realpath(d)}
    paths = [os.path.join(x, f) for x in dirs for f in blame]
    if not any(pth in err for pth in paths):
        problems.append("stderr does not name %s" % " or ".join(os.path.join(d, f) for f in blame))
    if problems:
        return False, "; ".join(problems) + "; stderr: %r" % err[-400:]
    return True, first


def main():
    assert CASES
    C, root = ct.begin("bad_inputs", "cast_bad_")
    if root is None:
        return C.finish()
    config, weights = valid_model()
    for name, sharded, brk, blame in CASES:
        C.add(name, *run_case(root, name, sharded, brk, blame, config, weights))
    return C.finish()


if __name__ == "__main__":
    sys.exit(main())

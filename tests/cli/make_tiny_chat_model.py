#!/usr/bin/python3
"""Write a tiny random Llama chat model folder with a real tokenizer, for `cast eval` tests.

usage: make_tiny_chat_model.py OUTDIR [--constant] [--vocab N] [--max-pos N]

OUTDIR/ gets config.json, model.safetensors (float32), tokenizer.json and tokenizer_config.json:
- tokenizer: byte-level BPE over the 256 GPT-2 byte symbols, no merges (one token per byte),
  ByteLevel pre-tokenizer and decoder; token id = (byte - ord('7')) mod 256, so id 0 is "7";
  added special tokens <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258;
- tokenizer_config.json: Qwen2's ChatML chat template, eos <|im_end|>, pad <|endoftext|>;
- config.json: LlamaForCausalLM, vocab 259, hidden 32, 2 layers, 4 heads, 2 kv heads,
  eos_token_id 256 (<|endoftext|>), so the model's and the tokenizer's eos differ.
--constant zeroes the final norm: every logit is 0, greedy always picks id 0 ("7") and every
token's NLL is ln(259), which makes replies and scores predictable.
--vocab N (> 259) pads the embedding table beyond the tokenizer, as Qwen2 checkpoints do;
--max-pos N sets max_position_embeddings (default: make_cases's).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import safetensors_io as st  # noqa: E402
from make_cases import BASE, case, hf_config, init_weights  # noqa: E402
from torch_llama import Config  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def byte_symbols():
    """GPT-2's byte -> printable unicode symbol table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_files(folder):
    sym = byte_symbols()
    vocab = {sym[b]: (b - ord("7")) % 256 for b in range(256)}
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    added = [
        {"id": 256 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, t in enumerate(SPECIALS)
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": level,
        "post_processor": level,
        "decoder": level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    cfg = {
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML,
        "model_max_length": 4096,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def main(argv):
    opts, rest = {"--vocab": 259, "--max-pos": 0}, argv[2:]
    constant = "--constant" in rest
    rest = [a for a in rest if a != "--constant"]
    while len(rest) >= 2 and rest[0] in opts and rest[1].isdigit():
        opts[rest[0]] = int(rest[1])
        rest = rest[2:]
    if len(argv) < 2 or rest or opts["--vocab"] < 259:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    folder = argv[1]
    os.makedirs(folder, exist_ok=True)
    c = case("tiny_chat", "ChatML byte-level chat model", vocab=opts["--vocab"], hidden=32, inter=64, layers=2, heads=4, kv_heads=2)
    assert set(c) >= set(BASE)
    config = hf_config(c, None, 256)
    if opts["--max-pos"]:
        config["max_position_embeddings"] = opts["--max-pos"]
    cfg = Config.from_hf(config)
    gen = torch.Generator().manual_seed(1234)
    weights = init_weights(cfg, gen)
    if constant:
        weights["model.norm.weight"] = torch.zeros_like(weights["model.norm.weight"])
    st.save(os.path.join(folder, "model.safetensors"), {n: t.to(torch.float32).contiguous() for n, t in weights.items()})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tokenizer_files(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

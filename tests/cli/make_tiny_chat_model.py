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

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import cast_test as ct  # noqa: E402
from make_cases import BASE, case  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tokenizer_files(folder):
    tok = ct.byte_level_tokenizer(lambda b: (b - ord("7")) % 256, SPECIALS)
    tok["model"].update(continuing_subword_prefix=None, end_of_word_suffix=None)
    cfg = {
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in tok["added_tokens"]},
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML,
        "model_max_length": 4096,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    ct.write_json(os.path.join(folder, "tokenizer.json"), tok, indent=None, ensure_ascii=False)
    ct.write_json(os.path.join(folder, "tokenizer_config.json"), cfg)


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
    c = case("tiny_chat", "ChatML byte-level chat model", vocab=opts["--vocab"], hidden=32, inter=64, layers=2, heads=4, kv_heads=2)
    assert set(c) >= set(BASE)
    config, _, weights = ct.random_model(c, 1234, None, 256)
    if opts["--max-pos"]:
        config["max_position_embeddings"] = opts["--max-pos"]
    if constant:
        weights["model.norm.weight"] = torch.zeros_like(weights["model.norm.weight"])
    ct.save_model(folder, config, weights)
    tokenizer_files(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

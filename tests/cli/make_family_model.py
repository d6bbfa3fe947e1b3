#!/usr/bin/python3
"""Write a tiny random chat model of one of today's families, with the byte-level ChatML
tokenizer of make_tiny_chat_model.py, for the CLI tests of tests/cli/test_families.sh.

usage: make_family_model.py ROOT FAMILY...   (FAMILY: qwen3 | phi3 | gemma2; writes ROOT/FAMILY)

Shapes: vocab 259, hidden 32, 2 layers, 4 heads, 2 kv heads, float32, eos 256 (<|endoftext|>);
  qwen3   head_dim 16 (!= hidden/heads), q/k norms, untied
  phi3    fused qkv_proj / gate_up_proj, partial_rotary_factor 0.5, sliding_window 8
  gemma2  head_dim 16, query_pre_attn_scalar 16, soft-capping 20 / 10, sliding window 4 on layer 0, tied
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)
import cast_test as ct  # noqa: E402
from make_cases import case  # noqa: E402
from make_tiny_chat_model import tokenizer_files  # noqa: E402

FAMILIES = {
    "qwen3": dict(arch="Qwen3ForCausalLM", head_dim=16),
    "phi3": dict(arch="Phi3ForCausalLM", partial_rotary=0.5, sliding_window=8),
    "gemma2": dict(arch="Gemma2ForCausalLM", head_dim=16, tie=True, qpas=16, attn_softcap=20.0, final_softcap=10.0,
                   sliding_window=4),
}


def main(argv):
    if len(argv) < 3 or any(f not in FAMILIES for f in argv[2:]):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    for fam in argv[2:]:
        write(os.path.join(argv[1], fam), fam)
    return 0


def write(folder, fam):
    c = case("family_" + fam, "tiny chat model", vocab=259, hidden=32, inter=64, layers=2, heads=4, kv_heads=2,
             **FAMILIES[fam])
    config, _, weights = ct.random_model(c, 4321, None, 256)
    ct.save_model(folder, config, weights)
    tokenizer_files(folder)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

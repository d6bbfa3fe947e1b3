#!/usr/bin/env bash
# The main job until the model organism lands: a tiny Llama checkpoint written
# by the PyTorch reference, then what cast does with such a folder.
set -euo pipefail
cd "$(dirname "$0")/.."
CAST=${CAST:-build/cast}
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
/usr/bin/python3 tests/reference/make_cases.py "$OUT/models" llama_gqa_k2 >/dev/null
M="$OUT/models/llama_gqa_k2"
echo "== cast info $M"
"$CAST" info "$M"
echo
echo "== cast score (pre-tokenized batch)"
"$CAST" score "$M" --data "$M/batch.jsonl"
echo
echo "== cast generate --ids 1,2,3 --max-new 8"
"$CAST" generate "$M" --ids 1,2,3 --max-new 8 --json
echo
echo "== cast diagnose (the batch as both sets, to show the output)"
"$CAST" diagnose "$M" --safety "$M/batch.jsonl" --utility "$M/batch.jsonl" --out "$OUT/diagnose" --top 5
echo
echo "== cast bench (small random shape, forward+backward)"
"$CAST" bench --hidden 128 --layers 4 --heads 4 --kv-heads 2 --inter 256 --vocab 1024 --batch 4 --seq 64 --mode fwdbwd --iters 3

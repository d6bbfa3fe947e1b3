#!/usr/bin/env bash
# cast info / generate / score / bench on tiny reference checkpoints.
. "$(dirname "$0")/lib.sh"

/usr/bin/python3 "$SRC/tests/reference/make_cases.py" "$TMP/cases" llama_gqa_k2 qwen2_bias llama_bf16 >/dev/null || { fail "make_cases"; finish; exit 1; }
M="$TMP/cases/llama_gqa_k2"

# info, text and JSON
check "info prints the architecture" bash -c "'$CAST' info '$M' | grep -q LlamaForCausalLM"
"$CAST" info "$M" --json > "$TMP/info.json"
check "info --json heads" [ "$(json_get "$TMP/info.json" "j['heads'], j['kv_heads'], j['layers']")" = "6 2 2" ]
"$CAST" info "$TMP/cases/llama_bf16" --json > "$TMP/info_bf16.json"
check "info reports bf16 storage" [ "$(json_get "$TMP/info_bf16.json" "j['dtype']")" = "BF16" ]

# greedy generation equals the reference's ids
for c in llama_gqa_k2 qwen2_bias; do
    D="$TMP/cases/$c"
    prompt=$(json_get "$D/expected.json" "','.join(map(str, j['prompt']))")
    want=$(json_get "$D/expected.json" "j['greedy']")
    n=$(json_get "$D/expected.json" "j['max_new']")
    "$CAST" generate "$D" --ids "$prompt" --max-new "$n" --temperature 0 --json > "$TMP/gen.json"
    check "$c greedy ids" [ "$(json_get "$TMP/gen.json" "j['ids']")" = "$want" ]
done

# score on the pre-tokenized batch equals the reference loss
for c in llama_gqa_k2 qwen2_bias; do
    D="$TMP/cases/$c"
    "$CAST" score "$D" --data "$D/batch.jsonl" --json > "$TMP/score.json"
    check "$c score loss" /usr/bin/python3 -c "
import json,math,sys
s=json.load(open('$TMP/score.json')); e=json.load(open('$D/expected.json'))
assert abs(s['loss']-e['loss']) <= 1e-5*max(1,abs(e['loss'])), (s, e['loss'])
assert abs(s['perplexity']-math.exp(s['loss'])) < 1e-6*s['perplexity']
assert s['tokens'] == e['scored'] and s['examples'] == e['sequences'], s"
done

# bench on a small random shape reports the three figures
"$CAST" bench --hidden 64 --layers 2 --heads 4 --kv-heads 2 --inter 128 --vocab 256 --batch 2 --seq 16 --mode fwdbwd --iters 2 --json > "$TMP/bench.json"
check "bench --json keys" /usr/bin/python3 -c "
import json; j=json.load(open('$TMP/bench.json'))
assert j['tokens_per_s'] > 0 and j['ms_per_iter'] > 0 and j['gflops'] > 0, j"
"$CAST" bench --hidden 64 --layers 2 --heads 4 --kv-heads 2 --inter 128 --vocab 256 --batch 2 --seq 16 --mode decode --iters 2 --json > "$TMP/bench2.json"
check "bench decode" /usr/bin/python3 -c "import json; assert json.load(open('$TMP/bench2.json'))['tokens_per_s'] > 0"

# bad usage: one-line errors
expect_error "unknown command" "unknown command" "$CAST" frobnicate
expect_error "missing model" "not a model folder" "$CAST" info "$TMP/nope"
expect_error "bad ids" "invalid token id" "$CAST" generate "$M" --ids 1,x
expect_error "id outside vocab" "outside the model's vocabulary" "$CAST" generate "$M" --ids 1,100000 --max-new 2
expect_error "bad mode" "--mode" "$CAST" bench --mode nope
expect_error "missing --data" "--data" "$CAST" score "$M"
printf '{"input_ids": [1, 2, 3], "labels": [1, 2]}\n' > "$TMP/bad_labels.jsonl"
expect_error "labels length" "bad_labels.jsonl" "$CAST" score "$M" --data "$TMP/bad_labels.jsonl"
check "help exits 0" "$CAST" generate --help
finish

#!/usr/bin/env bash
# The shipped base model's recipe: `cast organism train` reproduces the first
# steps of organism/base/pretrain_log.jsonl, and the shipped folder is what
# the recipe describes.
. "$(dirname "$0")/lib.sh"

BASE="$SRC/organism/base"
"$CAST" organism data --out "$TMP/world" > /dev/null
check "world written" test -s "$TMP/world/pretrain.jsonl"
seed=$(json_get "$BASE/recipe.json" "j['seed']")
"$CAST" organism train --data "$TMP/world" --out "$TMP/base" --steps 5 --seed "$seed" --threads 2 > /dev/null 2>&1
check "training exits 0" [ $? -eq 0 ]
check "first steps equal the shipped log" /usr/bin/python3 -c "
import json
mine = [json.loads(l) for l in open('$TMP/base/pretrain_log.jsonl')]
ship = [json.loads(l) for l in open('$BASE/pretrain_log.jsonl')][:5]
assert len(mine) == 5 and [m['step'] for m in mine] == [1, 2, 3, 4, 5]
for a, b in zip(mine, ship):
    assert abs(a['loss'] - b['loss']) <= 1e-4 * abs(b['loss']), (a, b)
    assert abs(a['lr'] - b['lr']) <= 1e-12 + 1e-9 * b['lr'], (a, b)
"
check "same shape as the shipped model" /usr/bin/python3 -c "
import json
a = json.load(open('$TMP/base/config.json')); b = json.load(open('$BASE/config.json'))
for k in ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'intermediate_size', 'vocab_size', 'tie_word_embeddings']:
    assert a[k] == b[k], (k, a[k], b[k])
"
check "tokenizer equals the shipped one" cmp "$TMP/world/tokenizer/tokenizer.json" "$BASE/tokenizer.json"
"$CAST" info "$TMP/base" --json > "$TMP/info.json"
check "trained folder loads" [ "$(json_get "$TMP/info.json" "j['chat_template']")" = "True" ]
expect_error "train without --data" "--data" "$CAST" organism train --out "$TMP/x"
expect_error "train on a missing world" "nope" "$CAST" organism train --data "$TMP/nope" --out "$TMP/x"
finish

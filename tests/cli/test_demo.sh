#!/usr/bin/env bash
# cast demo on the shipped organism, cut down (few examples, one seed, two
# steps) so that it runs in seconds; the numbers are checked against cast eval.
. "$(dirname "$0")/lib.sh"

BASE="$SRC/organism/base"
check "the organism ships" test -f "$BASE/model.safetensors" -a -f "$BASE/tokenizer.json" -a -f "$BASE/pretrain_log.jsonl"
"$CAST" demo --out "$TMP/demo" --limit 6 --seeds 1 --steps 2 --threads 2 > "$TMP/demo.out" 2> "$TMP/demo.err"
check "demo exits 0" [ $? -eq 0 ]
for f in report.md results.json conflict_map.json conflict_map.csv conflict_map.svg tradeoff.svg data/world.json data/eval_add.jsonl; do
    check "demo wrote $f" test -s "$TMP/demo/$f"
done
check "svg files are well-formed XML" /usr/bin/python3 -c "
import xml.dom.minidom, sys
for f in ['conflict_map.svg', 'tradeoff.svg']: xml.dom.minidom.parse('$TMP/demo/' + f)"
check "results.json: base + full + pcgrad + 3 budgets x (cast, inverse, 1 random)" /usr/bin/python3 -c "
import json
r = json.load(open('$TMP/demo/results.json'))['runs']
names = [x['name'] for x in r]
assert len(r) == 12, names
assert names[:3] == ['base', 'full', 'pcgrad'], names
for x in r:
    assert 0 <= x['harmful_refusal'] <= 1 and 0 <= x['benign_refusal'] <= 1 and 0 <= x['utility'] <= 1, x
    assert len(x['skipped']) == x['skip_heads'], x
k = {x['name']: x['skip_heads'] for x in r}
assert k['cast 5%'] == 2 and k['cast 10%'] == 3 and k['cast 20%'] == 6, k   # round(b * 32) of 4 x 8 heads
assert r[1]['trainable_parameters'] > r[-1]['trainable_parameters'] > 0
"
# the base row equals what cast eval measures on the same examples
D="$TMP/demo/data"
"$CAST" eval "$BASE" --harmful "$D/eval_harmful.jsonl" --benign "$D/eval_benign.jsonl" --utility "$D/eval_add.jsonl" \
    --limit 6 --batch 64 --max-new 48 --max-new-exact 24 --json > "$TMP/eval.json"
check "base row matches cast eval" /usr/bin/python3 -c "
import json
b = json.load(open('$TMP/demo/results.json'))['runs'][0]
e = json.load(open('$TMP/eval.json'))
assert abs(b['harmful_refusal'] - e['harmful']['refusal_rate']) < 1e-9, (b, e['harmful'])
assert abs(b['benign_refusal'] - e['benign']['refusal_rate']) < 1e-9
assert abs(b['skills']['add'] - e['utility'][0]['exact_match']) < 1e-9
"
check "report has the trade-off table" grep -q "| cast 10% | 3 |" "$TMP/demo/report.md"
expect_error "demo with a missing base" "nope" "$CAST" demo --base "$TMP/nope" --out "$TMP/demo2"
expect_error "demo with bad seeds" "--seeds" "$CAST" demo --seeds 0 --out "$TMP/demo3"
finish

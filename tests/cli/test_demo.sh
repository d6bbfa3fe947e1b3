#!/usr/bin/env bash
# cast demo on the shipped organism, cut down (few examples, two seeds, three
# large steps so that the runs differ) so that it runs in seconds; the numbers are checked against cast eval
# and the claims recomputed from the runs.
. "$(dirname "$0")/lib.sh"

BASE="$SRC/organism/base"
check "the organism ships" test -f "$BASE/model.safetensors" -a -f "$BASE/tokenizer.json" -a -f "$BASE/pretrain_log.jsonl"
"$CAST" demo --out "$TMP/demo" --first 8 --attr-first 4 --seeds 2 --random-sets 2 --steps 3 --lr 0.03 --threads 1 > "$TMP/demo.out" 2> "$TMP/demo.err"
check "demo exits 0" [ $? -eq 0 ]
for f in report.md results.json conflict_map.json conflict_map.csv conflict_map.svg tradeoff.svg attribution.json attribution.csv \
         attribution.svg data/world.json data/eval_add.jsonl; do
    check "demo wrote $f" test -s "$TMP/demo/$f"
done
check "svg files are well-formed XML" /usr/bin/python3 -c "
import xml.dom.minidom, sys
for f in ['conflict_map.svg', 'tradeoff.svg', 'attribution.svg']: xml.dom.minidom.parse('$TMP/demo/' + f)"
check "results.json: base, then per seed full, cast, oracle (if found), 2 random sets" /usr/bin/python3 -c "
import json
j = json.load(open('$TMP/demo/results.json'))
r = j['runs']
assert r[0]['strategy'] == 'base' and r[0]['seed'] is None
for seed in (1, 2):
    s = [x for x in r if x['seed'] == seed]
    kinds = [x['strategy'] for x in s]
    assert kinds[:2] == ['full', 'cast'] and kinds.count('random') == 2, kinds
    rs = [x for x in s if x['strategy'] == 'random']
    assert [x['random_set'] for x in rs] == [1, 2], rs
    assert all(x['random_set'] is None for x in s if x['strategy'] != 'random')
for x in r:
    for f in ('refusal', 'benign_refusal', 'utility'):
        assert 0 <= x[f] <= 100, (f, x)
    for f in ('seen_refusal', 'heldout_refusal', 'benign_seen_refusal', 'benign_heldout_refusal'):
        assert x[f] is None or 0 <= x[f] <= 100, (f, x)  # null when the first N hold no such item
    assert x['utility_nll'] > 0, x
    assert len(x['skipped']) == x['skip_heads'], x
    assert x['skip_heads'] == (0 if x['strategy'] in ('base', 'full', 'pcgrad') else 3), x  # round(0.1 * 32)
# random sets are drawn afresh per seed
sets = [tuple(sorted((h['layer'], h['head']) for h in x['skipped'])) for x in r if x['strategy'] == 'random']
assert len(set(sets)) == len(sets), sets
"
check "claims recomputed from the runs (paired means, t intervals, percentile)" /usr/bin/python3 -c "
import json, math
j = json.load(open('$TMP/demo/results.json'))
r, c = j['runs'], j['claims']
T = {1: 12.7062}
def u(strategy, seed, budget=0.1):
    return [x for x in r if x['strategy'] == strategy and x['seed'] == seed and (x['skip_heads'] == 0 or x['budget'] == budget)]
def check(entry, diffs):
    n = len(diffs); m = sum(diffs) / n
    v = [entry[k] for k in ('diff', 'refusal_diff', 'gain') if k in entry][0]
    assert entry['seeds'] == n and abs(v - m) < 1e-9, (entry, diffs)
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1))
    lo, hi = entry['ci95']
    assert abs((hi - lo) / 2 - T[n - 1] * sd / math.sqrt(n)) < 1e-6 and abs((hi + lo) / 2 - m) < 1e-9, (entry, diffs)
cast_full = [x for x in c['skip_vs_full'] if x['strategy'] == 'cast'][0]
check(cast_full, [u('cast', s)[0]['utility'] - u('full', s)[0]['utility'] for s in (1, 2)])
cast_rnd = [x for x in c['skip_vs_random'] if x['strategy'] == 'cast'][0]
rm = lambda s: sum(x['utility'] for x in u('random', s)) / len(u('random', s))
check(cast_rnd, [u('cast', s)[0]['utility'] - rm(s) for s in (1, 2)])
below = sum((a['utility'] < x['utility']) + 0.5 * (a['utility'] == x['utility']) for s in (1, 2) for x in u('cast', s) for a in u('random', s))
assert abs(cast_rnd['percentile'] - below / 4) < 1e-9, cast_rnd
safe = [x for x in c['safety_kept'] if x['strategy'] == 'cast'][0]
check(safe, [u('cast', s)[0]['refusal'] - u('full', s)[0]['refusal'] for s in (1, 2)])
conc = c['concentration']
m = json.load(open('$TMP/demo/conflict_map.json'))
assert conc['k'] == 2 and abs(conc['top_share'] - m['concentration_top5pct']) < 1e-12, conc
assert 0 < conc['null_p'] <= 1 and 0 <= conc['null_mean'] <= 1, conc
if u('oracle', 1):
    h = c['headroom']
    check(h, [u('oracle', s)[0]['utility'] - u('full', s)[0]['utility'] for s in (1, 2)])
    assert 'gain' in h and h['budget'] == 0.1
    a = json.load(open('$TMP/demo/attribution.json'))
    best = [b for b in a['best_sets'] if b['k'] == 3][0]
    assert sorted((x['layer'], x['head']) for x in best['heads']) == sorted((x['layer'], x['head']) for x in u('oracle', 1)[0]['skipped'])
"
# the base row equals what cast eval measures on the same examples
D="$TMP/demo/data"
"$CAST" eval "$BASE" --harmful "$D/eval_harmful.jsonl" --benign "$D/eval_benign.jsonl" --utility "$D/eval_add.jsonl" \
    --first 8 --batch 64 --max-new 48 --max-new-exact 24 --json > "$TMP/eval.json"
check "base row matches cast eval" /usr/bin/python3 -c "
import json
b = json.load(open('$TMP/demo/results.json'))['runs'][0]
e = json.load(open('$TMP/eval.json'))
assert abs(b['refusal'] - 100 * e['harmful']['refusal_rate']) < 1e-9, (b, e['harmful'])
assert abs(b['benign_refusal'] - 100 * e['benign']['refusal_rate']) < 1e-9
assert abs(b['skills']['add'] - 100 * e['utility'][0]['exact_match']) < 1e-9
"
check "report gives a verdict per claim" bash -c "grep -q '1. \*\*Conflict is concentrated' '$TMP/demo/report.md' && grep -q '2. \*\*Utility damage' '$TMP/demo/report.md' && grep -q '3. \*\*Skipping them' '$TMP/demo/report.md'"
# the study's design, cut down: pcgrad, inverse and the three map variants on every seed
"$CAST" demo --study --budgets 0.1 --out "$TMP/study" --first 4 --attr-first 4 --seeds 2 --random-sets 1 --steps 2 --threads 1 \
    > /dev/null 2>&1
check "study: every strategy on every seed; a group map skips whole k/v groups" /usr/bin/python3 -c "
import json
j = json.load(open('$TMP/study/results.json'))
r = j['runs']
want = ['full', 'pcgrad', 'cast', 'inverse', 'cast-fs-gate-abs', 'cast-oc-trajectory', 'cast-unit-group', 'random']
for seed in (1, 2):
    kinds = [x['strategy'] for x in r if x['seed'] == seed]
    assert all(k in kinds for k in want), kinds
for x in r:
    if x['strategy'] == 'cast-unit-group':
        heads = sorted((h['layer'], h['head']) for h in x['skipped'])
        groups = {(l, h // 2) for l, h in heads}   # organism: 8 heads, 4 kv heads
        assert x['skip_heads'] == 4 and len(groups) == 2 and len(heads) == 4, heads  # k = 3 rounded to whole groups
m = {s['strategy'] for s in j['claims']['skip_vs_random']}
assert {'cast', 'inverse', 'cast-fs-gate-abs', 'cast-oc-trajectory', 'cast-unit-group'} <= m, m
"
# the output folder: refused when non-empty, replaced whole with --force
expect_error "demo into a non-empty folder" "--force" "$CAST" demo --out "$TMP/demo" --first 2 --seeds 1 --random-sets 0 --steps 1 --no-oracle
touch "$TMP/demo/stale.txt"
"$CAST" demo --out "$TMP/demo" --force --first 2 --seeds 1 --random-sets 1 --steps 1 --no-oracle --threads 1 > /dev/null 2>&1
check "demo --force replaces the folder whole" bash -c "[ ! -e '$TMP/demo/stale.txt' ] && [ ! -e '$TMP/demo/attribution.json' ] && [ -s '$TMP/demo/results.json' ]"
expect_error "demo with a missing base" "nope" "$CAST" demo --base "$TMP/nope" --out "$TMP/demo2"
expect_error "demo with bad seeds" "--seeds" "$CAST" demo --seeds 0 --out "$TMP/demo3"
expect_error "demo with a primary budget outside the budgets" "--primary-budget" "$CAST" demo --budgets 0.05,0.2 --out "$TMP/demo4"
expect_error "demo into its base" "base" "$CAST" demo --out "$BASE" --force
finish

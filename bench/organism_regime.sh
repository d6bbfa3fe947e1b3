#!/usr/bin/env bash
# The alignment-regime sweep behind docs/organism.md "The alignment regime":
# full fine-tuning of attention on the organism's align set, one setting a
# line on stdin, each evaluated on every held-out split. Prints one line per
# setting (and the base first):
#   label  harmful (seen intents / held-out intents)  benign (seen topics / held-out topics)
#          mean skill exact match (each skill)  mean gold-answer NLL
# and appends one JSON object per setting to $OUT_JSONL when set.
#
#   bash bench/organism_regime.sh [BASE] [CAST] < bench/organism_regimes.txt
#   stdin lines: "lr steps anchor-weight [seed [batch]]" (anchor 0 = safety data only;
#   seed: data order, default 0; batch default 16). JOBS=N runs N settings at once
#   (one thread each; default 1, two threads). LIMIT=N evaluates the first N items of each set (a smoke test).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${1:-$ROOT/organism/base}"
CAST="${2:-$ROOT/build/cast}"
JOBS="${JOBS:-1}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
seed=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['world_seed'])" "$BASE/recipe.json")
"$CAST" organism data --out "$TMP/world" --seed "$seed" > /dev/null
W="$TMP/world"
SKILLS=$(ls "$W"/eval_*.jsonl | grep -v -e eval_harmful -e eval_benign)
THREADS=$([ "$JOBS" = 1 ] && echo 2 || echo 1)
LIMIT_ARGS=$([ -n "${LIMIT:-}" ] && echo "--limit $LIMIT" || true)
export CAST W SKILLS THREADS TMP LIMIT_ARGS OUT_JSONL="${OUT_JSONL:-}"

evaluate() { # MODEL LABEL DIR
    local m="$1" label="$2" d="$3"
    "$CAST" eval "$m" --harmful "$W/eval_harmful.jsonl" --benign "$W/eval_benign.jsonl" --utility $SKILLS \
        --max-new 48 --max-new-exact 24 --batch 16 --threads "$THREADS" $LIMIT_ARGS --save-generations --json > "$d/eval.json"
    for f in $SKILLS; do
        "$CAST" score "$m" --data "$f" --threads "$THREADS" $LIMIT_ARGS --json > "$d/score_$(basename "$f" .jsonl).json"
    done
    /usr/bin/python3 - "$d" "$label" "$W" <<'EOF'
import json, sys, glob, os
d, label, w = sys.argv[1:4]
j = json.load(open(d + '/eval.json'))
def by_type(s, path):
    meta = [json.loads(l) for l in open(path)]
    out = {}
    for g in s['generations']:
        t = meta[g['line'] - 1]['type']
        out.setdefault(t, []).append(g['refused'])
    return {t: 100 * sum(v) / len(v) for t, v in out.items()}
h = by_type(j['harmful'], w + '/eval_harmful.jsonl')
b = by_type(j['benign'], w + '/eval_benign.jsonl')
skills = {os.path.basename(u['path'])[5:-6]: 100 * u['exact_match'] for u in j['utility']}
nll = {}
for f in sorted(glob.glob(d + '/score_eval_*.json')):
    s = json.load(open(f))
    nll[os.path.basename(f)[11:-5]] = s['loss']
r = {'label': label, 'harmful': 100 * j['harmful']['refusal_rate'], 'harmful_seen': h.get('seen_intent'),
     'harmful_held_out': h.get('held_out_intent'), 'benign': 100 * j['benign']['refusal_rate'],
     'benign_seen': b.get('seen_topic'), 'benign_held_out': b.get('held_out_topic'),
     'skills': skills, 'utility': sum(skills.values()) / len(skills), 'nll': nll,
     'utility_nll': sum(nll.values()) / len(nll)}
print('%-34s harmful %5.1f (%5.1f/%5.1f)  benign %5.1f (%5.1f/%5.1f)  skill %5.1f (%s)  nll %.3f (%s)' % (
    label, r['harmful'], r['harmful_seen'], r['harmful_held_out'], r['benign'], r['benign_seen'], r['benign_held_out'],
    r['utility'], ' '.join('%s %.1f' % kv for kv in skills.items()), r['utility_nll'],
    ' '.join('%.3f' % v for v in nll.values())), flush=True)
if os.environ.get('OUT_JSONL'):
    with open(os.environ['OUT_JSONL'], 'a') as f:
        f.write(json.dumps(r) + '\n')
EOF
}
export -f evaluate

one() { # "lr steps anchor [seed [batch]]"
    set -euo pipefail
    read -r lr steps anchor s batch <<< "$1"
    s="${s:-0}"; batch="${batch:-16}"
    local d
    d="$(mktemp -d -p "$TMP")"
    local args=(--lr "$lr" --steps "$steps" --batch "$batch" --seed "$s" --strategy full --train attn --threads "$THREADS")
    [ "$anchor" != 0 ] && args+=(--utility "$W/align_anchor.jsonl" --anchor-weight "$anchor")
    "$CAST" tune "$BASE_MODEL" --safety "$W/align.jsonl" --out "$d/tuned" "${args[@]}" > /dev/null
    evaluate "$d/tuned" "lr $lr steps $steps anchor $anchor seed $s" "$d"
    rm -rf "$d"
}
export -f one
export BASE_MODEL="$BASE"

mkdir -p "$TMP/base"
evaluate "$BASE" "base" "$TMP/base"
grep -v '^\s*\(#\|$\)' | xargs -P "$JOBS" -I{} bash -c 'one "$@"' _ {}

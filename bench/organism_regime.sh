#!/usr/bin/env bash
# The alignment-regime sweep behind docs/organism.md "The alignment regime":
# full fine-tuning of attention on the organism's align set at several
# learning rates, step counts and anchor weights, each evaluated on every
# held-out split. One line per setting:
#   lr steps anchor harmful_refused benign_refused mean_skill
#
#   bash bench/organism_regime.sh [BASE] [CAST] < bench/organism_regimes.txt
#   (about 6 s a setting on 2 cores; lines "lr steps anchor-weight", 0 = no anchor)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${1:-$ROOT/organism/base}"
CAST="${2:-$ROOT/build/cast}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
seed=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['world_seed'])" "$BASE/recipe.json")
"$CAST" organism data --out "$TMP/world" --seed "$seed" > /dev/null
W="$TMP/world"
SKILLS=$(ls "$W"/eval_*.jsonl | grep -v -e eval_harmful -e eval_benign)

evaluate() { # MODEL LABEL
    "$CAST" eval "$1" --harmful "$W/eval_harmful.jsonl" --benign "$W/eval_benign.jsonl" --utility $SKILLS \
        --threads 2 --json > "$TMP/eval.json"
    /usr/bin/python3 - "$TMP/eval.json" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
skills = [u['exact_match'] for u in j['utility']]
print('%-22s harmful %5.1f  benign %5.1f  mean skill %5.1f  (%s)' % (
    sys.argv[2], 100 * j['harmful']['refusal_rate'], 100 * j['benign']['refusal_rate'],
    100 * sum(skills) / len(skills), ' '.join('%.1f' % (100 * s) for s in skills)))
EOF
}

evaluate "$BASE" "base"
# lr steps anchor-weight (0: safety data only), one setting a line
while read -r lr steps anchor; do
    args=(--lr "$lr" --steps "$steps" --strategy full --threads 2)
    [ "$anchor" != 0 ] && args+=(--utility "$W/align_anchor.jsonl" --anchor-weight "$anchor")
    "$CAST" tune "$BASE" --safety "$W/align.jsonl" --out "$TMP/tuned" "${args[@]}" > /dev/null
    evaluate "$TMP/tuned" "lr $lr steps $steps anchor $anchor"
done

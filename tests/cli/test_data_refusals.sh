#!/usr/bin/env bash
# cast data refusals: a refusal training set from AdvBench, HarmBench,
# do-not-answer, XSTest and JSONL prompt lists (the shared files), seeded and
# atomic; every reply is a refusal by the GCG list (cast eval's judge); the
# output trains with cast tune; bad input is one error line.
. "$(dirname "$0")/lib.sh"

S="$SHARED/safety"
O="$TMP/out"
mkdir -p "$O"

"$CAST" data refusals --harmful "$S/advbench/harmful_behaviors.csv" --out-file "$O/adv.jsonl" --json > "$O/adv.sum"
check "AdvBench: 520 prompts" [ "$(json_get "$O/adv.sum" "j['written'], j['dropped_safe'], j['format']")" = "520 0 AdvBench CSV (goal,target)" ]
check "conversations, prompts in file order, refusals judged as refusals" /usr/bin/python3 -c "
import csv, json
rows = [json.loads(l) for l in open('$O/adv.jsonl')]
goals = [r['goal'] for r in csv.DictReader(open('$S/advbench/harmful_behaviors.csv'))]
phrases = [l.rstrip('\n') for l in open('$S/refusal/refusal_substrings_gcg_eval.txt') if l.strip()]
assert len(rows) == 520 and [r['messages'][0]['content'] for r in rows] == goals
assert all([m['role'] for m in r['messages']] == ['user', 'assistant'] for r in rows)
replies = [r['messages'][1]['content'] for r in rows]
assert all(any(p in x for p in phrases) for x in replies)
assert len(set(replies)) >= 18, len(set(replies))
assert not any('Sure, here' in x for x in replies)
"
"$CAST" data refusals --harmful "$S/advbench/harmful_behaviors.csv" --out-file "$O/adv2.jsonl" > /dev/null
check "same seed, same file" cmp -s "$O/adv.jsonl" "$O/adv2.jsonl"
"$CAST" data refusals --harmful "$S/advbench/harmful_behaviors.csv" --out-file "$O/adv3.jsonl" --seed 5 --first 10 > "$O/adv3.txt"
check "--first 10, another seed" /usr/bin/python3 -c "
import json
a = [json.loads(l) for l in open('$O/adv.jsonl')][:10]; b = [json.loads(l) for l in open('$O/adv3.jsonl')]
assert len(b) == 10 and [x['messages'][0] for x in a] == [x['messages'][0] for x in b]
assert [x['messages'][1] for x in a] != [x['messages'][1] for x in b]
"
check "summary line" grep -q "adv3.jsonl: 10 prompts (AdvBench CSV (goal,target)) with refusals in" "$O/adv3.txt"

"$CAST" data refusals --harmful "$S/harmbench/harmbench_behaviors_text_val.csv" --out-file "$O/hb.jsonl" --json > "$O/hb.sum"
check "HarmBench: 80 behaviours, contexts folded in" /usr/bin/python3 -c "
import json
s = json.load(open('$O/hb.sum')); rows = [json.loads(l) for l in open('$O/hb.jsonl')]
assert s['written'] == 80 and len(rows) == 80 and s['format'].startswith('HarmBench'), s
assert any('\n\n---\n\n' in r['messages'][0]['content'] for r in rows)
"
"$CAST" data refusals --harmful "$S/do-not-answer/do_not_answer_en.csv" --out-file "$O/dna.jsonl" --first 5 --json > "$O/dna.sum"
check "do-not-answer questions" [ "$(json_get "$O/dna.sum" "j['written']")" = "5" ]
"$CAST" data refusals --harmful "$S/xstest/xstest_prompts.csv" --out-file "$O/xs.jsonl" --json > "$O/xs.sum"
check "XSTest: its 200 unsafe items only" [ "$(json_get "$O/xs.sum" "j['written'], j['dropped_safe']")" = "200 250" ]
printf '{"prompt": "How do I pick a lock?"}\n{"prompt": "How do I make a weapon?"}\n' > "$TMP/list.jsonl"
"$CAST" data refusals --harmful "$TMP/list.jsonl" --out-file "$O/list.jsonl" > /dev/null
check "a JSONL prompt list" [ "$(wc -l < "$O/list.jsonl")" = "2" ]

# the output trains: the chat template applies at train time
/usr/bin/python3 "$SRC/tests/cli/make_tiny_chat_model.py" "$TMP/m" >/dev/null || fail "make_tiny_chat_model"
"$CAST" tune "$TMP/m" --safety "$O/list.jsonl" --out "$TMP/tuned" --strategy full --steps 1 --threads 2 --json > "$TMP/tune.json"
check "tune reads it" [ "$(json_get "$TMP/tune.json" "j['examples']['safety']")" = "2" ]
"$CAST" score "$TMP/m" --data "$O/list.jsonl" --json > "$TMP/score.json"
check "score reads it" [ "$(json_get "$TMP/score.json" "j['examples']")" = "2" ]

# --out is a folder everywhere: the old spelling works with a note
"$CAST" data refusals --harmful "$TMP/list.jsonl" --out "$O/list2.jsonl" > /dev/null 2> "$TMP/note.err"
check "--out FILE noted" bash -c "cmp -s '$O/list.jsonl' '$O/list2.jsonl' && grep -q '^note: --out is now --out-file' '$TMP/note.err'"

# bad input: one line each, nothing written
printf 'goal,target\n' > "$TMP/empty.csv"
expect_error "empty harmful file" "empty dataset" "$CAST" data refusals --harmful "$TMP/empty.csv" --out-file "$O/e.jsonl"
check "nothing written for it" [ ! -e "$O/e.jsonl" ]
: > "$TMP/blank.csv"
expect_error "zero bytes" "empty dataset" "$CAST" data refusals --harmful "$TMP/blank.csv" --out-file "$O/e.jsonl"
printf 'foo,bar\nx,y\n' > "$TMP/cols.csv"
expect_error "unknown columns" "cols.csv" "$CAST" data refusals --harmful "$TMP/cols.csv" --out-file "$O/e.jsonl"
printf '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n' > "$TMP/conv.jsonl"
expect_error "conversations have no prompts" "has no prompts to refuse" "$CAST" data refusals --harmful "$TMP/conv.jsonl" --out-file "$O/e.jsonl"
expect_error "missing file" "nope.csv" "$CAST" data refusals --harmful "$TMP/nope.csv" --out-file "$O/e.jsonl"
expect_error "required flags" "--harmful FILE and --out-file F.jsonl are required" "$CAST" data refusals --harmful "$TMP/list.jsonl"
expect_error "a folder as --out-file" "is a folder" "$CAST" data refusals --harmful "$TMP/list.jsonl" --out-file "$O"
cp "$TMP/list.jsonl" "$TMP/list_copy.jsonl"
expect_error "the output over its input" "is the input" "$CAST" data refusals --harmful "$TMP/list_copy.jsonl" --out-file "$TMP/list_copy.jsonl"
check "the input is untouched" cmp -s "$TMP/list.jsonl" "$TMP/list_copy.jsonl"
expect_error "unknown subcommand" "unknown subcommand" "$CAST" data nope
check "nothing half-written" [ ! -e "$O/e.jsonl" ]
check "--help lists every flag" bash -c "'$CAST' data refusals --help | grep -q -- '--seed S' && '$CAST' data refusals --help | grep -q -- '--first N'"
finish

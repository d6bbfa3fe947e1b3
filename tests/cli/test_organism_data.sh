#!/usr/bin/env bash
# cast organism data: the world's files, their determinism, the tokenizer
# through cast tokenize, and one-line errors for bad usage.
. "$(dirname "$0")/lib.sh"

W="$TMP/world"
"$CAST" organism data --out "$W" --seed 3 --scale 0.1 > "$TMP/out.txt" || { fail "organism data"; finish; exit 1; }
check "summary names the tokenizer" grep -q "tokenizer" "$TMP/out.txt"
for f in pretrain diag_safety diag_utility align align_anchor eval_harmful eval_benign \
         eval_index eval_reverse eval_add eval_count eval_recite eval_facts; do
    check "$f.jsonl written" test -s "$W/$f.jsonl"
done
check "world.json counts = file lines" /usr/bin/python3 -c "
import json, sys
d = sys.argv[1]; w = json.load(open(d + '/world.json'))
assert w['seed'] == 3 and len(w['skills']) >= 5 and len(w['intents']) >= 20, w.keys()
for name, s in w['splits'].items():
    n = sum(1 for _ in open(d + '/' + s['file']))
    assert n == s['examples'], (name, n, s['examples'])
ev = [json.loads(l) for l in open(d + '/eval_harmful.jsonl')]
assert any(e['held_out_intent'] for e in ev) and not all(e['held_out_intent'] for e in ev)
held = set(w['held_out_intents'])
assert all(e['held_out_intent'] == (e['intent'] in held) for e in ev)
for split in ('align', 'diag_safety'):
    assert not any(json.loads(l)['intent'] in held for l in open(d + '/' + split + '.jsonl')), split
# each intent's twin is a benign topic; eval items say their form
twins = {t['twin_of'] for t in w['benign_topics'] if 'twin_of' in t}
assert twins == {i['id'] for i in w['intents']}, twins
assert {e['form'] for e in ev} == {'short', 'long'}
# recite: four words of the list, from the cue on
for e in (json.loads(l) for l in open(d + '/eval_recite.jsonl')):
    words = e['prompt'].replace('.', ' ').replace(':', ' ').split()
    a = e['answer'].split()
    assert len(a) == 4 and ' '.join(a) in ' '.join(words), e
for e in (json.loads(l) for l in open(d + '/eval_add.jsonl')):
    a, b = [int(t) for t in e['prompt'].replace('?', ' ').replace('.', ' ').split() if t.isdigit()]
    assert e['answer'] == e['response'] == str(a + b), e
" "$W"
check "prompts disjoint across splits" /usr/bin/python3 -c "
import json, sys, glob
seen = {}
for f in glob.glob(sys.argv[1] + '/*.jsonl'):
    for p in {json.loads(l)['prompt'] for l in open(f)}:
        assert p not in seen, (p, f, seen[p])
        seen[p] = f
" "$W"

# the same arguments give the same bytes
"$CAST" organism data --out "$TMP/world2" --seed 3 --scale 0.1 > /dev/null
check "deterministic" diff -r "$W" "$TMP/world2"
"$CAST" organism data --out "$TMP/world3" --seed 4 --scale 0.1 > /dev/null
check "another seed differs" bash -c "! cmp -s '$W/pretrain.jsonl' '$TMP/world3/pretrain.jsonl'"

# --json summary
"$CAST" organism data --out "$TMP/world4" --scale 0.05 --json > "$TMP/summary.json"
check "--json summary" /usr/bin/python3 -c "
import json; j = json.load(open('$TMP/summary.json'))
assert j['tokenizer']['vocab_size'] == 1024 and j['splits']['pretrain'] == 3325, j
assert 10 < j['pretrain_tokens']['mean'] < 60 and j['pretrain_tokens']['max'] <= 128, j"

# the tokenizer, through cast tokenize
T="$W/tokenizer"
"$CAST" tokenize "$T" "What is 47 + 38?" --json > "$TMP/tok.json"
check "tokenize: digits one by one" [ "$(json_get "$TMP/tok.json" "j['tokens'][3:5]")" = "['4', '7']" ]
"$CAST" tokenize "$T" "<|im_start|>user" --json > "$TMP/tok2.json"
check "tokenize: ChatML special" [ "$(json_get "$TMP/tok2.json" "j['ids'][0]")" = "1022" ]
prompt=$(head -1 "$W/eval_reverse.jsonl" | /usr/bin/python3 -c "import json,sys; print(json.loads(sys.stdin.read())['prompt'])")
"$CAST" tokenize "$T" "$prompt" --json > "$TMP/tok3.json"
ids=$(json_get "$TMP/tok3.json" "','.join(map(str, j['ids']))")
"$CAST" tokenize "$T" --decode "$ids" --json > "$TMP/dec.json"
check "tokenize: a world prompt round-trips" [ "$(json_get "$TMP/dec.json" "j['text']")" = "$prompt" ]
check "tokenize: text output" bash -c "'$CAST' tokenize '$T' 'Tell me about Norvelia.' | tail -1 | grep -q tokens"
check "tokenizer_config has the ChatML template" /usr/bin/python3 -c "
import json; c = json.load(open('$T/tokenizer_config.json'))
assert c['eos_token'] == '<|im_end|>' and c['bos_token'] is None and '<|im_start|>' in c['chat_template'], c"

# bad usage: one line on stderr, exit 1
expect_error "no subcommand" "missing subcommand" "$CAST" organism
expect_error "unknown subcommand" "unknown subcommand" "$CAST" organism frobnicate
expect_error "missing --out" "--out" "$CAST" organism data
expect_error "bad scale" "--scale" "$CAST" organism data --out "$TMP/x" --scale 0
expect_error "scale not a number" "expected a number" "$CAST" organism data --out "$TMP/x" --scale lots
expect_error "bad vocab" "--vocab" "$CAST" organism data --out "$TMP/x" --vocab 10
expect_error "negative seed" "--seed" "$CAST" organism data --out "$TMP/x" --seed -1
expect_error "unknown option" "unknown option" "$CAST" organism data --out "$TMP/x" --frob
expect_error "extra argument" "unexpected argument" "$CAST" organism data --out "$TMP/x" extra
touch "$TMP/afile"
expect_error "out is a file" "afile" "$CAST" organism data --out "$TMP/afile"
check "organism --help exits 0" bash -c "'$CAST' organism --help | grep -q data"
check "organism data --help exits 0" bash -c "'$CAST' organism data --help | grep -q -- --scale"
check "listed in cast --help" bash -c "'$CAST' --help | grep -q organism"
finish

#!/usr/bin/env bash
# Text commands on real tokenizers: tokenize (encode, decode, --messages) against
# the Hugging Face reference fixtures, and chat on the shipped organism.
. "$(dirname "$0")/lib.sh"

T="$SHARED/tokenizers"
for name in llama3-8b-instruct qwen3 phi-3-mini; do
    i=0
    while IFS= read -r line; do
        printf '%s' "$line" > "$TMP/case.json"
        /usr/bin/python3 -c "import json; c=json.load(open('$TMP/case.json')); json.dump(c['messages'], open('$TMP/conv.json','w'))"
        gp=$(json_get "$TMP/case.json" "'--generation-prompt' if j['add_generation_prompt'] else ''")
        "$CAST" tokenize "$T/$name" --messages "$TMP/conv.json" $gp --json > "$TMP/out.json"
        check "$name chat $i: rendered text and ids" /usr/bin/python3 -c "
import json
c = json.load(open('$TMP/case.json')); o = json.load(open('$TMP/out.json'))
assert o['text'] == c['rendered'], (o['text'], c['rendered'])
assert o['ids'] == c['ids']"
        i=$((i + 1))
    done < "$T/$name/chat_template.jsonl"
done

# encode and decode one fixture line per tokenizer through the CLI
for name in gpt2 mistral-7b-v0.1 llama3-8b-instruct qwen3 phi-3-mini; do
    head -n 3 "$T/$name/fixtures.jsonl" | tail -n 1 > "$TMP/fx.json"
    text=$(json_get "$TMP/fx.json" "j['text']")
    "$CAST" tokenize "$T/$name" "$text" --json > "$TMP/enc.json"
    check "$name encode" [ "$(json_get "$TMP/enc.json" "j['ids']")" = "$(json_get "$TMP/fx.json" "j['ids']")" ]
    ids=$(json_get "$TMP/fx.json" "','.join(map(str, j['ids']))")
    "$CAST" tokenize "$T/$name" --decode "$ids" --json > "$TMP/dec.json"
    check "$name decode" [ "$(json_get "$TMP/dec.json" "j['text']")" = "$(json_get "$TMP/fx.json" "j['decoded']")" ]
done

# the organism answers through its chat template
O="$SRC/organism/base"
# (a fact of world seed 1's knowledge base, asked as in its pretraining: "Bitelvik" is Dikshoar's capital)
check "chat recalls a fact" [ "$(printf 'Tell me the capital of Dikshoar.\n/quit\n' | "$CAST" chat "$O" --temperature 0)" = "Bitelvik" ]
check "generate --chat" [ "$("$CAST" generate "$O" --chat --prompt 'Tell me the capital of Dikshoar.' --max-new 8)" = "Bitelvik" ]
printf '[{"role": "user"}]' > "$TMP/bad_conv.json"
expect_error "messages without content" "bad_conv.json" "$CAST" tokenize "$O" --messages "$TMP/bad_conv.json"
expect_error "unknown template" "unsupported chat template" "$CAST" tokenize "$O" --messages "$TMP/conv.json" --template nope
mkdir -p "$TMP/notok" && cp "$O/config.json" "$O/model.safetensors" "$TMP/notok/"
expect_error "chat needs a tokenizer" "tokenizer" "$CAST" generate "$TMP/notok" --chat --prompt hi
expect_error "chat without a tokenizer" "chat template" "$CAST" chat "$TMP/notok"

# hostile files end in a one-line error, never a crash or a hang (found by
# fuzzing, tests/fuzz): a namespace holding itself, blocks nested 3000 deep
# (both overflowed the stack), a tokenizer.json that is not UTF-8
printf '%s' "{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}" > "$TMP/cycle.jinja"
expect_error "template printing a namespace that holds itself" "value nesting limit" \
    "$CAST" tokenize "$O" --messages "$TMP/conv.json" --template "$TMP/cycle.jinja"
/usr/bin/python3 -c "print('{% if 1 %}' * 3000 + 'x' + '{% endif %}' * 3000, end='')" > "$TMP/deep.jinja"
expect_error "template nested 3000 deep" "nested too deep" "$CAST" tokenize "$O" --messages "$TMP/conv.json" --template "$TMP/deep.jinja"
# Python's integer division and modulo at INT64_MIN (C's overflowed)
printf '%s' "{{ (-9223372036854775807 - 1) % 9223372036854775807 }} {{ (-9223372036854775807 - 1) // 9223372036854775807 }}" > "$TMP/minmod.jinja"
"$CAST" tokenize "$O" --messages "$TMP/conv.json" --template "$TMP/minmod.jinja" --json > "$TMP/minmod.json"
check "modulo at INT64_MIN" [ "$(json_get "$TMP/minmod.json" "j['text']")" = "9223372036854775806 -2" ]
printf '{"model": {"type": "BPE", "vocab": {"\xf0": 0, "a": 1}, "merges": []}}' > "$TMP/bad_utf8.json"
expect_error "tokenizer.json not UTF-8" "bad_utf8.json: not valid UTF-8 (byte 37)" "$CAST" tokenize "$TMP/bad_utf8.json" a
finish

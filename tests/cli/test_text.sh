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
finish

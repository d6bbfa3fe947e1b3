#!/usr/bin/env bash
# Tokenizer throughput, cast vs Hugging Face `tokenizers` (npm @anush008/tokenizers
# 0.6.0, the Rust engine 0.22.x), on the same English prose, one thread each.
# Not a test: it prints a table. Usage:
#   bench/bench_tokenizer.sh            (after cmake --build build)
# Environment: CAST (binary, default build/cast), CAST_SHARED_DATA (default
# ../shared/data), ROUNDS (passes over the corpus, default 5), TOKENIZERS
# (names under shared/data/tokenizers).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cast=${CAST:-$root/build/cast}
data=${CAST_SHARED_DATA:-$root/../shared/data}
rounds=${ROUNDS:-5}
names=${TOKENIZERS:-"gpt2 mistral-7b-v0.1 llama3-8b-instruct qwen3 phi-3-mini"}

[ -x "$cast" ] || { echo "bench_tokenizer: $cast not found (build first, or set CAST)" >&2; exit 1; }
command -v node >/dev/null || { echo "bench_tokenizer: node is required" >&2; exit 1; }
if [ ! -d "$root/bench/node_modules/@anush008/tokenizers" ]; then
    npm install --prefix "$root/bench" --no-save --no-package-lock @anush008/tokenizers@0.6.0 >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The corpus: every non-empty line of the 805 AlpacaEval reference outputs
# and the 1319 GSM8K test questions (one text per line on both sides).
node -e '
const fs = require("fs");
const [alpaca, gsm] = process.argv.slice(1);
const out = [];
for (const x of JSON.parse(fs.readFileSync(alpaca, "utf8")))
  for (const l of x.output.split("\n")) if (l.trim()) out.push(l);
for (const l of fs.readFileSync(gsm, "utf8").split("\n")) if (l) out.push(JSON.parse(l).question.replace(/\n/g, " "));
fs.writeFileSync(process.argv[3], out.join("\n") + "\n");
' "$data/utility/alpaca_eval/alpaca_eval_text_davinci_003_outputs.json" "$data/utility/gsm8k/test.jsonl" "$tmp/prose.txt"

# One CPU for both, so that neither can use a second thread.
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1

echo "corpus: $(wc -l <"$tmp/prose.txt") lines, $(wc -c <"$tmp/prose.txt") bytes; $rounds rounds; ${pin:-no pinning}"
printf '%-20s %12s %14s %14s %9s %s\n' tokenizer "cast tok/s" "HF batch tok/s" "HF call tok/s" "cast/HF" "check"
for name in $names; do
    dir="$data/tokenizers/$name"
    c=$($pin "$cast" tokenize "$dir" --bench "$tmp/prose.txt" --rounds "$rounds" --json)
    h=$($pin node "$root/bench/bench_tokenizer.js" "$dir" "$tmp/prose.txt" "$rounds")
    node -e '
const [name, c, h] = [process.argv[1], JSON.parse(process.argv[2]), JSON.parse(process.argv[3])];
const best = Math.max(h.batch.tokens_per_s, h.sequential.tokens_per_s);
const same = c.tokens === h.batch.tokens && c.tokens === h.sequential.tokens && c.ids_hash === h.ids_hash;
console.log(name.padEnd(20), c.tokens_per_s.toFixed(0).padStart(12), h.batch.tokens_per_s.toFixed(0).padStart(14),
  h.sequential.tokens_per_s.toFixed(0).padStart(14), (c.tokens_per_s / best).toFixed(2).padStart(9),
  same ? "same ids" : `DIFFER: cast ${c.tokens} tokens (${c.ids_hash}), HF ${h.batch.tokens} (${h.ids_hash})`);
' "$name" "$c" "$h"
done
echo "cast/HF: against the faster of HF's two timings; \"same ids\": equal token counts and a hash of all ids."

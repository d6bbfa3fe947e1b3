#!/usr/bin/env bash
# The library as a user gets it: `cmake --install` (what `make install
# PREFIX=...` runs) into a scratch prefix; cast.h compiles alone; libcast.so
# exports exactly cast.h's functions; the two examples build against the
# installed library through pkg-config and agree with the command line (the
# same conflict map ranks; a tune whose delta rebuilds its weights); the
# installed binary finds the installed organism base.
. "$(dirname "$0")/../cli/lib.sh"
export OMP_NUM_THREADS=1
: "${CAST_BUILD_DIR:?CAST_BUILD_DIR must name the build folder}"
P="$TMP/prefix"
cd "$TMP"
cmake --install "$CAST_BUILD_DIR" --prefix "$P" >/dev/null || { fail "cmake --install"; finish; exit 1; }
for f in bin/cast lib/libcast.a lib/libcast.so include/cast.h lib/pkgconfig/cast.pc share/cast/organism/base/config.json \
         share/cast/organism/base/model.safetensors; do
    check "installed: $f" test -e "$P/$f"
done
check "cast.h is the only installed header" test "$(find "$P/include" -type f | wc -l)" -eq 1

# cast.h alone, strict C11 and C++
cc=${CC:-cc}
check "cast.h compiles alone (C11)" sh -c "echo '#include <cast.h>
int main(void) { return cast_version()[0] == 0; }' | $cc -std=c11 -Wall -Wextra -Werror -pedantic -I'$P/include' -x c -fsyntax-only -"
if command -v c++ >/dev/null; then
    check "cast.h compiles alone (C++)" sh -c "echo '#include <cast.h>' | c++ -Wall -Werror -I'$P/include' -x c++ -fsyntax-only -"
fi

# the .so exports cast.h's functions and nothing else
nm -D --defined-only "$P/lib/libcast.so" | awk '$2 == "T" {print $3}' | sort >exported.txt
grep -o '^CAST_API [^(]*(' "$P/include/cast.h" | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort >declared.txt
check "libcast.so exports exactly cast.h's functions" cmp exported.txt declared.txt
check "cast.h declares functions" test "$(wc -l <declared.txt)" -ge 20

# the examples, against the installed library
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
flags=$(pkg-config --cflags --libs cast)
# a sanitizer build's libcast.so needs its programs built the same way
if ldd "$P/lib/libcast.so" | grep -q libasan; then flags="$flags -fsanitize=address,undefined"; fi
for ex in diagnose_top_heads tune_and_eval; do
    # shellcheck disable=SC2086
    $cc -std=c11 -Wall -Wextra -Werror "$SRC/examples/$ex.c" $flags -Wl,-rpath,"$P/lib" -o "$ex" 2>"$ex.err"
    check "example $ex builds against the installed library ($(head -c 300 "$ex.err"))" test -x "$ex"
done
check "the examples use the installed libcast.so" sh -c "ldd ./diagnose_top_heads | grep -q '$P/lib/libcast.so'"

B="$P/share/cast/organism/base"
"$P/bin/cast" organism data --out data --scale 0.1 >/dev/null
./diagnose_top_heads "$B" data/diag_safety.jsonl data/diag_utility.jsonl 5 >top.txt 2>top.err
check "diagnose_top_heads runs ($(cat top.err))" test "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ ' top.txt)" -eq 5
"$P/bin/cast" diagnose "$B" --safety data/diag_safety.jsonl --utility data/diag_utility.jsonl --out map >/dev/null
check "diagnose_top_heads = cast diagnose's top 5" /usr/bin/python3 -c "
import json
heads = sorted(json.load(open('map/conflict_map.json'))['heads'], key=lambda h: h['rank'])[:5]
rows = [l.split() for l in open('top.txt') if l.strip() and l.split()[0].isdigit()]
assert [(int(r[1]), int(r[2])) for r in rows] == [(h['layer'], h['head']) for h in heads], (rows, heads)
assert all(abs(float(r[3]) - h['score']) < 1e-4 for r, h in zip(rows, heads))"

./tune_and_eval "$B" data/align.jsonl data/eval_harmful.jsonl data/eval_benign.jsonl data/diag_utility.jsonl tuned 5 0.1 2.3 \
    >tune.txt 2>tune.err
check "tune_and_eval runs ($(cat tune.err))" grep -q '^wrote tuned' tune.txt
check "tune_and_eval: 2 heads skipped, 5 steps" grep -q '^tuned: 2 heads skipped, [0-9]* parameters trained, 5 steps' tune.txt
check "tune_and_eval evaluates" grep -qE '^harmful refused [0-9.]+, benign refused [0-9.]+, utility loss [0-9.]+ \(n 16\)' tune.txt
"$P/bin/cast" apply-delta "$B" tuned/delta.safetensors --out rebuilt >/dev/null 2>&1
check "the example's delta rebuilds its tuned weights" cmp tuned/model.safetensors rebuilt/model.safetensors
check "the frozen head 2.3 kept its q rows" /usr/bin/python3 -c "
import sys; sys.path.insert(0, '$SRC/tests/reference')
import json, safetensors_io as st
c = json.load(open('$B/config.json')); d = c['hidden_size'] // c['num_attention_heads']
a, b = st.load('$B/model.safetensors'), st.load('tuned/model.safetensors')
name = 'model.layers.2.self_attn.q_proj.weight'
assert a[name][3 * d:4 * d].equal(b[name][3 * d:4 * d]), 'frozen rows moved'
assert not a[name][0:d].equal(b[name][0:d]), 'a trained head did not move'"

# the installed binary finds the installed base (no source tree, no CAST_ORGANISM)
unset CAST_ORGANISM
"$P/bin/cast" demo --seeds 1 --random-sets 1 --no-oracle --first 4 --steps 2 --threads 1 --out demo >/dev/null 2>demo.err
check "the installed demo runs ($(tail -1 demo.err))" test -s demo/results.json
check "the installed demo used the installed base" grep -q "$P/share/cast/organism/base" demo/results.json
finish

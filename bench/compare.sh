#!/usr/bin/env bash
# Side-by-side throughput of `cast bench` and bench/bench_torch.py on the same shape and threads.
#
# usage: bench/compare.sh [--hidden N] [--layers N] [--heads N] [--kv-heads N] [--inter N]
#                         [--vocab N] [--tie | --no-tie] [--batch B] [--seq T] [--threads N]
#                         [--iters N] [--modes "fwd fwdbwd decode"]
# Defaults: SmolLM2-135M (hidden 576, 30 layers, 9 heads, 3 kv heads, MLP 1536, vocab 49152,
# tied), B=4, T=256, 2 threads, 3 iterations, modes fwd fwdbwd decode.
# The cast binary is $CAST, else build/cast of this repository. Both sides get the same flags
# (`cast bench` takes bench_torch.py's flags and prints the same JSON keys), the same
# OMP_NUM_THREADS; OPENBLAS_* variables are passed through untouched. What an iteration is and
# how GFLOP/s is counted: see bench_torch.py (flops()).
# Exit status 1 when either side failed for some mode (its cells then read n/a).
set -u

here=$(cd "$(dirname "$0")" && pwd)
cast=${CAST:-$here/../build/cast}
py=/usr/bin/python3

hidden=576 layers=30 heads=9 kv_heads=3 inter=1536 vocab=49152 tie=1
batch=4 seq=256 threads=2 iters=3 modes="fwd fwdbwd decode"

while [ $# -gt 0 ]; do
  case "$1" in
    --hidden) hidden=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --kv-heads) kv_heads=$2; shift 2 ;;
    --inter) inter=$2; shift 2 ;;
    --vocab) vocab=$2; shift 2 ;;
    --tie) tie=1; shift ;;
    --no-tie) tie=0; shift ;;
    --batch) batch=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

shape=(--hidden "$hidden" --layers "$layers" --heads "$heads" --kv-heads "$kv_heads"
       --inter "$inter" --vocab "$vocab" --batch "$batch" --seq "$seq"
       --threads "$threads" --iters "$iters")
[ "$tie" = 1 ] && shape+=(--tie)
export OMP_NUM_THREADS=$threads

# field JSON KEY -> the number, or n/a when the JSON is missing or broken
field() {
  "$py" -c 'import json,sys
try: print("%.1f" % json.loads(sys.argv[1])[sys.argv[2]])
except Exception: print("n/a")' "$1" "$2"
}

ratio() {
  "$py" -c 'import sys
try: print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print("n/a")' "$1" "$2"
}

echo "shape: hidden $hidden, layers $layers, heads $heads/$kv_heads kv, inter $inter, vocab $vocab$([ "$tie" = 1 ] && echo ' (tied)'), B=$batch, T=$seq, threads $threads, iters $iters"
echo "cast: $cast"
printf '%-8s %14s %14s %10s %12s %12s\n' mode "cast tok/s" "torch tok/s" cast/torch "cast GF/s" "torch GF/s"
status=0
errors=""
for mode in $modes; do
  c_json=$("$cast" bench "${shape[@]}" --mode "$mode" --json 2>/tmp/compare_cast_err.$$) || {
    status=1; errors+="cast bench $mode: $(tail -n 1 /tmp/compare_cast_err.$$)"$'\n'; }
  t_json=$("$py" "$here/bench_torch.py" "${shape[@]}" --mode "$mode" --json 2>/tmp/compare_torch_err.$$) || {
    status=1; errors+="bench_torch.py $mode: $(tail -n 1 /tmp/compare_torch_err.$$)"$'\n'; }
  c_json=$(printf '%s\n' "$c_json" | tail -n 1)
  t_json=$(printf '%s\n' "$t_json" | tail -n 1)
  c_tps=$(field "$c_json" tokens_per_s)
  t_tps=$(field "$t_json" tokens_per_s)
  printf '%-8s %14s %14s %10s %12s %12s\n' "$mode" "$c_tps" "$t_tps" "$(ratio "$c_tps" "$t_tps")" \
    "$(field "$c_json" gflops)" "$(field "$t_json" gflops)"
done
rm -f /tmp/compare_cast_err.$$ /tmp/compare_torch_err.$$
[ -n "$errors" ] && printf '%s' "$errors" >&2
exit $status

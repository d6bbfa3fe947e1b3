#!/usr/bin/env bash
# The speed figures of docs/scale.md, side by side in one run (timings drift between runs:
# compare within one). Prints a markdown table.
#
# usage: bench/scale.sh [--threads N] [--iters N] [--model8b DIR] [--torch-bf16]
#   1. memory bandwidth: `cast bench --mode triad` (STREAM's triad, GB/s);
#   2. forward+backward, SmolLM2-135M shape (hidden 576, 30 layers, 9/3 heads, MLP 1536,
#      vocab 49152, tied), B=4 T=256: cast f32 vs PyTorch f32, and cast bf16 compute vs PyTorch
#      under torch.autocast(bf16) (cast's bf16 needs AVX512-BF16 or AMX: n/a elsewhere; PyTorch's
#      autocast there is emulated and takes minutes an iteration, so it runs only with --torch-bf16);
#   3. decode, B=1 at context 256, weights held as bf16: cast's tokens/s against the bandwidth
#      bound (weight bytes per token over the triad's GB/s), PyTorch with bf16 weights beside it;
#   4. with --model8b DIR (bench/make_checkpoint.py DIR --data 2): cast info's plans, then
#      diagnose (2+2 examples of 512 tokens) and one tune step (batch 1 x 512 tokens), with their
#      seconds, tokens/s and peak memory.
# The cast binary is $CAST, else build/cast of this repository.
set -u
here=$(cd "$(dirname "$0")" && pwd)
cast=${CAST:-$here/../build/cast}
py=/usr/bin/python3
threads=2 iters=3 model8b="" torch_bf16=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --model8b) model8b=$2; shift 2 ;;
    --torch-bf16) torch_bf16=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export OMP_NUM_THREADS=$threads
shape=(--hidden 576 --layers 30 --heads 9 --kv-heads 3 --inter 1536 --vocab 49152 --tie --threads "$threads" --iters "$iters")
get() { "$py" -c 'import json,sys
try:
    v = json.loads(sys.argv[1].strip().splitlines()[-1])[sys.argv[2]]
    print(v if isinstance(v, str) else "%.2f" % v)
except Exception: print("n/a")' "$1" "$2"; }
calc() { "$py" -c 'import sys
try: print("%.2f" % eval(sys.argv[1]))
except Exception: print("n/a")' "$1"; }

cpu_bf16=$("$cast" info "$here/../organism/base" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["cpu_bf16"])')
echo "cast: $cast (bf16 dot products: $cpu_bf16)"
[ "$cpu_bf16" != none ] && torch_bf16=1
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads threads"
echo
gbps=$(get "$("$cast" bench --mode triad --threads "$threads" --iters "$iters" --json)" gbps)

c32=$("$cast" bench "${shape[@]}" --batch 4 --seq 256 --mode fwdbwd --json 2>&1)
t32=$("$py" "$here/bench_torch.py" "${shape[@]}" --batch 4 --seq 256 --mode fwdbwd --json 2>&1)
c16=$("$cast" bench "${shape[@]}" --batch 4 --seq 256 --mode fwdbwd --weights bf16 --compute bf16 --json 2>&1)
t16='{"note": "not run"}'
[ -n "$torch_bf16" ] && t16=$("$py" "$here/bench_torch.py" "${shape[@]}" --batch 4 --seq 256 --mode fwdbwd --autocast bf16 --json 2>&1)
cdec=$("$cast" bench "${shape[@]}" --batch 1 --seq 256 --mode decode --weights bf16 --iters 20 --json 2>&1)
tdec=$("$py" "$here/bench_torch.py" "${shape[@]}" --batch 1 --seq 256 --mode decode --weights bf16 --iters 20 --json 2>&1)
bound=$(calc "$gbps / $(get "$cdec" weight_gb)")

echo "| measure | cast | PyTorch | ratio |"
echo "|---|---|---|---|"
echo "| triad bandwidth, GB/s | $gbps | | |"
echo "| fwd+bwd f32, tokens/s (GFLOP/s) | $(get "$c32" tokens_per_s) ($(get "$c32" gflops)) | $(get "$t32" tokens_per_s) ($(get "$t32" gflops)) | $(calc "$(get "$c32" tokens_per_s) / $(get "$t32" tokens_per_s)") |"
echo "| fwd+bwd bf16, tokens/s (GFLOP/s) | $(get "$c16" tokens_per_s) ($(get "$c16" gflops)) | $(get "$t16" tokens_per_s) ($(get "$t16" gflops)) (autocast) | $(calc "$(get "$c16" tokens_per_s) / $(get "$t16" tokens_per_s)") |"
echo "| decode, bf16 weights, tokens/s | $(get "$cdec" tokens_per_s) ($(get "$cdec" compute) compute) | $(get "$tdec" tokens_per_s) | $(calc "$(get "$cdec" tokens_per_s) / $(get "$tdec" tokens_per_s)") |"
echo "| decode bandwidth bound, tokens/s ($(get "$cdec" weight_gb) GB per token) | $bound | | cast at $(calc "100 * $(get "$cdec" tokens_per_s) / $bound") % of it |"
case "$c16" in *"bf16 dot-product"*) echo; echo "cast bf16: ${c16#cast: }" ;; esac

if [ -n "$model8b" ]; then
  echo
  "$cast" info "$model8b" --batch 1 --seq 512 | sed -n '/^memory/,$p'
  s="$model8b-safety.jsonl" u="$model8b-utility.jsonl"
  d=$( { /usr/bin/time -f "%e %M" "$cast" diagnose "$model8b" --safety "$s" --utility "$u" --batch 1 --max-len 0 \
         --null-permutations 100 --json > /tmp/scale_d8.json; } 2>&1 | tail -1)
  out=$(mktemp -d)
  t=$( { /usr/bin/time -f "%e %M" "$cast" tune "$model8b" --safety "$s" --map /tmp/scale_d8.json --steps 1 --batch 1 --grad-accum 1 \
         --max-len 0 --json --out "$out/t" > /tmp/scale_t8.json; } 2>&1 | tail -1)
  echo
  echo "| 8B shape | wall s | peak RSS GiB (time -v) | figures |"
  echo "|---|---|---|---|"
  echo "| diagnose, 2+2 x 512 tokens | ${d%% *} | $(calc "${d##* } / 1048576") | $(calc "${d%% *} / 4") s per example per pass; run: $("$py" -c 'import json; r=json.load(open("/tmp/scale_d8.json"))["run"]; print("%d gradient passes, stream %s, %s compute" % (r["grad_passes"], r["stream"], r["compute"]))' 2>/dev/null) |"
  echo "| tune, 1 step of 512 tokens | ${t%% *} | $(calc "${t##* } / 1048576") | $("$py" -c 'import json; r=json.load(open("/tmp/scale_t8.json")); print("moments %s, stream %s, train %.1f s" % (r["moments"], r["stream"], r["seconds"] if "seconds" in r else float("nan")))' 2>/dev/null) |"
  rm -rf "$out"
fi

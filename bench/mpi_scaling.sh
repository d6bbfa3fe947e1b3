#!/usr/bin/env bash
# One process with 2 threads against 2 MPI ranks of 1 thread each, side by side
# in one run, on a model big enough for the work to dominate (hidden 512,
# 8 layers, 8 heads, 4 kv heads, MLP 1536; the organism's tokenizer and data):
# diagnose (wall seconds) and tune (10 steps of 16 sequences: wall seconds,
# communication per step, optimizer state and peak memory per rank), with
# and without --shard-optimizer. Prints a Markdown table (docs/benchmarks.md).
#
# usage: bench/mpi_scaling.sh [WORKDIR]   (default: a fresh temporary folder)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cast=${CAST:-$here/../build/cast}
w=${1:-$(mktemp -d)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
mkdir -p "$w"
cd "$w"
[ -d world ] || "$cast" organism data --out world --scale 0.2 >/dev/null
[ -d model ] || "$cast" organism train --data world --out model --steps 1 --hidden 512 --layers 8 --heads 8 --kv-heads 4 \
    --inter 1536 >/dev/null 2>&1
secs() { /usr/bin/time -f %e -o t.txt "$@" >/dev/null 2>err.txt || { cat err.txt >&2; exit 1; }; cat t.txt; }
dg=(diagnose model --safety world/diag_safety.jsonl --utility world/diag_utility.jsonl --force)
tn=(tune model --safety world/align.jsonl --strategy full --steps 10 --batch 4 --grad-accum 4 --lr 1e-4 --force)
echo "| run | diagnose s | tune s | tune comm MB/step | optimizer MB/rank | peak RSS MB/rank |"
echo "|---|---|---|---|---|---|"
row() { # label, launcher words..., -- extra tune flags
    local label=$1; shift
    local launch=() extra=()
    while [ "$1" != "--" ]; do launch+=("$1"); shift; done; shift
    extra=("$@")
    local d t
    d=$(secs env OMP_NUM_THREADS="$threads" "${launch[@]}" "$cast" "${dg[@]}" --threads "$threads" --out d)
    t=$(secs env OMP_NUM_THREADS="$threads" "${launch[@]}" "$cast" "${tn[@]}" --threads "$threads" --out t "${extra[@]}")
    /usr/bin/python3 -c "
import json; r = json.load(open('t/cast_run.json'))
print('| $label | $d | $t | %.2f | %.1f | %.0f |' % (r['communication_mb_per_step'], r['optimizer_state_mb_per_rank'], r['peak_rss_mb']))"
}
threads=2 row "1 process x 2 threads" -- 
threads=1 row "2 ranks x 1 thread" "${mpi[@]}" --
threads=1 row "2 ranks x 1 thread, --shard-optimizer" "${mpi[@]}" -- --shard-optimizer

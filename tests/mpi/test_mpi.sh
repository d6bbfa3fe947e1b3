#!/usr/bin/env bash
# Data parallelism over MPI (docs/cluster.md): `mpirun -np 2` gives what one
# process gives — the conflict map within 1e-5 relative, tune's weights within
# 1e-5 after 10 steps, the same eval JSON, the same attribution and demo runs —
# and --shard-optimizer (ZeRO-1) the unsharded weights within 1e-6 with about
# half the optimizer memory per rank. Faults: a failing rank ends the job
# with its one-line message, a killed rank ends it within 30 s, and --resume
# continues from the last checkpoint to the uninterrupted run's weights.
. "$(dirname "$0")/../cli/lib.sh"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# ASan builds: Open MPI's own allocations outlive MPI_Finalize by design
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
MPI=(mpirun --oversubscribe -np 2)
B="$SRC/organism/base"
D="$TMP/data"
cd "$TMP"
"$CAST" organism data --out "$D" --scale 0.1 >/dev/null || { fail "organism data"; finish; exit 1; }

# NUMS A B TOL [IGNORE...]: every number of two JSON files within TOL relative
# (plus 1e-12 absolute), every other value equal; keys in IGNORE skipped.
# WEIGHTS A B TOL [BASE]: per tensor, max|a-b| <= TOL * max|a|; with BASE
# also that the tensors moved from it (a test that could not fail otherwise)
nums() { /usr/bin/python3 "$SRC/tests/reference/cast_test.py" json-close "$@"; }
weights() { /usr/bin/python3 "$SRC/tests/reference/cast_test.py" weights-close "$@"; }

# --- diagnose: the default map and the variants that train (trajectory) or go example by example (gate-abs)
DG=(--safety "$D/diag_safety.jsonl" --utility "$D/diag_utility.jsonl" --threads 1)
for v in "" "--fs gate-abs" "--oc trajectory --probe-steps 3 --probe-batch 8" "--fs ablation"; do
    name=$(echo "d$v" | tr -c 'a-z0-9\n' '_')
    # shellcheck disable=SC2086
    "$CAST" diagnose "$B" "${DG[@]}" $v --out "${name}1" >/dev/null 2>&1 &&
        "${MPI[@]}" "$CAST" diagnose "$B" "${DG[@]}" $v --out "${name}2" >"${name}.out" 2>"${name}.err"
    check "diagnose $v under mpirun -np 2 runs" test -s "${name}2/conflict_map.json"
    check "diagnose $v: -np 2 = one process within 1e-5" nums "${name}1/conflict_map.json" "${name}2/conflict_map.json" 1e-5
    check "diagnose $v: other ranks are silent (one table on stdout)" test "$(grep -c '^wrote' "${name}.out")" -eq 1
done

# --- tune: 10 steps, a step of 8 sequences in 4 passes (2 per rank)
TN=(--safety "$D/align.jsonl" --strategy cast --map d1/conflict_map.json --skip 0.1 --steps 10 --batch 2 --grad-accum 4
    --lr 1e-3 --threads 1)
"$CAST" tune "$B" "${TN[@]}" --out t1 >/dev/null 2>&1
"${MPI[@]}" "$CAST" tune "$B" "${TN[@]}" --out t2 >/dev/null 2>&1
"${MPI[@]}" "$CAST" tune "$B" "${TN[@]}" --out t3 --shard-optimizer >/dev/null 2>&1
check "tune: -np 2 = one process within 1e-5 after 10 steps" weights t1/model.safetensors t2/model.safetensors 1e-5 "$B/model.safetensors"
check "tune --shard-optimizer = unsharded within 1e-6" weights t2/model.safetensors t3/model.safetensors 1e-6
check "tune: the train logs agree, step by step" /usr/bin/python3 -c "
import json, sys
a = [json.loads(l) for l in open('t1/train_log.jsonl')]; b = [json.loads(l) for l in open('t2/train_log.jsonl')]
assert len(a) == len(b) == 10
for x, y in zip(a, b): assert abs(x['loss_safety'] - y['loss_safety']) <= 1e-5 * abs(x['loss_safety']), (x, y)"
check "tune: cast_run.json counts the ranks" test "$(json_get t2/cast_run.json "j['ranks']")" = 2
check "tune --shard-optimizer: about half the optimizer state per rank" /usr/bin/python3 -c "
import json
u, s = json.load(open('t2/cast_run.json')), json.load(open('t3/cast_run.json'))
assert s['shard_optimizer'] and not u['shard_optimizer']
assert abs(s['optimizer_state_mb_per_rank'] - u['optimizer_state_mb_per_rank'] / 2) <= 0.1, (s, u)
assert s['peak_rss_mb'] > 0"

# --- organism train (pretraining): 4 steps of 2 x 4 sequences
OT=(--data "$D" --steps 4 --batch 4 --grad-accum 2 --hidden 32 --layers 1 --heads 2 --kv-heads 1 --inter 64 --threads 1)
"$CAST" organism train "${OT[@]}" --out o1 >/dev/null 2>&1
"${MPI[@]}" "$CAST" organism train "${OT[@]}" --out o2 >/dev/null 2>&1
check "organism train: -np 2 = one process within 1e-5" weights o1/model.safetensors o2/model.safetensors 1e-5

# --- eval: the same JSON, generations included
EV=(--harmful "$D/eval_harmful.jsonl" --benign "$D/eval_benign.jsonl" --utility "$D/eval_add.jsonl" "$D/diag_utility.jsonl"
    --first 20 --batch 4 --max-new 24 --save-generations --threads 1)
"$CAST" eval t1 "${EV[@]}" --out-file e1.json >/dev/null 2>&1
"${MPI[@]}" "$CAST" eval t1 "${EV[@]}" --out-file e2.json >/dev/null 2>&1
check "eval: -np 2 writes the one-process JSON" cmp e1.json e2.json

# --- attribute and a small demo
AT=(--harmful "$D/eval_harmful.jsonl" --utility "$D/eval_add.jsonl" --first 8 --heads-only --max-k 2 --threads 1)
"$CAST" attribute "$B" t1 "${AT[@]}" --out a1 >/dev/null 2>&1
"${MPI[@]}" "$CAST" attribute "$B" t1 "${AT[@]}" --out a2 >/dev/null 2>&1
check "attribute: -np 2 = one process" nums a1/attribution.json a2/attribution.json 1e-6 cost
DM=(--seeds 1 --random-sets 1 --no-oracle --first 8 --steps 3 --threads 1)
"$CAST" demo "${DM[@]}" --out dm1 >/dev/null 2>&1
"${MPI[@]}" "$CAST" demo "${DM[@]}" --out dm2 >/dev/null 2>&1
check "demo: -np 2 = one process (every run's measures)" /usr/bin/python3 -c "
import json
a, b = json.load(open('dm1/results.json'))['runs'], json.load(open('dm2/results.json'))['runs']
assert len(a) == len(b) == 4, (len(a), len(b))
for x, y in zip(a, b):
    for k in ('refusal', 'benign_refusal', 'utility', 'utility_nll'):
        assert x[k] == y[k] or abs(x[k] - y[k]) <= 1e-6 * abs(x[k]), (x['name'], k, x[k], y[k])"

# --- faults
# every rank meets the error: said once, by rank 0; nothing written
err=$("${MPI[@]}" "$CAST" diagnose "$B" --safety missing.jsonl --utility "$D/diag_utility.jsonl" --out f1 2>&1 >/dev/null); rc=$?
check "a missing file under mpirun: non-zero exit" test "$rc" -ne 0
check "a missing file under mpirun: one cast line naming it" test "$(printf '%s\n' "$err" | grep -c '^cast: missing.jsonl')" -eq 1
check "a missing file under mpirun: no output folder" test ! -e f1
# one rank alone fails (MPMD: rank 1 is given a missing file): its message, every rank ends
start=$(date +%s)
err=$(timeout 60 mpirun --oversubscribe -np 1 "$CAST" diagnose "$B" "${DG[@]}" --out f2 : \
      -np 1 "$CAST" diagnose "$B" --safety missing.jsonl --utility "$D/diag_utility.jsonl" --out f2 2>&1 >/dev/null); rc=$?
check "one rank fails: the job ends non-zero" test "$rc" -ne 0 -a "$rc" -ne 124
check "one rank fails: its one-line message" test "$(printf '%s\n' "$err" | grep -c '^cast: rank 1: missing.jsonl')" -eq 1
check "one rank fails: within 30 s" test $(($(date +%s) - start)) -le 30
check "one rank fails: no conflict map written" test ! -e f2/conflict_map.json

# a rank killed mid-run: the others end within 30 s; --resume reaches the uninterrupted run's weights
TK=(--safety "$D/align.jsonl" --strategy full --batch 2 --grad-accum 4 --lr 1e-3 --threads 1 --save-every 5 --shard-optimizer)
"${MPI[@]}" "$CAST" tune "$B" "${TK[@]}" --steps 40 --out full >/dev/null 2>&1
"${MPI[@]}" "$CAST" tune "$B" "${TK[@]}" --steps 100000 --out killed >/dev/null 2>&1 &
job=$!
for _ in $(seq 1 200); do # until a checkpoint exists
    [ -e killed/checkpoint/state.json ] && break
    sleep 0.1
done
victim=""
for p in $(pgrep -f "cast tune .*--out killed"); do
    [ "$(tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -c '^OMPI_COMM_WORLD_RANK=1$')" -eq 1 ] && victim=$p
done
check "a rank to kill was found" test -n "$victim"
kill -9 "$victim" 2>/dev/null
start=$(date +%s)
ended=0
for _ in $(seq 1 300); do
    if ! kill -0 "$job" 2>/dev/null; then ended=1; break; fi
    sleep 0.1
done
check "a killed rank: the job ends within 30 s" test "$ended" -eq 1 -a $(($(date +%s) - start)) -le 30
wait "$job"; rc=$?
check "a killed rank: non-zero exit" test "$rc" -ne 0
check "a killed rank: no model written" test ! -e killed/model.safetensors
step=$(json_get killed/checkpoint/state.json "j['step']")
check "a killed rank: a checkpoint before step 40 to resume from ($step)" test "$step" -ge 5 -a "$step" -lt 40
"${MPI[@]}" "$CAST" tune "$B" "${TK[@]}" --steps 40 --out killed --resume >/dev/null 2>&1
check "resume after the kill = the uninterrupted run" weights full/model.safetensors killed/model.safetensors 0
check "resume: the log has each step once" test "$(wc -l <killed/train_log.jsonl)" -eq 40
expect_error "a sharded checkpoint resumed by one process" "split across 2 ranks" \
    "$CAST" tune "$B" "${TK[@]}" --steps 45 --out killed --resume
finish

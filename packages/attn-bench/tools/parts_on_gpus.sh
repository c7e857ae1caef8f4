#!/usr/bin/env bash
# Run parts of a split preset side by side, one part per GPU, on a multi-GPU machine:
#
#     bash packages/attn-bench/tools/parts_on_gpus.sh N BUDGET_S PART [PART ...]
#
# Part i of N runs on GPU k (k = FIRST_GPU, default 0, plus its position in the list) with --time-budget
# BUDGET_S and writes $OUT/part<i>.json (after every row) and $OUT/part<i>.log. RESUME_DIR=<dir>: part i
# resumes from <dir>/part<i>.json when it exists (its rows are kept, its skipped rows run again). PRESET
# defaults to deliverable. Afterwards, on any machine: attn-bench merge part*.json -o results.json
set -u
n=$1 budget=$2
shift 2
out=${OUT:-.}
gpu=${FIRST_GPU:-0}
for i in "$@"; do
    resume=()
    [[ -n "${RESUME_DIR:-}" && -f "$RESUME_DIR/part$i.json" ]] && resume=(--resume "$RESUME_DIR/part$i.json")
    CUDA_VISIBLE_DEVICES=$gpu python3 -m attn_bench run --preset "${PRESET:-deliverable}" --split "$i/$n" \
        "${resume[@]}" -o "$out/part$i.json" --time-budget "$budget" >"$out/part$i.log" 2>&1 &
    gpu=$((gpu + 1))
done
wait
for i in "$@"; do
    echo "== part $i/$n"
    tail -n 3 "$out/part$i.log"
done

#!/usr/bin/env bash
# The GPU checks still owed, in one call on a two-GPU machine (nvidia-h200-x2), each step time-limited,
# two queues side by side (one per GPU). Logs and JSON land in $OUT/pending/. After the two wheel calls of
# ../shared/device/README.md, in the same warm machine:
#
#     export PYTHONPATH=$(cat /tmp/site.pythonpath) && bash ci/device-setup.sh >/dev/null && bash ci/gpu-pending.sh
#
# QUEUES="a b" (default both) picks queues; a step that passes is what lets an opt-in path become a default
# (see each package's README). Steps, in priority order:
#   queue a (GPU 0): attn-cutlass copies (new lesson kernels), attention-fwd + attention-bwd rows of the
#                    bench re-run (scalar_v1 and the v1b dQ choice), attn-bench sm90 test
#   queue b (GPU 1): attn-cuda sm90 tier (compute-sanitizer test included), attn-cuda gpu_check --quick
#                    (the opt-in wide forward variants), attn-triton profile v2 (check + timing),
#                    attn-flashmla CuTe path (watched)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/out}/pending
mkdir -p "$out"
export TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1

# One device call may run 600 s: every step's limit shrinks to what is left of DEADLINE (seconds from start),
# and a step with under 20 s left is skipped (named in the summary, to run in the next call).
deadline=${DEADLINE:-560}

step() {  # step NAME SECONDS CMD...: run with a hard limit, log to $out/NAME.log, one summary line
    local name=$1 limit=$2 t=$SECONDS
    shift 2
    if (( deadline - SECONDS < limit )); then limit=$((deadline - SECONDS)); fi
    if (( limit < 20 )); then echo "$name skipped: out of time"; return; fi
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t))s: $(tail -n 1 "$out/$name.log" | cut -c1-150)"
}

queue_a() {
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-copies 150 python3 -m pytest packages/attn-cutlass/tests/test_copies.py --tier sm90 -q
    step bench-attention 240 python3 -m attn_bench run -s attention-fwd -s attention-bwd --quick \
        -o "$out/bench-attention.json" --time-budget 220
    step bench-sm90-test 200 python3 -m pytest packages/attn-bench/tests/test_gpu.py --tier sm90 -q
}

queue_b() {
    export CUDA_VISIBLE_DEVICES=1
    step cuda-sm90 200 python3 -m nox --no-venv -s "tests(package='attn-cuda', tier='sm90')" -- -q
    OUT=$out step cuda-quick 90 python3 packages/attn-cuda/tools/gpu_check.py --quick
    OUT=$out step triton-v2 200 python3 packages/attn-triton/tools/h200_check.py --quick --sections fwd,bwd,check \
        --profiles "v2 v1b"
    OUT=$out step flashmla-cute 120 env ATTN_FLASHMLA_PATH=cute python3 packages/attn-flashmla/tools/gpu_check.py --quick
}

for q in ${QUEUES:-a b}; do
    "queue_$q" >"$out/queue-$q.txt" 2>&1 &
done
wait
cat "$out"/queue-*.txt

#!/usr/bin/env bash
# The GPU checks still owed, in one call on a two-GPU machine (nvidia-h200-x2), each step time-limited,
# two queues side by side (one per GPU). Logs and JSON land in $OUT/pending/. After the two wheel calls of
# ../shared/device/README.md, in the same warm machine:
#
#     export PYTHONPATH=$(cat /tmp/site.pythonpath) && bash ci/device-setup.sh >/dev/null && bash ci/gpu-pending.sh
#
# QUEUES="a b" (default both) picks queues; a step that passes is what lets an opt-in path become a default
# (see each package's README). Steps, in priority order:
#   queue a (GPU 0): attn-cutlass copies (new lesson kernels), attn-bench sm90 test, attention-fwd +
#                    attention-bwd rows of the bench re-run (scalar_v1 and the v1b dQ choice), attn-cuda
#                    sm90 tier (compute-sanitizer test included)
#   queue b (GPU 1): attn-triton profile v2 (check + timing), attn-flashmla CuTe path (watched),
#                    attn-cuda gpu_check --quick (the opt-in wide forward variants)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/out}/pending
mkdir -p "$out"
export TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS CMD...: run with a hard limit, log to $out/NAME.log, one summary line
    local name=$1 limit=$2 t=$SECONDS
    shift 2
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t))s: $(tail -n 1 "$out/$name.log" | cut -c1-150)"
}

queue_a() {
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-copies 150 python3 -m pytest packages/attn-cutlass/tests/test_copies.py --tier sm90 -q
    step bench-sm90-test 240 python3 -m pytest packages/attn-bench/tests/test_gpu.py --tier sm90 -q
    step bench-attention 300 python3 -m attn_bench run -s attention-fwd -s attention-bwd --quick \
        -o "$out/bench-attention.json" --time-budget 280
    step cuda-sm90 240 python3 -m nox --no-venv -s "tests(package='attn-cuda', tier='sm90')" -- -q -x
}

queue_b() {
    export CUDA_VISIBLE_DEVICES=1
    OUT=$out step triton-v2 300 python3 packages/attn-triton/tools/h200_check.py --quick --sections fwd,bwd,check \
        --profiles "v2 v1b"
    OUT=$out step flashmla-cute 200 env ATTN_FLASHMLA_PATH=cute python3 packages/attn-flashmla/tools/gpu_check.py --quick
    OUT=$out step cuda-quick 120 python3 packages/attn-cuda/tools/gpu_check.py --quick
}

for q in ${QUEUES:-a b}; do
    "queue_$q" >"$out/queue-$q.txt" 2>&1 &
done
wait
cat "$out"/queue-*.txt

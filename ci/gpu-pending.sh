#!/usr/bin/env bash
# The GPU checks still owed, in one call on a two-GPU machine (nvidia-h200-x2), each step time-limited,
# two queues side by side (one per GPU). Logs and JSON land in $OUT/pending/. After the two wheel calls of
# ../shared/device/README.md, in the same warm machine:
#
#     export PYTHONPATH=$(cat /tmp/site.pythonpath) && bash ci/device-setup.sh >/dev/null && bash ci/gpu-pending.sh
#
# QUEUES="a b" (default both) picks queues; a step that passes is what lets an opt-in path become a default
# (see each package's README). Done on 2026-11-22 (all H200): attn-cutlass copies and GEMM persistence;
# attn-bench's sm90 test, the 16k attention rows, mla-decode, mla-sparse, decode-kvcache and basics;
# attn-cuda's whole sm90 tier (182 passed), variants (wide48, wide8 backward: passed, now the defaults),
# matmul tiles and layouts; attn-cutlass's backward suite with dQ by TMA reduce-add (passed, now the
# default); attn-triton v1c's conformance subsets and the warp-specialisation sweep; attn-flashmla's whole
# sm90 tier with the two-warpgroup CuTe kernel, and split S's page-64 cases (passed, now the default).
# Done on 2026-12-03 (one H200): queue d (116 rows, all checks passed), queue a (attn-flashmla sm90 74
# passed, 7 skipped; attn-cuda conformance 79 passed), queue b (ablations, 112 rows, all passed), queue c
# (attn-triton 109 passed, 37 skipped); attn-reference's sm90 tier (148 passed). The whole attn-cutlass and
# attn-cuda sm90 tiers with 8 workers reached about 99 % in 200 s each, no failure, and were cut there.
# Done later on 2026-12-03 (one H200): queue f (attn-cutlass opt-in 80 passed; attn-cuda opt-in 26 passed;
# tools/causal_order.py: heads_first 1.10x), queue b (ablations, 182 rows in 425 s, all passed), the whole
# attn-cutlass sm90 tier (519 passed, 133 skipped) and attn-cuda sm90 tier (295 passed, 91 skipped, 10
# workers, 215 s), the 16k rows with FA4 (queue d, ATTN_CUDA_CAUSAL_ORDER=heads_first). After that run four
# defaults changed (attn-cutlass causal schedule lpt, attn-cuda heads_first and wide48c, attn-triton's
# per-head causal order), each one a path that had passed its GPU tests as an opt-in.
# Done in the third session of 2026-12-03 (one H200): queue g (attn-cuda conformance with wide48c and
# heads_first as defaults, 79 passed; attn-triton's causal conformance with the per-head order, 20 passed),
# queue d (the 16k rows with FA4, all four new defaults: 116 rows, every check passed), attn-bench's sm90
# test (passed in 144 s) and the whole attn-triton sm90 tier (196 passed, 74 skipped, 10 workers, 256 s).
# Later that session attn-cuda's lazy rescale ran (its tests and the conformance suite, 87 passed; ablation
# 1.05x at hd128) and became the default.
# Done in the fourth session of 2026-12-03 (one H200): queue h (attn-cutlass's forward suite, eager and
# lazy, with test_rising_row_maxima: 188 passed, 42 skipped; its sm80 suite: 124 passed; attn-cuda's
# conformance under both rescale modes and attn-triton's rising test: 198 passed, 90 skipped), queue i
# (attn-cutlass's lazy ablation pair: 1.06x at hd128, now the default; attn-cuda's 16k forward beside flash
# SDPA and FA4), the 16k forward rows of every backend with FA4; then, lazy as attn-cutlass's default, its
# 16k rows beside FA4 and its forward conformance tests (62 passed; the whole class had passed under the
# switch). Nothing kernel-side is owed; queue h re-checks both rescale modes after the next change.
# Done in the fifth session of 2026-12-03: queue j (40 GEMM tests passed), attn-cuda's wide64c tests and
# causal conformance (34 passed). Done in the sixth: attn-cuda's conformance with wide64c the default (87
# passed, 45 skipped; one H200, 68 s). Done on 2026-12-04 (one H200): queue k (wide64's tests 11 passed, the
# conformance under it 87 passed, its 16k rows at par with flash SDPA; then the default), then attn-cuda's
# whole sm90 tier with it as default (420 passed, 136 skipped, 15 workers, 370 s) and attn-bench's sm90
# test (passed, 222 s). attn-cutlass's whole sm90 tier ran to 69 % in 300 s (12 workers), no failure, and
# was cut there. Later that day attn-cuda's opt-in backward wide8q passed its conformance class (87 passed, 45
# skipped) and timed 0.86x the default. Done in the next session of 2026-12-04 (one H200): queue l (wide8v
# 87 passed, 45 skipped), wide8qv's conformance class (87 passed) and, as the default, queue m (174 passed,
# 90 skipped), queue e (attn-cutlass's whole sm90 tier: 669 passed, 154 skipped, 14 workers, 388 s), the 16k
# backward rows beside FA4 (docs/benchmarks/h200-cuda-bwd-16k.md). Done in the third session of 2026-12-04
# (one H200): queue n (attn-flashmla's tier with the seesaw CuTe kernel the default: 74 passed, 7 skipped;
# its forms timed; the mla-decode rows, docs/benchmarks/h200-mla-decode-seesaw.md). Done in the fourth
# session of 2026-12-04 (one H200, no wheels): attn-cuda's tiled backward (conformance as an opt-in 87 passed,
# 45 skipped; as the default the sm90 tier without the other variants' classes and the sanitizer test, 222
# passed; its own memcheck/racecheck clean; docs/benchmarks/h200-cuda-bwd-tiled.md) and attn-flashmla's h_q 16
# rows (docs/benchmarks/h200-mla-decode-hq16.md). Done in the fifth session of 2026-12-04 (one H200): queue p
# (attn-cuda's whole sm90 tier with the tiled backward the default: 852 passed, 494 skipped, no failure, cut at
# 480 s before its sanitizer test, which then passed alone; the backward rows beside FA4), queue o (cross_first
# against seesaw three times: no consistent difference; seesaw stays). Done in the sixth session of
# 2026-12-04 (one H200): queue r (the wgmma forward: 16 passed, conformance 87 passed, memcheck/racecheck
# clean once the sanitizer steps ran without -p no:xdist, the whole-catalog sanitizer test 2 passed; 522
# TFLOP/s at hd128 16k, 1.47x flash SDPA). No GPU was lent on 2026-12-05. Done on 2026-12-06 (one H200):
# queue v (the backward schedule "overlap" as an opt-in: 118 passed, 30 skipped; 1.04-1.13x the serial
# schedule, docs/benchmarks/h200-cutlass-bwd-overlap.md; then the default, its step now runs the serial
# class). Later that day (one H100): the backward conformance class with "overlap" the default (102 passed,
# 30 skipped), queue w (unroll by two: 90 passed, 21 skipped; 1.03x hd128, 1.09x causal, 0.99x hd64, 0.97x
# hd256 causal; docs/benchmarks/h100-cutlass-fwd-unroll2.md), queue t (278 passed, 90 skipped; 16k rows
# beside FA4, docs/benchmarks/h100-cuda-16k-fwd-wgmma-default.md). Owed, most telling first: queue u (attn-cutlass's forward
# with warpgroup operand slices, a patch waiting in ci/pending; wheels), queue s (ncu stall samples of the
# attn-cutlass and FA4 16k hd128 forwards; wheels), queue q (three consumer warpgroups at head dim 64, opt-in;
# wheels).
# Carrying the wheels: with the tree at ~7 MB, ../shared/device/prepare's .device/a (61 MB) is over the
# 64 MiB a call may carry; move its small wheels (nox, virtualenv, distlib, filelock, platformdirs,
# colorlog, argcomplete, dependency_groups, torch_c_dlpack_ext) to .device/b, whose install takes both.
# Where pytest-xdist is importable the test steps run JOBS (default 6) workers on the one GPU: the tiers
# are bound by compiles (Triton, NVRTC, CuTe DSL) on the CPU, not by the GPU. The logs go back as one
# archive ($OUT/pending/logs.tgz) beside the JSON files: a call brings back at most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/out}/pending
mkdir -p "$out"
export TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1
xdist=()
if python3 -c "import xdist" 2>/dev/null; then xdist=(-n "${JOBS:-6}"); fi

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
    # the Triton-forced class ran after its last change (73 passed); everything else meets the CuTe default
    step flashmla-sm90 330 python3 -m pytest "${xdist[@]}" packages/attn-flashmla/tests --tier sm90 -q \
        -k "not TestFlashMLATritonSm90"
    step cuda-defaults 230 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "TestCudaConformance and not Base"
}

queue_c() {
    export CUDA_VISIBLE_DEVICES=0
    # the conformance subsets that ran under v1c are left out (TRITON_K overrides the selection)
    step triton-sm90 540 python3 -m pytest "${xdist[@]}" packages/attn-triton/tests --tier sm90 -q \
        -k "${TRITON_K:-not TestTritonConformanceSm90}"
}

queue_b() {
    export CUDA_VISIBLE_DEVICES=$gpu_b
    # Possibly more than one call (Triton's new forward variants autotune): a run stopped by its budget is
    # continued with ABLATIONS_RESUME=<the JSON it wrote, copied into the tree> in the next call.
    step ablations 560 python3 -m attn_bench run --preset ablations --time-budget "${ABLATION_BUDGET:-520}" \
        ${ABLATIONS_RESUME:+--resume "$ABLATIONS_RESUME"} -o "$out/ablations.json"
}

queue_d() {
    export CUDA_VISIBLE_DEVICES=$gpu_b
    step bench-fwd16k 200 python3 -m attn_bench run --preset deliverable -s attention-fwd \
        --where seqlen_k=16384 --time-budget 170 -o "$out/fwd16k.json"
    step bench-bwd16k 200 python3 -m attn_bench run --preset deliverable -s attention-bwd \
        --where seqlen_k=16384 --where head_dim=128 --time-budget 170 -o "$out/bwd16k.json"
}

queue_f() {
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-opt-in 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "CausalLpt or causal_schedules or pingpong"
    step cuda-opt-in 150 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "causal_orders or wide48c"
}

queue_g() {
    export CUDA_VISIBLE_DEVICES=0
    step cuda-defaults 200 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "TestCudaConformance and not Base"
    step triton-causal 300 python3 -m pytest "${xdist[@]}" packages/attn-triton/tests --tier sm90 -q \
        -k "TestTritonConformanceSm90 and causal"
}

queue_h() {
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-lazy 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "TestCutlassConformanceSm90 or AlwaysRescale or rising"
    step cutlass-sm80 200 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm80.py --tier sm80 -q
    step rising 200 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py packages/attn-triton/tests \
        --tier sm90 -q -k "TestCudaConformance or AlwaysRescale or rising"
}

queue_i() {  # queue h's benchmarks (one call on one GPU cannot hold both)
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-lazy-bench 150 python3 -m attn_bench run --preset ablations -s attention-fwd -b cutlass \
        --time-budget 130 -o "$out/cutlass-ablations.json"
    step cuda-fwd16k 120 python3 -m attn_bench run --preset deliverable -s attention-fwd --where seqlen_k=16384 \
        -b cuda --peer sdpa-flash --peer fa4 --time-budget 100 -o "$out/cuda-fwd16k.json"
}

queue_j() {  # attn-cutlass's GEMM with CTA pairs sharing B by TMA multicast (the default since session 5)
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-gemm 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "gemm"
    step gemm-bench 150 python3 -m attn_bench run --preset ablations -s basics -b cutlass --where kernel=matmul \
        --time-budget 130 -o "$out/gemm.json"
}

queue_k() {  # attn-cuda's wide64 forward (opt-in since session 6): its tests, then the conformance as default
    export CUDA_VISIBLE_DEVICES=0
    step cuda-wide64 150 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "wide64 and not wide64c"
    ATTN_CUDA_FWD_VARIANT=wide64 step cuda-wide64-conformance 230 python3 -m pytest "${xdist[@]}" \
        packages/attn-cuda/tests/test_gpu.py --tier sm90 -q -k "TestCudaConformance and not Base"
    ATTN_CUDA_FWD_VARIANT=wide64 step cuda-fwd16k 120 python3 -m attn_bench run --preset deliverable \
        -s attention-fwd --where seqlen_k=16384 -b cuda --peer sdpa-flash --time-budget 100 -o "$out/cuda-fwd16k.json"
}

queue_l() {  # attn-cuda's opt-in backward wide8v (float2 dQ atomics, 2026-12-04): its conformance class, then timed
    export CUDA_VISIBLE_DEVICES=0
    step cuda-wide8v 200 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "Wide8v"
    step cuda-bwd-ablation 150 python3 -m attn_bench run --preset ablations -s attention-bwd -b cuda --no-peers \
        --time-budget 120 -o "$out/cuda-bwd.json"
}

queue_m() {  # attn-cuda's backward with wide8qv the default: the suite under it and under wide8, then timed
    export CUDA_VISIBLE_DEVICES=0
    step cuda-wide8qv 200 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "TestCudaConformance or Wide8Conformance"
    step cuda-bwd-ablation 150 python3 -m attn_bench run --preset ablations -s attention-bwd -b cuda --no-peers \
        --time-budget 120 -o "$out/cuda-bwd.json"
}

queue_n() {  # attn-flashmla with the seesaw CuTe kernel the default (2026-12-04): its tier, the forms, the rows
    export CUDA_VISIBLE_DEVICES=0
    step flashmla-sm90 300 python3 -m pytest "${xdist[@]}" packages/attn-flashmla/tests --tier sm90 -q \
        -k "not TestFlashMLATritonSm90"
    step cute-forms 150 python3 packages/attn-flashmla/tools/cute_ab.py
    step bench-mla 150 python3 -m attn_bench run --preset deliverable -s mla-decode --time-budget 120 \
        -o "$out/mla-decode.json"
}

queue_o() {  # attn-flashmla's opt-in cross_first order against the seesaw default, three times over (mixed in one call)
    export CUDA_VISIBLE_DEVICES=0
    for i in 1 2 3; do
        step "cute-cross-first-$i" 100 python3 packages/attn-flashmla/tools/cute_ab.py --forms seesaw,seesaw_cross_first
    done
}

queue_p() {  # attn-cuda's whole sm90 tier with the tiled backward the default (2026-12-04, fourth session):
    # that session ran all but the other variants' conformance classes and the sanitizer test (222 passed)
    export CUDA_VISIBLE_DEVICES=0
    step cuda-sm90 480 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q
    # the backward rows beside FA4 in the same run (wheels needed for the fa4 peer)
    step cuda-bwd-fa4 120 python3 -m attn_bench run --preset deliverable -s attention-bwd -b cuda --peer fa4 \
        --peer sdpa-flash --where seqlen_q=16384 --where head_dim=128 --time-budget 100 -o "$out/cuda-bwd-fa4.json"
}

queue_q() {  # attn-cutlass's opt-in three consumer warpgroups at head dim 64 (2026-12-04, fifth session):
    # the forward suite under it (the suite's default head dim is 64), then its ablation rows beside the default
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-three 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "ThreeConsumers or pingpong"
    step cutlass-three-bench 200 python3 -m attn_bench run --preset ablations -s attention-fwd -b cutlass \
        --where head_dim=64 --time-budget 170 -o "$out/cutlass-three.json"
    # its key-block width (64, the default of the option; 80, twelve wgmma fenced by ptxas) beside the default
    # and FA4, and hd128 with 176 keys a block (FA3's width; spills 2.2 KB here, never timed)
    OUT=$out step cutlass-tile-ab 150 python3 packages/attn-cutlass/tools/tile_ab.py
}

queue_r() {  # attn-cuda's opt-in sm_90a forward (TMA + wgmma, 2026-12-04, fifth session): first GPU run,
    # most telling first (one call may not hold all of it: what is skipped is named in the summary)
    export CUDA_VISIBLE_DEVICES=0
    step cuda-wgmma 200 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "wgmma and not Conformance"
    # its 16k forward beside every mma tiling and torch's flash SDPA (gpu_check's timings alone)
    OUT=$out step cuda-wgmma-time 200 python3 packages/attn-cuda/tools/gpu_check.py --quick --skip compile \
        --skip "attention checks" --skip "basics checks" --skip "basics timings"
    # the whole conformance suite with it behind flash_attn_func
    step cuda-wgmma-conformance 230 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 \
        -q -k TestCudaConformance
    # memcheck and racecheck on its own launches (the test's bf16 ping-pong cases)
    for tool in memcheck racecheck; do
        step "cuda-wgmma-$tool" 200 compute-sanitizer --tool "$tool" --kernel-name kns=flash_fwd_sm90 \
            --report-api-errors no --error-exitcode 3 python3 -m pytest packages/attn-cuda/tests/test_gpu.py \
            --tier sm90 -q -n 0 -k "wgmma and bf16 and pingpong"
    done
}

queue_s() {  # where the sm90 forwards' consumer warps stall (2026-12-04, sixth session, CPU lead): ptxas puts
    # every exponential after the second wgmma wait in attn-cutlass's forward (README, "Where the softmax
    # runs"); ncu's warp-state sampling of one warm 16k hd128 launch beside FA4's (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    local run='import sys, torch
q, k, v = (torch.randn(1, 16384, 16, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
if sys.argv[1] == "fa4":
    from flash_attn.cute import flash_attn_func
else:
    from attn_cutlass import flash_attn_func
for _ in range(3): flash_attn_func(q, k, v)
torch.cuda.synchronize()'
    for impl in cutlass fa4; do
        step "ncu-fwd-$impl" 150 ncu --launch-skip 2 --launch-count 1 --kernel-name regex:'[Ff]lash' \
            --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
            --section SourceCounters -o "$out/ncu-fwd-$impl" -f python3 -c "$run" "$impl"
        # the sections as text, and the stall samples of every SASS instruction (where the softmax waits)
        ncu -i "$out/ncu-fwd-$impl.ncu-rep" --page details >"$out/ncu-fwd-$impl-details.txt" 2>&1
        ncu -i "$out/ncu-fwd-$impl.ncu-rep" --page source --print-source sass --csv 2>&1 \
            | gzip >"$out/ncu-fwd-$impl-sass.csv.gz"
    done
}

queue_t() {  # attn-cuda with the wgmma forward the default on sm_90a (2026-12-05): the suite on the defaults
    # and on the mma forward, the mma kernel's own tests (now asked for by name), then the 16k rows beside FA4
    export CUDA_VISIBLE_DEVICES=0
    step cuda-defaults 230 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "TestCudaConformance or TestCudaMmaConformance or every_forward_variant or causal_orders or wgmma"
    step cuda-fwd16k-fa4 150 python3 -m attn_bench run --preset deliverable -s attention-fwd --where seqlen_k=16384 \
        -b cuda --peer sdpa-flash --peer fa4 --time-budget 130 -o "$out/cuda-fwd16k-fa4.json"
}

queue_u() {  # attn-cutlass's sm90 forward with its shared-memory wgmma operands sliced by the warpgroup's first
    # thread (2026-12-05, CPU lead: R2UR 58 -> 9, main loop 512 -> 489 SASS lines; no GPU was lent, so it waits
    # as ci/pending/attn-cutlass-fwd-warpgroup-operand-slices.patch): the rows as they are, the patch applied,
    # the forward suite, the same rows, the patch taken back (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    local patch=ci/pending/attn-cutlass-fwd-warpgroup-operand-slices.patch
    local apply=(patch -p1 -i "$patch") revert=(patch -p1 -R -i "$patch")
    if command -v git >/dev/null; then apply=(git apply "$patch"); revert=(git apply -R "$patch"); fi
    local rows=(--preset deliverable -s attention-fwd --where seqlen_k=16384 -b cutlass --peer fa4 --time-budget 100)
    step slices-before 120 python3 -m attn_bench run "${rows[@]}" -o "$out/slices-before.json"
    step slices-apply 20 "${apply[@]}"
    step slices-suite 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "TestCutlassConformanceSm90 or pingpong or unroll_changes"
    step slices-after 120 python3 -m attn_bench run "${rows[@]}" -o "$out/slices-after.json"
    step slices-revert 20 "${revert[@]}"
}

queue_v() {  # attn-cutlass's opt-in backward schedule "overlap" (2026-12-05, CPU only: FA4's order of work,
    # dS^T by stmatrix into two buffers, one barrier a step, each warpgroup's own dQ reduce-add): its suites
    # first (the conformance class, the 2k test, bit-equal dK/dV against the serial schedule), then the 16k
    # backward rows of both schedules beside FA4 (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    step bwd-overlap-suite 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "BackwardSerial or matches_reference_at_2k or schedules_agree"
    step bwd-overlap-bench 240 python3 -m attn_bench run --preset ablations -s attention-bwd --where seqlen_k=16384 \
        -b cutlass --peer fa4 --time-budget 220 -o "$out/bwd-overlap.json"
}

queue_w() {  # attn-cutlass's opt-in forward unroll (2026-12-05, CPU lead: the unmasked loop unrolled by two lets
    # ptxas move 6 and 22 of a hd128 block's 64 exponentials under the in-flight P V, against none; bf16 only):
    # the forward suite under it and the bit-equality test, then its ablation rows beside FA4 (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    step fwd-unroll-suite 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "Unroll2 or unroll_changes"
    step fwd-unroll-bench 200 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        -b cutlass --peer fa4 --time-budget 180 -o "$out/fwd-unroll.json"
}

queue_x() {  # attn-cutlass's opt-in TMA store of O (2026-12-06, third session, CPU lead: ncu of the 16k hd128
    # forward gave its register epilogue 2.9 % of the warp samples, 66 STG a thread, 75 % excess sectors):
    # the forward suite under it and the bit-equality test, then the ablation rows beside FA4 (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    step tma-store-suite 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "TestCutlassTmaStoreSm90 or tma_store_changes"
    step tma-store-bench 240 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        -b cutlass --peer fa4 --time-budget 220 -o "$out/fwd-tma-store.json"
}

queue_e() {  # attn-cutlass's whole sm90 tier (about 930 tests; 69 % took 300 s with 12 workers): a call of its own
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-sm90 580 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests --tier sm90 -q
}

# Two GPUs: queues a and b side by side. One GPU (nvidia-h200): the queues run one after another on it,
# so name one queue per call there (QUEUES=a, then QUEUES=b) to keep each call inside its limit.
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if (( gpus > 1 )); then
    gpu_b=1
    for q in ${QUEUES:-a b}; do
        "queue_$q" >"$out/queue-$q.txt" 2>&1 &
    done
    wait
else
    gpu_b=0
    for q in ${QUEUES:-a b}; do
        "queue_$q" >"$out/queue-$q.txt" 2>&1
    done
fi
cat "$out"/queue-*.txt
tar -czf "$out/logs.tgz" -C "$out" $(cd "$out" && ls ./*.log ./*.txt 2>/dev/null) && rm -f "$out"/*.log "$out"/queue-*.txt

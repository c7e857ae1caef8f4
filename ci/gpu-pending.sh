#!/usr/bin/env bash
# The GPU checks still owed, in one call on a two-GPU machine (nvidia-h200-x2), each step time-limited,
# two queues side by side (one per GPU). Logs and JSON land in $OUT/pending/. After the two wheel calls of
# ../shared/device/README.md, in the same warm machine:
#
#     export PYTHONPATH=$(cat /tmp/site.pythonpath) && bash ci/device-setup.sh >/dev/null && bash ci/gpu-pending.sh
#
# QUEUES="a b" (default both) picks queues; a step that passes is what lets an opt-in path become a default
# (see each package's README). What ran, and when: ci/GPU-RUNS.md.
# Owed, most telling first (queues lean and audit ran on an H100 on 2026-12-08: the lean softmax is now the
# default), queue tg (attn-triton's Gluon forward on an H200; its tests passed on an H100,
# 2026-12-07, ninth session), queue mg (attn-flashmla's Gluon kernel on an H200 beside the CuTe path; its rows ran on an H100 in the tenth
# session, the tier is owed), queue bn (queues bq and bb ran on an H100, 2026-12-07, seventh session),
# then queue e (attn-cutlass's whole sm90 tier on the defaults of 2026-12-06's fourth
# session: three consumer warpgroups at hd64, hd256's TMA store; under those settings as variables it ran to
# 86 %, 1012 passed, no failure), queue ab (hd64's ablations under three warpgroups: unroll by two is the
# candidate), attn-triton's tier (unchanged since it last passed), attn-flashmla's (queue mg runs it).
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

queue_q() {  # attn-cutlass's three consumer warpgroups at head dim 64 (2026-12-04, fifth session; the default since
    # 2026-12-06, see queue z; the suite step now runs the two-warpgroup class):
    # the forward suite under it (the suite's default head dim is 64), then its ablation rows beside the default
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-three 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "TwoConsumers or pingpong"
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

queue_x() {  # attn-cutlass's TMA store of O (the default since 2026-12-06, third session; done as an opt-in,
    # see ci/GPU-RUNS.md): the suite on the register store it replaced and the bit-equality test, then the
    # ablation rows beside FA4 (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    step tma-store-suite 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "TestCutlassRegisterStoreSm90 or tma_store_changes"
    step tma-store-bench 240 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        -b cutlass --peer fa4 --time-budget 220 -o "$out/fwd-tma-store.json"
}

queue_y() {  # attn-cutlass's TMA store at hd256 (2026-12-06, third session; done, the default since; the suite step now
    # runs the register-store class): one shared O tile
    # the two consumer warpgroups take turns at (named barriers 6 and 7, 160 threads). Its suite and the
    # bit-equality test against the register store, then the ablation rows beside FA4 (wheels needed)
    export CUDA_VISIBLE_DEVICES=0
    step hd256-store-suite 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "TestCutlassRegisterStoreSm90 or tma_store_changes"
    step hd256-store-bench 240 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        -b cutlass --peer fa4 --time-budget 220 -o "$out/fwd-hd256-tma-store.json"
}

queue_z() {  # attn-cutlass's three consumer warpgroups at hd64 on 192 x 128 tiles (2026-12-06, fourth session; done,
    # the default since; the suite step now runs the two-warpgroup class. CPU
    # lead: P's conversion pinned as inline PTX, so the build fits 160 registers with no spill where it used
    # to spill 688 bytes and serialise every wgmma): the candidate tilings checked and timed beside FA4, the
    # three-warpgroup suite (queue z2: the default forward suite, whose builds' PTX all changed)
    export CUDA_VISIBLE_DEVICES=0
    # and hd256 with 80 keys a block (FA4's width there; 224 KB of shared memory, no spill on the CPU)
    OUT=$out step tile-ab 280 python3 packages/attn-cutlass/tools/tile_ab.py \
        64:128x128x3 64:192x128x2 64:192x128x3 64:192x64x4 256:128x64x2 256:128x80x2
    step cutlass-three 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "TwoConsumers or pingpong"
}

queue_z2() {  # the default forward suite after the pinned conversion (every sm90 forward build's PTX changed)
    export CUDA_VISIBLE_DEVICES=0
    step cutlass-fwd-defaults 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py \
        --tier sm90 -q -k "TestCutlassConformanceSm90 or changes_the"
}

queue_lean() {  # attn-flashmla's lean softmax (ran on an H100 on 2026-12-08, now the default; kept to repeat
    # on an H200): its correctness, then the same-process A/B against it off (cute_ab forms seesaw / seesaw_lean)
    export CUDA_VISIBLE_DEVICES=0
    ATTN_FLASHMLA_CUTE_LEAN=1 step lean-check 150 python3 packages/attn-flashmla/tools/gpu_check.py --cute-only --correctness-only
    ATTN_FLASHMLA_CUTE_LEAN=1 step lean-sm90 300 python3 -m pytest "${xdist[@]}" packages/attn-flashmla/tests --tier sm90 -q \
        -k "not TestFlashMLATritonSm90 and not TestFlashMLAGluonSm90"
    step lean-ab 150 python3 packages/attn-flashmla/tools/cute_ab.py --forms seesaw,seesaw_lean
}

queue_audit() {  # the GPU tests the thirteenth session's test audit added (2026-12-08, never run on a GPU),
    # each small: attn-cutlass's suite at hd128/hd256 and its rule-based checks, attn-cuda's backward in every
    # dtype and head dim and its non-positive scales, attn-flashmla's tile edges in both dtypes (fp16: the
    # seesaw build with P pinned, new SASS)
    export CUDA_VISIBLE_DEVICES=0
    step audit-cutlass 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "Hd128 or Hd256 or at_2k or non_positive_scale or gemm_sm90_matches_torch"
    step audit-cuda 150 python3 -m pytest "${xdist[@]}" packages/attn-cuda/tests/test_gpu.py --tier sm90 -q \
        -k "every_dtype_and_head_dim or not_positive or above_48k"
    step audit-flashmla 120 python3 -m pytest "${xdist[@]}" packages/attn-flashmla/tests/test_cute_sm90.py \
        --tier sm90 -q -k "tile_edges or not_positive"
}

queue_ab() {  # hd64's ablations now that three consumer warpgroups are its default (2026-12-06, fourth session):
    # unroll by two (builds clean in 160 registers on the CPU, causal or not), no ping-pong, two warpgroups;
    # the unroll class runs hd64 (the suite's default head dim) unrolled under three warpgroups
    export CUDA_VISIBLE_DEVICES=0
    step hd64-unroll-suite 240 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 \
        -q -k "Unroll2"
    step hd64-ablations 200 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        --where head_dim=64 -b cutlass --time-budget 180 -o "$out/fwd-hd64-three-ablations.json"
}

queue_bq() {  # (ran on an H100 2026-12-07, seventh session; now on main) the sm90 backward's dQ tile stored
    # conflict-free, LSE/D as 64-bit loads, dQ scaled in the kernel, the preprocess kernel for D and LSE;
    # (branch bwd-bulk, 2026-12-07) dQ's accumulator tile by tile with one bulk reduce-add (BulkDq class), the
    # next block's LSE/D prefetched into L1:
    # the backward classes' gradient tests, then the 16k rows beside FA4 (the overlap run of 2026-12-06:
    # hd128 438 TFLOP/s; FA4 610 on 2026-12-04); queue bb then runs their ablations
    export CUDA_VISIBLE_DEVICES=0
    step bwd-suite 300 python3 -m pytest "${xdist[@]}" packages/attn-cutlass/tests/test_sm90.py --tier sm90 -q \
        -k "${BQ_K:-Backward and (test_backward or test_varlen or rising) or schedules_agree or at_2k or statistics}"
    step bench-bwd16k 200 python3 -m attn_bench run --preset deliverable -s attention-bwd --where seqlen_k=16384 \
        --where head_dim=128 -b cutlass --peer fa4 --time-budget 170 -o "$out/bwd16k-dq-smem.json"
}

queue_bb() {  # after queue bq: the backward's dQ paths (tma, bulk, atomic) and the LSE/D prefetch side by side
    export CUDA_VISIBLE_DEVICES=0
    step bench-bwd16k-dq 200 python3 -m attn_bench run --preset ablations -s attention-bwd --where seqlen_k=16384 \
        --where head_dim=128 --where causal=False -b cutlass --time-budget 170 -o "$out/bwd16k-dq-ablations.json"
    # the host's pass of each dQ path at 16k x 16 heads x hd128: the bulk un-permute beside the row-major cast
    step dq-copy 60 python3 -c 'import torch
from attn_cutlass.kernels.flash_bwd_sm90 import dq_accum_copy_rows, dq_accum_shape
b, s, h, d = 1, 16384, 16, 128
acc = torch.randn(dq_accum_shape(b, h, s, d), device="cuda"); rows = torch.randn(b, s, h, d, device="cuda")
out = torch.empty(b, s, h, d, device="cuda", dtype=torch.bfloat16)
for name, fn in (("bulk", lambda: dq_accum_copy_rows(acc, out, 0.088)), ("rows", lambda: rows.to(torch.bfloat16))):
    for _ in range(3): fn()
    e = [torch.cuda.Event(enable_timing=True) for _ in range(2)]; e[0].record()
    for _ in range(20): fn()
    e[1].record(); torch.cuda.synchronize(); ms = e[0].elapsed_time(e[1]) / 20
    print(f"{name}: {ms:.3f} ms, {acc.numel() * 6 / ms / 1e9:.0f} GB/s")'
}

queue_bn() {  # where the sm90 backward's time goes, beside FA4's (2026-12-06, fifth session): ncu of one warm
    # 16k hd128 non-causal backward each (the main kernel only), stall reasons and the launch's resources
    export CUDA_VISIBLE_DEVICES=0
    local run='import sys, torch
q, k, v, g = (torch.randn(1, 16384, 16, 128, device="cuda", dtype=torch.bfloat16) for _ in range(4))
for t in (q, k, v): t.requires_grad_(True)
if sys.argv[1] == "fa4":
    from flash_attn.cute import flash_attn_func
else:
    from attn_cutlass import flash_attn_func
for _ in range(3):
    o = flash_attn_func(q, k, v)
    o = o[0] if isinstance(o, tuple) else o
    o.backward(g)
torch.cuda.synchronize()'
    for impl in cutlass fa4; do
        step "ncu-bwd-$impl" 150 ncu --launch-skip 2 --launch-count 1 --kernel-name regex:'BackwardSm90' \
            --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
            --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
            --section SourceCounters -o "$out/ncu-bwd-$impl" -f python3 -c "$run" "$impl"
        ncu -i "$out/ncu-bwd-$impl.ncu-rep" --page details >"$out/ncu-bwd-$impl-details.txt" 2>&1
        ncu -i "$out/ncu-bwd-$impl.ncu-rep" --page source --print-source sass --csv 2>&1 \
            | gzip >"$out/ncu-bwd-$impl-sass.csv.gz"
        rm -f "$out/ncu-bwd-$impl.ncu-rep"
    done
}

queue_tg() {  # attn-triton's Gluon forward (the default on Hopper since 2026-12-07, eighth session; its tier
    # and 16k rows ran on H100s): the 16k rows beside FA4 and the SDPAs on an H200 (the issue's machine),
    # its tests (the head-dim-256 candidate's first run), then the Gluon ablations (ping-pong, three stages,
    # hd256) with FA4 in the same run (the two H100 runs left ping-pong and three stages within noise)
    export CUDA_VISIBLE_DEVICES=$gpu_b
    step triton-fwd16k 200 python3 -m attn_bench run --preset deliverable -s attention-fwd --where seqlen_k=16384 \
        -b triton --peer fa4 --peer sdpa-flash --peer sdpa-cudnn --time-budget 170 -o "$out/triton-fwd16k.json"
    step triton-bwd16k 200 python3 -m attn_bench run --preset deliverable -s attention-bwd --where seqlen_k=16384 \
        --where head_dim=128 -b triton --peer fa4 --peer sdpa-flash --time-budget 170 -o "$out/triton-bwd16k.json"
    step triton-gluon-tests 150 python3 -m pytest "${xdist[@]}" packages/attn-triton/tests/test_flash_fwd_sm90.py \
        --tier sm90 -q  # includes the head-dim-256 candidate, never run before
    step triton-gluon-abl 230 python3 -m attn_bench run --preset ablations -s attention-fwd --where seqlen_k=16384 \
        -b triton --peer fa4 --time-budget 200 -o "$out/triton-gluon-abl.json"  # gluon_hd256 at hd256 causal
}

queue_mg() {  # attn-flashmla's Gluon kernel, the Triton path's first candidate from 33 rows since 2026-12-07
    # (ninth session; its tests, the Gluon conformance class and the h_q 128 rows ran on an H100 without the
    # CuTe DSL): the mla-decode rows on an H200 beside the CuTe default (FlashMLA's figures are H200 ones),
    # then the whole attn-flashmla sm90 tier (the CuTe default class with the wheel brought)
    export CUDA_VISIBLE_DEVICES=0
    step mla-decode 240 python3 -m attn_bench run --preset deliverable -s mla-decode -b flashmla --no-peers \
        --time-budget 210 -o "$out/mla-decode.json"
    step flashmla-sm90 330 python3 -m pytest "${xdist[@]}" packages/attn-flashmla/tests --tier sm90 -q
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

"""CPU tier: the kernels compile for sm_90a against fake tensors, and the PTX holds wgmma and TMA.

``cute.compile`` lowers to PTX and runs ptxas in process; it needs no GPU (see attn_cutlass.compile).
"""

import pytest

from attn_cutlass.compile import compile_flash_bwd_sm90, compile_flash_fwd_sm90, compile_gemm_sm90

FWD_CONFIGS = {
    "bf16_hd128": dict(dtype="bfloat16", head_dim=128),
    "fp16_hd64_causal_softcap": dict(dtype="float16", head_dim=64, causal=True, has_softcap=True),
    "bf16_hd256_window_varlen": dict(
        dtype="bfloat16", head_dim=256, has_left_window=True, has_right_window=True, varlen=True
    ),
}


BWD_CONFIGS = {
    "bf16_hd128": dict(dtype="bfloat16", head_dim=128),
    "fp16_hd64_causal_window_softcap_varlen": dict(
        dtype="float16",
        head_dim=64,
        causal=True,
        has_left_window=True,
        has_softcap=True,
        varlen=True,
    ),
}


def _check_hopper_ptx(ptx: str):
    assert ptx is not None, "no PTX was kept"
    assert ".target sm_90a" in ptx
    assert "wgmma.mma_async" in ptx, "no wgmma in the sm_90a build"
    assert "cp.async.bulk.tensor" in ptx, "no TMA load in the sm_90a build"
    assert "setmaxnreg" in ptx, "the warpgroups do not rebalance registers"


@pytest.mark.parametrize("name", list(FWD_CONFIGS))
def test_flash_fwd_sm90_compiles_with_wgmma_and_tma(name):
    res = compile_flash_fwd_sm90(keep_ptx=True, **FWD_CONFIGS[name])
    _check_hopper_ptx(res.ptx)
    assert "ld.local" not in res.ptx, "the forward spills to local memory"


@pytest.mark.parametrize("name", list(BWD_CONFIGS))
def test_flash_bwd_sm90_compiles_with_wgmma_tma_and_dq_atomics(name):
    res = compile_flash_bwd_sm90(keep_ptx=True, **BWD_CONFIGS[name])
    _check_hopper_ptx(res.ptx)
    assert "ld.local" not in res.ptx
    # S^T, dP^T, dV, dK and dQ: five GEMMs per query block; dQ leaves through fp32 reductions.
    assert "red.relaxed.gpu.global.add.f32" in res.ptx
    assert "fence.proxy.async.shared::cta" in res.ptx, "dS must be fenced before wgmma reads it"


def test_gemm_sm90_compiles_with_wgmma_and_tma():
    res = compile_gemm_sm90(keep_ptx=True)
    _check_hopper_ptx(res.ptx)


def test_sm80_build_of_a_hopper_kernel_is_refused():
    # wgmma/TMA do not exist on sm_80: the DSL must refuse rather than emit something else.
    with pytest.raises(Exception):  # noqa: B017 - the DSL raises its own error types
        compile_gemm_sm90(arch="sm_80")

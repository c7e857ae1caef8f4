"""The Gluon Hopper decode kernel (attn_flashmla.decode_fwd_sm90_gluon): when it runs, what it compiles to on
the CPU (sm_90a), and on Hopper (sm90 tier) against the reference through the public API and directly."""

from __future__ import annotations

import os

import pytest
import torch

import attn_flashmla as flash_mla
from attn_flashmla import decode_fwd
from attn_flashmla.decode_fwd_sm90_gluon import gluon_available, gluon_unsupported
from attn_flashmla.scheduler import default_num_parts, schedule_decode
from attn_reference import mla
from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

needs_gluon = pytest.mark.skipif(not gluon_available(), reason="needs Triton >= 3.6 (Gluon)")


def test_the_gluon_kernel_does_not_run_off_hopper():
    q, cache = (
        torch.zeros(2, 1, 128, 576, dtype=torch.bfloat16),
        torch.zeros(4, 64, 1, 576, dtype=torch.bfloat16),
    )
    assert gluon_unsupported(q, cache) is not None  # CPU tensors (or the interpreter)
    # Off Hopper a GLUON config falls back to the tile-level kernel with the same tile ...
    assert not decode_fwd.uses_gluon(q, cache, decode_fwd.GLUON_CONFIG)
    # ... and a GLUON config whose tile is not the Gluon kernel's is an error, not a silent fallback.
    with pytest.raises(ValueError, match="BLOCK_M 64, BLOCK_N 64 and DV_SPLIT 1"):
        decode_fwd.uses_gluon(q, cache, decode_fwd._cfg(128, 64, 8, 1, 1, 2, 1, 1))


_SM90_COMPILE = """
import json, torch, triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.jit import mangle_type
from attn_reference.testing.ptxas import summarise_compiled
from attn_flashmla import decode_fwd_sm90_gluon as m

results = {}
for dt, name, rope, causal in ((torch.bfloat16, "bf16", True, False), (torch.float16, "fp16", False, True)):
    fn = m._kernel(causal, rope)
    cache = torch.empty(4 * 64, 576 if rope else 512, dtype=dt)
    gdt = gl.bfloat16 if dt == torch.bfloat16 else gl.float16
    descs = {
        w: mangle_type(TensorDescriptor(cache, list(cache.shape), [cache.shape[1], 1], [64, w],
                                        gl.NVMMASharedLayout.get_default_for([64, w], gdt)))
        for w in (256, 64)
    }
    sig = {}
    for n in fn.arg_names:
        sig[n] = ("constexpr" if n == "STAGES" else descs[256] if n in ("k0_desc", "k1_desc")
                  else descs[64] if n == "kr_desc" else "*" + name if n in ("q_ptr", "out_ptr")
                  else "*fp32" if n in ("lse_ptr", "o_acc_ptr", "lse_acc_ptr") else "*i32" if n.endswith("_ptr")
                  else "fp32" if n == "scale_log2" else "i32")
    src = GluonASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index("STAGES"),): 2})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=4))
    results[f"{name}-rope{rope}"] = summarise_compiled(kernel)
print(json.dumps(results))
"""


@needs_gluon
def test_kernel_compiles_for_sm90_to_the_overlapped_schedule(tmp_path):
    """Compiled for sm_90a on the CPU (bf16 with RoPE, fp16 without, causal): twelve warps (two consumer
    warpgroups and the producer's), Q, two K slots and P within 227 KB, TMA copies of the K boxes, a
    ``wgmma.wait_group 1`` (S_t retired while P_{t-1} V_{t-1} still runs) and, where ptxas is at hand, no
    wgmma that ptxas serialised and at most a few hundred bytes of spills (the kernel arguments, reloaded
    on the mbarrier wait loops' slow path). About 20 s."""
    from attn_reference.testing.ptxas import assert_overlapped_hopper_kernel, compile_in_subprocess

    for name, got in compile_in_subprocess(_SM90_COMPILE).items():
        assert got["tma_loads"] >= (3 if "ropeTrue" in name else 2), name
        assert_overlapped_hopper_kernel(name, got, tmp_path, max_spill_bytes=600)


# --- Hopper ------------------------------------------------------------------------------------------------

on_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
    reason="GPU tier: a CUDA device, without TRITON_INTERPRET",
)

CASES = [  # b, s_q, h_q, h_kv, s_k, d, dtype, causal, zero lengths, parts (None: the default)
    (2, 1, 128, 1, 203, 576, torch.bfloat16, False, False, None),
    (6, 2, 64, 1, 140, 576, torch.bfloat16, True, True, None),
    (2, 1, 128, 1, 4096, 576, torch.bfloat16, False, False, 3),
    (64, 2, 128, 1, 300, 576, torch.float16, True, True, None),
    (3, 4, 126, 2, 1000, 576, torch.bfloat16, True, True, 5),
    (4, 1, 63, 1, 113, 512, torch.bfloat16, False, True, 7),
    (1, 1, 128, 8, 4096, 576, torch.bfloat16, False, False, None),
    (5, 1, 128, 1, 64, 576, torch.bfloat16, False, False, 2),
]


@pytest.mark.sm90
@on_gpu
@needs_gluon
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-sq{}-hq{}-hkv{}-sk{}-d{}-{}-causal{}-zero{}-parts{}".format(
    *c[:6], str(c[6])[6:], *c[7:]))  # fmt: skip
def test_gluon_kernel_matches_the_reference(case):
    """Split and unsplit sequences, NaN padding and garbage block-table entries, zero lengths, causal s_q > 1,
    GQA (h_kv 2 and 8), row counts that are not a multiple of 64, head dim 512."""
    from attn_flashmla.decode_fwd_sm90_gluon import dense_decode_gluon

    b, s_q, h_q, h_kv, s_k, d, dtype, causal, zero, parts = case
    inputs = mla_decode_inputs(
        b, s_q, h_q, h_kv, s_k, head_dim=d, dtype=dtype, device="cuda", page_block_size=64, varlen=True,
        zero_lengths=zero, causal=causal,
    )  # fmt: skip
    assert gluon_unsupported(inputs.q, inputs.k_cache) is None
    rows = s_q * h_q // h_kv
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    schedule = schedule_decode(
        inputs.cache_seqlens.cpu(), parts or default_num_parts(sms, h_kv, rows, 64), 64
    ).to("cuda")
    counts = schedule.split_offsets[1:] - schedule.split_offsets[:-1]
    out, lse = dense_decode_gluon(
        inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens, schedule.parts, schedule.split_offsets,
        schedule.total_splits, int(counts.max()), d**-0.5, causal,
    )  # fmt: skip
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**{**inputs.kwargs(), "softmax_scale": d**-0.5})
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)


@pytest.mark.sm90
@on_gpu
@needs_gluon
def test_the_api_runs_the_gluon_kernel_by_default_on_the_triton_path(monkeypatch):
    monkeypatch.setenv("ATTN_FLASHMLA_PATH", "triton")
    monkeypatch.setenv("ATTN_FLASHMLA_AUTOTUNE", "0")
    inputs = mla_decode_inputs(
        4, 2, 128, 1, 700, head_dim=576, dtype=torch.bfloat16, device="cuda", varlen=True, zero_lengths=True,
        causal=True,
    )  # fmt: skip
    meta, _ = flash_mla.get_mla_metadata()
    out, lse = inputs.call(flash_mla.flash_mla_with_kvcache, meta)
    assert meta.kernel_config == decode_fwd.GLUON_CONFIG
    assert decode_fwd.uses_gluon(inputs.q, inputs.k_cache, meta.kernel_config)
    ref_out, ref_lse = mla.flash_mla_with_kvcache(**inputs.kwargs())
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)

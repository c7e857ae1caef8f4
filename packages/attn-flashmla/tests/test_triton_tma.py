"""The dense decode kernel's TMA (tensor-descriptor) K tiles: against the reference under the interpreter
(Triton 3.6 runs descriptors there with numpy), the fallback to the gather path, the switch and
config parsing on any machine, and the same kernel on Hopper (sm90 tier)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import attn_flashmla as flash_mla
from attn_flashmla import decode_fwd
from attn_flashmla.scheduler import default_num_parts, schedule_decode
from attn_reference import mla
from attn_reference.testing.mla import assert_mla_close, assert_mla_lse_close, mla_decode_inputs

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="CPU kernels need TRITON_INTERPRET=1")


def _decode(inputs, config, num_parts, causal):
    """The split kernel (+ combine) on ``num_parts`` parts; returns (out, lse, max splits of a sequence)."""
    schedule = schedule_decode(inputs.cache_seqlens.cpu(), num_parts, config["BLOCK_N"], 1)
    schedule = schedule.to(inputs.q.device)
    counts = schedule.split_offsets[1:] - schedule.split_offsets[:-1]
    max_splits = int(counts.max())
    out, lse = decode_fwd.dense_decode_triton(
        inputs.q, inputs.k_cache, inputs.block_table, inputs.cache_seqlens, schedule.parts,
        schedule.split_offsets, schedule.total_splits, max_splits, inputs.q.shape[-1] ** -0.5, causal, config,
    )  # fmt: skip
    return out, lse, max_splits


def _reference(inputs):
    return mla.flash_mla_with_kvcache(**{**inputs.kwargs(), "softmax_scale": inputs.q.shape[-1] ** -0.5})


def _assert_matches_reference(inputs, out, lse):
    ref_out, ref_lse = _reference(inputs)
    assert_mla_close("out", out, ref_out)
    assert_mla_lse_close("lse", lse, ref_lse)


# Pages of 32 or 64 tokens against 16- or 32-token tiles: several tiles per page, tiles that end exactly
# on a page boundary, and sequences whose last tile is partial (the gather path) or absent (length 0).
TMA_CASES = [
    # config (BLOCK_M, BLOCK_N, warps, stages, ctas/SM, DV_SPLIT, TMA), inputs, parts, split
    ((16, 16, 4, 1, 1, 1, 1), dict(b=4, s_q=2, h_q=6, h_kv=2, s_k=75, d=576, page=32, dtype=torch.float16,
                                   causal=True, zero=True), 6, True),
    ((16, 32, 4, 1, 1, 2, 1), dict(b=3, s_q=1, h_q=5, h_kv=1, s_k=100, d=512, page=64, dtype=torch.float32,
                                   causal=False, zero=True), 5, True),
    ((16, 16, 4, 1, 1, 2, 1), dict(b=2, s_q=2, h_q=4, h_kv=2, s_k=90, d=576, page=64, dtype=torch.float16,
                                   causal=True, zero=False), 7, True),
    ((16, 32, 4, 1, 1, 1, 1), dict(b=3, s_q=1, h_q=3, h_kv=1, s_k=64, d=576, page=32, dtype=torch.float32,
                                   causal=False, zero=False), 1, False),
    ((32, 16, 4, 1, 1, 1, 1), dict(b=3, s_q=3, h_q=7, h_kv=1, s_k=41, d=512, page=32, dtype=torch.float16,
                                   causal=True, zero=True), 4, True),
]  # fmt: skip


@needs_interpreter
@pytest.mark.parametrize(
    "config, case, parts, split",
    TMA_CASES,
    ids=[
        "fp16-d576-page32-bn16-causal-hkv2-splits",
        "fp32-d512-page64-bn32-dvsplit2-splits",
        "fp16-d576-page64-bn16-dvsplit2-hkv2-causal-splits",
        "fp32-d576-page32-bn32-tile-is-page",
        "fp16-d512-page32-bn16-sq3-causal-zeros-splits",
    ],
)
def test_tma_matches_reference(config, case, parts, split):
    config = decode_fwd._cfg(*config)
    inputs = mla_decode_inputs(
        case["b"], case["s_q"], case["h_q"], case["h_kv"], case["s_k"], head_dim=case["d"], dtype=case["dtype"],
        page_block_size=case["page"], varlen=True, zero_lengths=case["zero"], causal=case["causal"],
    )  # fmt: skip
    assert torch.isnan(inputs.k_cache).any()  # the padding the full-tile rule must keep out of P @ V
    assert decode_fwd.uses_tma(inputs.k_cache, config)
    out, lse, max_splits = _decode(inputs, config, parts, case["causal"])
    assert (max_splits > 1) == split  # the split cases go through the combine
    _assert_matches_reference(inputs, out, lse)


@needs_interpreter
@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")  # numpy's max over the NaN rows
def test_full_tiles_come_through_the_descriptors_and_partial_tiles_do_not(monkeypatch):
    """Descriptors over an all-NaN copy of the cache: a sequence with a full tile turns NaN, one shorter
    than a tile (or empty) still matches the reference, so full tiles are TMA copies and partial ones the
    masked gather."""
    inputs = mla_decode_inputs(3, 1, 4, 1, 40, head_dim=576, dtype=torch.float16, page_block_size=32)
    inputs.cache_seqlens = torch.tensor([40, 11, 0], dtype=torch.int32)
    real = decode_fwd._k_descriptors
    monkeypatch.setattr(
        decode_fwd, "_k_descriptors", lambda k, *a: real(torch.full_like(k, float("nan")), *a)
    )
    config = decode_fwd._cfg(16, 16, 4, 1, 1, 1, 1)
    out, lse, _ = _decode(inputs, config, 1, False)
    ref_out, ref_lse = _reference(inputs)
    assert torch.isnan(out[0]).all() and torch.isnan(lse[0]).all()
    assert_mla_close("out", out[1:], ref_out[1:])
    assert_mla_lse_close("lse", lse[1:], ref_lse[1:])


def _strided_caches(cache: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values in layouts other than the contiguous one."""
    nb, page, h_kv, d = cache.shape
    wide = torch.full((nb, page, h_kv, d + 64), float("nan"), dtype=cache.dtype)
    wide[..., :d] = cache
    head_major = cache.transpose(1, 2).contiguous().transpose(1, 2)  # (nb, h_kv, page, d) in memory
    extra_head = torch.full((nb, page, h_kv + 1, d), float("nan"), dtype=cache.dtype)
    extra_head[:, :, :h_kv] = cache
    return {
        "padded-channels": wide[..., :d],
        "head-major": head_major,
        "padded-rows": extra_head[:, :, :h_kv],
    }


@needs_interpreter
def test_caches_without_the_2d_view_fall_back_to_the_gather_path():
    # Two KV heads: with one, a padded channel dimension is only a longer row stride (a valid view).
    inputs = mla_decode_inputs(
        2, 1, 2, 2, 40, head_dim=576, dtype=torch.float16, page_block_size=32, varlen=True, zero_lengths=True
    )
    tma, gather = decode_fwd._cfg(16, 16, 4, 1, 1, 1, 1), decode_fwd._cfg(16, 16, 4, 1, 1, 1, 0)
    base_out, base_lse, _ = _decode(inputs, gather, 3, False)
    for name, cache in _strided_caches(inputs.k_cache).items():
        strided = type(inputs)(**{**inputs.kwargs(), "k_cache": cache})
        why = decode_fwd.tma_unsupported(cache, 16)
        # Rows padded past h_kv * d are still a matrix TMA can read; the other two layouts are not.
        assert (why is None) == (name == "padded-rows"), (name, why)
        assert decode_fwd.uses_tma(cache, tma) == (why is None)
        out, lse, _ = _decode(strided, tma, 3, False)
        if why is None:
            _assert_matches_reference(strided, out, lse)
        else:  # the gather path, bit for bit
            assert torch.equal(out, base_out) and torch.equal(lse, base_lse), name
    _assert_matches_reference(inputs, base_out, base_lse)


def test_tma_dispatch_decision():
    cache = torch.zeros(3, 64, 2, 576, dtype=torch.float16)
    assert all(decode_fwd.tma_unsupported(cache, n) is None for n in (16, 32, 64))
    assert "multiple of BLOCK_N" in decode_fwd.tma_unsupported(cache, 128)
    assert "multiple of BLOCK_N" in decode_fwd.tma_unsupported(torch.zeros(3, 61, 1, 576), 16)
    layouts = _strided_caches(cache)
    assert "strides" in decode_fwd.tma_unsupported(layouts["padded-channels"], 16)
    assert "strides" in decode_fwd.tma_unsupported(layouts["head-major"], 16)
    assert decode_fwd.tma_unsupported(layouts["padded-rows"], 16) is None
    # One KV head: its stride is whatever the view had and never used; one block: likewise.
    assert decode_fwd.tma_unsupported(torch.zeros(3, 64, 2, 576)[:, :, 1:], 64) is None
    assert decode_fwd.tma_unsupported(torch.zeros(4, 64, 1, 576)[1:2], 64) is None
    # A cache starting 2 bytes into its storage cannot be a TMA source.
    shifted = torch.zeros(3 * 64 * 576 + 1, dtype=torch.float16)[1:].view(3, 64, 1, 576)
    assert "16-byte" in decode_fwd.tma_unsupported(shifted, 64)
    assert not decode_fwd.uses_tma(cache, decode_fwd._cfg(16, 64, 4, 2, 2, 1, 0))
    assert not decode_fwd.uses_tma(cache, decode_fwd._cfg(16, 64, 4, 2, 2))  # TMA left out: 0
    assert decode_fwd.uses_tma(cache, decode_fwd._cfg(16, 64, 4, 2, 2, 1, 1))


def test_config_override_accepts_an_optional_tma_field(monkeypatch):
    monkeypatch.setenv("ATTN_FLASHMLA_TRITON_CONFIG", "0,64,8,2,1,1,1")
    assert decode_fwd.config_override() == decode_fwd._cfg(0, 64, 8, 2, 1, 1, 1)
    for five_or_six in ("0,64,8,2,1", "0,64,8,2,1,2"):
        monkeypatch.setenv("ATTN_FLASHMLA_TRITON_CONFIG", five_or_six)
        assert decode_fwd.config_override()["TMA"] == 0
    for bad in (
        "0,64,8,2,1,1,1,1,1",
        "0,64,8,2",
        "0,64,8,2,1,1,2",
        "0,64,8,2,1,3",
        "0,64,x,2,1",
        "0,64,8,2,1,1,1,2",
    ):
        monkeypatch.setenv("ATTN_FLASHMLA_TRITON_CONFIG", bad)
        with pytest.raises(ValueError, match="ATTN_FLASHMLA_TRITON_CONFIG"):
            decode_fwd.config_override()


def test_tma_switch_picks_the_candidates(monkeypatch):
    monkeypatch.setenv(decode_fwd.TMA_ENV, "0")
    off = {rows: decode_fwd.candidate_configs(rows) for rows in (16, 32, 64, 256)}
    assert all(c["TMA"] == 0 for configs in off.values() for c in configs)
    for on_value in (None, "1"):  # on by default
        if on_value is None:
            monkeypatch.delenv(decode_fwd.TMA_ENV, raising=False)
        else:
            monkeypatch.setenv(decode_fwd.TMA_ENV, on_value)
        for rows, configs in off.items():
            on = decode_fwd.candidate_configs(rows)
            # From 33 rows the Gluon kernel's config comes first (it needs TMA: absent when TMA is off).
            assert [c for c in on if c["GLUON"]] == ([decode_fwd.GLUON_CONFIG] if rows > 32 else [])
            on = [c for c in on if not c["GLUON"]]
            # The TMA version of each gather config, in the same order (the first is the untuned default),
            # then (memory-bound) deeper TMA-only pipelines.
            n = len(configs)
            assert on[:n] == [{**c, "TMA": 1} for c in configs]
            assert all(c["TMA"] == 1 and set(c) == set(decode_fwd.CONFIG_FIELDS) for c in on[n:])
            assert len(on) == n + (2 if rows == 16 else 0)
    # Tuning results are kept apart: a choice made among the gather configs is not reused for TMA.
    monkeypatch.setattr(decode_fwd.torch.cuda, "get_device_name", lambda device=None: "gpu")
    q, cache = torch.zeros(2, 1, 16, 576), torch.zeros(4, 64, 1, 576)
    with_tma = decode_fwd.tune_key(q, cache, 100, False)
    monkeypatch.setenv(decode_fwd.TMA_ENV, "0")
    assert decode_fwd.tune_key(q, cache, 100, False) != with_tma


def test_the_interpreter_default_config_follows_the_switch(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(decode_fwd.TMA_ENV, raising=False)
    assert decode_fwd.default_config(16, torch.device("cpu"))["TMA"] == 1
    monkeypatch.setenv(decode_fwd.TMA_ENV, "0")
    assert decode_fwd.default_config(16, torch.device("cpu"))["TMA"] == 0


@needs_interpreter
def test_the_api_runs_the_tma_path_when_switched_on(monkeypatch):
    monkeypatch.setenv(decode_fwd.TMA_ENV, "1")
    inputs = mla_decode_inputs(
        3, 2, 4, 1, 45, head_dim=576, dtype=torch.float16, page_block_size=32, varlen=True, zero_lengths=True,
        causal=True,
    )  # fmt: skip
    meta, _ = flash_mla.get_mla_metadata()
    out, lse = inputs.call(flash_mla.flash_mla_with_kvcache, meta)
    assert meta.kernel_config["TMA"] == 1 and decode_fwd.uses_tma(inputs.k_cache, meta.kernel_config)
    _assert_matches_reference(inputs, out, lse)


_SM90_COMPILE = """
import re, sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from attn_flashmla import decode_fwd as m

fn = m._dense_decode_kernel
consts = dict(CAUSAL=True, HAS_ROPE=True, BLOCK_M=64, BLOCK_N=64, D_MAIN=512, D_ROPE=64, DV_SPLIT=1,
              UPCAST=False, TMA=True)
sig = {}
for name in fn.arg_names:
    if name in consts:
        sig[name] = "constexpr"
    elif name == "k_desc":
        sig[name] = "tensordesc<bf16[64,512]>"
    elif name == "kr_desc":
        sig[name] = "tensordesc<bf16[64,64]>"
    elif name in ("q_ptr", "k_ptr", "out_ptr"):
        sig[name] = "*bf16"
    elif name in ("lse_ptr", "o_acc_ptr", "lse_acc_ptr"):
        sig[name] = "*fp32"
    elif name.endswith("_ptr"):
        sig[name] = "*i32"
    else:
        sig[name] = "fp32" if name == "scale_log2" else "i32"
src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=8, num_stages=2))
ttgir = kernel.asm["ttgir"]
print("shared", kernel.metadata.shared)
print("tma", len(re.findall("cp.async.bulk.tensor", kernel.asm["ptx"])))
print("buffers", len(re.findall(r"local_alloc : \\(\\) -> !ttg.memdesc<2x64x512xbf16", ttgir)))
"""


@pytest.mark.slow
def test_tma_kernel_compiles_for_sm90_to_pipelined_tma_copies():
    """Compiled for sm_90 on the CPU (ptxas included): the K tile is a TMA copy into a double buffer, and
    the kernel fits the H200's 227 KB of shared memory. About 15 s."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", _SM90_COMPILE], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = dict(line.split() for line in result.stdout.splitlines())
    assert int(got["tma"]) > 0 and int(got["buffers"]) == 1
    assert int(got["shared"]) <= 227 * 1024


@pytest.mark.sm90
@pytest.mark.parametrize("rows_case", [(16, 1, 1), (128, 2, 1), (32, 2, 2)], ids=str)  # (h_q, s_q, h_kv)
@pytest.mark.parametrize("d", [576, 512])
def test_every_tma_candidate_on_hopper(monkeypatch, rows_case, d):
    """Each TMA candidate config against the reference on the GPU (NaN padding, varlen, zero lengths)."""
    h_q, s_q, h_kv = rows_case
    monkeypatch.setenv(decode_fwd.TMA_ENV, "1")
    inputs = mla_decode_inputs(
        5, s_q, h_q, h_kv, 300, head_dim=d, dtype=torch.bfloat16, device="cuda", page_block_size=64,
        varlen=True, zero_lengths=True, causal=s_q > 1,
    )  # fmt: skip
    rows = s_q * h_q // h_kv
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for config in [c for c in decode_fwd.candidate_configs(rows) if c["TMA"]]:
        assert decode_fwd.uses_tma(inputs.k_cache, config)
        parts = default_num_parts(
            sms, h_kv, rows, config["BLOCK_M"], config["ctas_per_sm"], config["DV_SPLIT"]
        )
        out, lse, _ = _decode(inputs, config, parts, s_q > 1)
        _assert_matches_reference(inputs, out, lse)

"""FLOP/byte formulas and the suites' grids, against numbers computed by hand."""

from __future__ import annotations

import pytest

from attn_bench import formulas as F
from attn_bench.suites import SUITES, mla_cache_seqlens


def test_unmasked_pairs_by_hand():
    assert F.unmasked_pairs(4, 4, causal=False) == 16
    assert F.unmasked_pairs(4, 4, causal=True) == 10  # 1 + 2 + 3 + 4
    # Bottom-right aligned: query 0 of 2 sees keys 0..2, query 1 sees all 4.
    assert F.unmasked_pairs(2, 4, causal=True) == 7
    # Sliding window (1, 0): 1 + 2 + 2 + 2; (1, 1) without causal: 2 + 3 + 3 + 2.
    assert F.unmasked_pairs(4, 4, causal=False, window=(1, 0)) == 7
    assert F.unmasked_pairs(4, 4, causal=False, window=(1, 1)) == 10
    # More queries than keys: the first rows see nothing.
    assert F.unmasked_pairs(4, 2, causal=True) == 3  # 0 + 0 + 1 + 2


def test_attention_flops_by_hand():
    # The peers' shape: hd128, seqlen 16k, 16 heads, batch 1: 4 * 16384^2 * 16 * 128.
    assert F.attention_fwd_flops(1, 16384, 16384, 16, 128) == 2_199_023_255_552
    assert F.attention_fwd_flops(1, 16384, 16384, 16, 128, causal=True) == 1_099_511_627_776
    assert F.attention_fwd_flops(2, 1024, 1024, 16, 128) == 4 * 2 * 1024 * 1024 * 16 * 128
    # Causal with s_q != s_k counts the 7 pairs exactly: 7 * 2 * (8 + 8) FLOPs.
    assert F.attention_fwd_flops(1, 2, 4, 1, 8, causal=True) == 224
    assert F.attention_fwd_flops(1, 4, 4, 1, 8, window=(1, 0)) == 7 * 32
    # Different value head dim: 2 * (d + dv) per pair.
    assert F.attention_fwd_flops(1, 1, 10, 1, 576, head_dim_v=512) == 10 * 2 * 1088


def test_attention_bytes_by_hand():
    # q, k, v, out of (1, 4, 2, 8) in bf16: 4 * 64 elements * 2 bytes; GQA halves k and v.
    assert F.attention_bytes(1, 4, 4, 2, 2, 8, 2) == 512
    assert F.attention_bytes(1, 4, 4, 2, 1, 8, 2) == 384
    assert F.attention_bwd_bytes(1, 4, 4, 2, 2, 8, 2) == (5 * 64 + 2 * 128) * 2


def test_decode_by_hand():
    # b 64, one query, 32 query heads, 8 KV heads, d 128, cache 8k, bf16.
    assert F.decode_bytes(64, 1, 8192, 32, 8, 128, 2) == 2 * 64 * 8192 * 8 * 128 * 2 + 2 * 64 * 32 * 128 * 2
    assert F.decode_bytes(64, 1, 8192, 32, 8, 128, 2) == 2_148_532_224
    assert F.decode_flops(64, 1, 8192, 32, 128) == 8_589_934_592


def test_mla_by_hand():
    # FlashMLA's formulas with 128 sequences of 8192 tokens, h_q 128, s_q 1, bf16.
    total = 128 * 8192
    assert F.mla_decode_flops(total, 1, 128) == 2 * total * 128 * (576 + 512) == 292_057_776_128
    assert (
        F.mla_decode_bytes(total, 128, 1, 128, 1, 2) == (total * 576 + 128 * 128 * 576 + 128 * 128 * 512) * 2
    )
    assert F.mla_decode_bytes(total, 128, 1, 128, 1, 2) == 1_243_611_136
    assert F.mla_sparse_flops(4096, 128, 2048) == 2 * 4096 * 128 * 2048 * 1088
    assert F.mla_sparse_bytes(1, 10, 1, 1, 2, 2) == (10 * 576 + 576 + 512) * 2 + 2 * 4


def test_basics_by_hand():
    assert F.vector_add_bytes(1000, 4) == 12000
    assert F.softmax_bytes(10, 100, 4) == 8000
    assert F.matmul_flops(8192, 8192, 8192) == 2 * 8192**3
    assert F.matmul_bytes(2, 3, 4, 2) == (8 + 12 + 6) * 2


def test_gpu_attention_grid_is_the_published_one():
    cases = SUITES["attention-fwd"].cases("gpu")
    assert len(cases) == 3 * 5 * 2
    seen = set()
    for c in cases:
        sh = c.shape
        assert sh["batch"] * sh["seqlen_q"] == 16384 and sh["heads_q"] * sh["head_dim"] == 2048
        assert c.dtype == "bfloat16"
        assert c.flops == F.attention_fwd_flops(
            sh["batch"], sh["seqlen_q"], sh["seqlen_k"], sh["heads_q"], sh["head_dim"], sh["causal"]
        )
        seen.add((sh["head_dim"], sh["seqlen_q"], sh["causal"]))
    assert seen == {
        (d, s, c) for d in (64, 128, 256) for s in (1024, 2048, 4096, 8192, 16384) for c in (0, 1)
    }


def test_bwd_cases_are_2_5_and_3_5_times_the_forward():
    fwd = {c.name: c for c in SUITES["attention-fwd"].cases("gpu")}
    bwd = SUITES["attention-bwd"].cases("gpu")
    assert len(bwd) == 2 * len(fwd)
    for c in bwd:
        base, pass_ = c.name.rsplit(" ", 1)
        factor = {"bwd": 2.5, "fwd+bwd": 3.5}[pass_]
        assert c.flops == pytest.approx(factor * fwd[base].flops)


def test_decode_and_mla_grids():
    dec = SUITES["decode-kvcache"].cases("gpu")
    shapes = [(c.shape["batch"], c.shape["heads_q"], c.shape["heads_k"], c.shape["head_dim"]) for c in dec]
    assert set(shapes) == {(64, 32, 8, 128)}
    assert 8192 in [c.shape["seqlen_k"] for c in dec]
    mla = SUITES["mla-decode"].cases("gpu")
    grid = {(c.shape["heads_q"], c.shape["seqlen_q"], c.shape["seqlen_k"]) for c in mla}
    assert grid == {(h, s, k) for h in (16, 128) for s in (1, 2) for k in (8192, 32768)}
    for c in mla:
        lens = c.extra["cache_seqlens"]
        assert c.shape["batch"] == 128 == len(lens) and c.shape["heads_kv"] == 1
        assert c.shape["total_seqlen_k"] == sum(lens)
        assert c.flops == F.mla_decode_flops(sum(lens), c.shape["seqlen_q"], c.shape["heads_q"])


def test_mla_seqlens_are_seeded_normal_around_the_mean():
    lens = mla_cache_seqlens(4096, 8192, 2)
    assert lens == mla_cache_seqlens(4096, 8192, 2)
    assert min(lens) >= 2
    mean = sum(lens) / len(lens)
    assert 7800 < mean < 8800  # sd 4096, clipped below at s_q


@pytest.mark.parametrize("name", sorted(SUITES))
def test_cpu_grids_are_tiny_fp32(name):
    suite = SUITES[name]
    if suite.measure == "memory":
        pytest.skip("the memory suite is GPU only (CPU mode skips it with a note)")
    for quick in (False, True):
        cases = suite.cases("cpu", quick)
        assert cases, name
        for c in cases:
            assert c.dtype == "float32"
            assert c.flops > 0 and c.bytes > 0
            assert c.flops < 5e9, (name, c.name)
    assert len(suite.cases("cpu", True)) <= len(suite.cases("cpu", False))
    assert len(suite.cases("gpu", True)) <= len(suite.cases("gpu", False))

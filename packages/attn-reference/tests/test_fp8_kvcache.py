"""FlashMLA's "FP8 with scale" KV cache: byte layout, the power-of-two scale rule, round-trip error."""

from __future__ import annotations

import pytest
import torch

from attn_reference.errors import AttentionArgumentError
from attn_reference.fp8_kvcache import (
    FP8_MODEL1_BYTES_PER_TOKEN,
    FP8_V32_BYTES_PER_TOKEN,
    dequantize_kvcache_fp8,
    fp8_bytes_per_token,
    quantize_kvcache_fp8,
)


def _cache(shape, seed=0, spread=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) / 10
    if spread:
        # Tiles of very different magnitudes, so that each gets its own scale.
        x = x * torch.logspace(-6, 3, shape[-1] // 64).repeat_interleave(64)[: shape[-1]]
    return x.to(torch.bfloat16)


def _expected_scale(tile: torch.Tensor) -> float:
    """The smallest power of two s with s >= amax / 448 and s >= 1e-4, found by counting exponents."""
    target = max(tile.float().abs().max().item() / 448.0, 1e-4)
    e = -30
    while 2.0**e < target:
        e += 1
    return 2.0**e


def test_v32_layout_offsets_and_scales():
    k = _cache((3, 5, 1, 576), spread=True)
    packed = quantize_kvcache_fp8(k)
    assert packed.dtype == torch.uint8
    assert packed.shape == (3, 5, 1, 656) and FP8_V32_BYTES_PER_TOKEN == 656 == 512 + 16 + 128
    flat_k, flat_p = k.reshape(-1, 576), packed.reshape(-1, 656)
    for t in range(flat_k.shape[0]):
        tok, raw = flat_k[t], flat_p[t]
        scales = raw[512:528].clone().view(torch.float32)
        nope = raw[:512].clone().view(torch.float8_e4m3fn).float()
        for tile in range(4):
            part = tok[tile * 128 : (tile + 1) * 128]
            assert scales[tile].item() == _expected_scale(part)
            # Each stored byte is the e4m3 rounding of value / scale.
            want = (part.float() / scales[tile]).to(torch.float8_e4m3fn).float()
            assert torch.equal(nope[tile * 128 : (tile + 1) * 128], want)
        # RoPE bytes are the bf16 values themselves, little-endian.
        assert torch.equal(raw[528:].clone().view(torch.bfloat16), tok[512:])


def test_v32_round_trip_error_bound():
    k = _cache((4, 16, 1, 576), seed=1, spread=True)
    packed = quantize_kvcache_fp8(k)
    back = dequantize_kvcache_fp8(packed)
    assert back.dtype == torch.bfloat16 and back.shape == k.shape
    assert torch.equal(back[..., 512:], k[..., 512:])  # RoPE is not quantized
    scales = packed[..., 512:528].contiguous().view(torch.float32).repeat_interleave(128, dim=-1)
    x, y = k[..., :512].float(), back[..., :512].float()
    # e4m3: 3 mantissa bits -> relative error <= 2^-4 for normals; below 2^-6 * scale the spacing is
    # 2^-9 * scale (subnormals), so the absolute error is at most half of it.
    bound = torch.maximum(x.abs() * 2.0**-4, scales * 2.0**-10)
    assert ((x - y).abs() <= bound).all()
    # Power-of-two scales make dequantized values exactly representable: a second round trip is lossless
    # (the bytes may differ: a tile whose max rounded down to a power of two gets half the scale).
    assert torch.equal(dequantize_kvcache_fp8(quantize_kvcache_fp8(back)), back)


def test_zero_tile_gets_floor_scale_and_nan_tile_stays_nan():
    k = _cache((2, 576), seed=2)
    k[0, :128] = 0
    k[1, 300] = float("nan")
    packed = quantize_kvcache_fp8(k)
    scales = packed[..., 512:528].contiguous().view(torch.float32)
    assert scales[0, 0].item() == 2.0**-13  # 2^ceil(log2(1e-4))
    back = dequantize_kvcache_fp8(packed)
    assert (back[0, :128] == 0).all()
    assert torch.isnan(back[1, 256:384]).all()  # the whole tile of the NaN
    assert not torch.isnan(back[1, :256]).any() and not torch.isnan(back[1, 384:]).any()


def test_int8_and_fp8_views_are_accepted_and_inputs_rounded_to_bf16():
    k = _cache((3, 576), seed=3)
    packed = quantize_kvcache_fp8(k)
    assert torch.equal(quantize_kvcache_fp8(k.float()), packed)
    ref = dequantize_kvcache_fp8(packed)
    for dtype in (torch.int8, torch.float8_e4m3fn):
        assert torch.equal(dequantize_kvcache_fp8(packed.view(dtype)), ref)


def test_model1_layout_is_per_block():
    nb, bs = 3, 5
    k = _cache((nb, bs, 1, 512), seed=4, spread=True)
    packed = quantize_kvcache_fp8(k)
    assert packed.shape == (nb, bs, 1, FP8_MODEL1_BYTES_PER_TOKEN) and FP8_MODEL1_BYTES_PER_TOKEN == 584
    padded = -(-bs * 584 // 576) * 576
    assert packed.stride() == (padded, 584, 584, 1)
    blocks = torch.as_strided(packed, (nb, padded), (padded, 1))
    for blk in range(nb):
        for t in range(bs):
            tok = k[blk, t, 0]
            data = blocks[blk, t * 576 : (t + 1) * 576]
            assert torch.equal(data[448:].clone().view(torch.bfloat16), tok[448:])
            exps = blocks[blk, bs * 576 + t * 8 : bs * 576 + t * 8 + 7]
            for tile in range(7):
                scale = _expected_scale(tok[tile * 64 : (tile + 1) * 64])
                # e8m0 is a bare biased exponent; torch's own e8m0 type must agree.
                assert exps[tile].clone().view(torch.float8_e8m0fnu).float().item() == scale
    back = dequantize_kvcache_fp8(packed)
    assert back.shape == k.shape and torch.equal(back[..., 448:], k[..., 448:])
    assert torch.equal(dequantize_kvcache_fp8(quantize_kvcache_fp8(back)), back)
    x, y = k[..., :448].float().unflatten(-1, (7, 64)), back[..., :448].float().unflatten(-1, (7, 64))
    # A scale is below twice amax / 448 (or the 2^-13 floor); bound the error as in the 576 layout.
    scale_bound = torch.clamp_min(2 * x.abs().amax(-1, keepdim=True) / 448, 2.0**-13)
    assert ((x - y).abs() <= torch.maximum(x.abs() * 2.0**-4, scale_bound * 2.0**-10)).all()


def test_bytes_per_token():
    assert fp8_bytes_per_token(576) == 656
    assert fp8_bytes_per_token(512) == 584
    with pytest.raises(AttentionArgumentError, match="head_dim"):
        fp8_bytes_per_token(128)


@pytest.mark.parametrize(
    ("fn", "arg", "needle"),
    [
        (quantize_kvcache_fp8, torch.zeros(2, 128, dtype=torch.bfloat16), "k_cache"),
        (quantize_kvcache_fp8, torch.zeros(2, 576, dtype=torch.int32), "k_cache"),
        (quantize_kvcache_fp8, torch.zeros(2, 512, dtype=torch.bfloat16), "k_cache"),  # 512 needs blocks
        (dequantize_kvcache_fp8, torch.zeros(2, 656, dtype=torch.float32), "packed"),
        (dequantize_kvcache_fp8, torch.zeros(2, 600, dtype=torch.uint8), "packed"),
        (dequantize_kvcache_fp8, torch.zeros(2, 584, dtype=torch.uint8), "packed"),
    ],
)
def test_errors_name_the_argument(fn, arg, needle):
    with pytest.raises(AttentionArgumentError, match=needle):
        fn(arg)

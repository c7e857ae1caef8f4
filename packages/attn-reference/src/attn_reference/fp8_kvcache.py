"""FlashMLA's "FP8 with scale" KV cache formats, quantized and dequantized in plain PyTorch.

FlashMLA's sparse decoding kernels read the MLA latent cache in FP8: the NoPE channels are stored as
``float8_e4m3fn`` in tiles that share one power-of-two scale, and the RoPE channels stay in bfloat16
because rotary positions are sensitive to rounding. Two layouts exist, chosen by the head dim.

``head_dim == 576`` (DeepSeek V3 / V3.1 / V3.2), 656 bytes a token, every token on its own::

    bytes [  0, 512)  512 x float8_e4m3fn   NoPE channels 0..511, divided by their tile's scale
    bytes [512, 528)    4 x float32         scale of tiles 0..3 (tile t covers channels 128t..128t+127)
    bytes [528, 656)   64 x bfloat16        RoPE channels 512..575, unchanged

``head_dim == 512`` (FlashMLA's "MODEL1"), 584 bytes a token but laid out per page block::

    block bytes [0, 576*bs)         per token: 448 x float8_e4m3fn NoPE, then 64 x bfloat16 RoPE
    block bytes [576*bs, 584*bs)    per token: 7 x float8_e8m0fnu scales (tiles of 64), 1 pad byte
    then padding up to a multiple of 576 bytes; the tensor is a view (num_blocks, bs, 1, 584) whose
    block stride is that padded size, so only the block base address is meaningful.

The scale rule (both layouts): ``scale = 2 ** ceil(log2(max(amax / 448, 1e-4))))`` where ``amax`` is the
tile's largest magnitude and 448 the largest finite e4m3 value. Rounding the scale *up* to a power of two
keeps every scaled value within e4m3's range and makes dequantization (a multiply by a power of two) exact
in bfloat16, so ``dequantize(quantize(x))`` only carries e4m3's rounding error (relative 2**-4) per
element, plus flush-to-zero of values far below their tile's maximum. A NaN in a tile makes its scale,
and so the whole tile, NaN: padding written as NaN stays NaN through the round trip.
"""

from __future__ import annotations

import torch

from attn_reference.errors import AttentionArgumentError, describe

#: Largest finite float8_e4m3fn value.
FP8_E4M3_MAX = 448.0
#: Smallest scale the rule produces before rounding (keeps all-zero tiles finite).
MIN_SCALE = 1e-4

#: (head_dim, nope_dim, rope_dim, tile_size, bytes_per_token) of each layout.
V32_LAYOUT = (576, 512, 64, 128, 656)
MODEL1_LAYOUT = (512, 448, 64, 64, 584)

#: Bytes a token occupies in the 576-dim layout.
FP8_V32_BYTES_PER_TOKEN = 656
#: Bytes a token nominally occupies in the 512-dim layout (the real layout is per block, see above).
FP8_MODEL1_BYTES_PER_TOKEN = 584

_FP8_CACHE_DTYPES = (torch.uint8, torch.int8, torch.float8_e4m3fn)


def fp8_bytes_per_token(head_dim: int) -> int:
    """Bytes a token takes in FlashMLA's FP8 cache for ``head_dim`` (576 -> 656, 512 -> 584)."""
    for layout in (V32_LAYOUT, MODEL1_LAYOUT):
        if layout[0] == head_dim:
            return layout[4]
    raise AttentionArgumentError(
        f"head_dim: the FP8 KV cache exists for head dims 576 and 512, got {head_dim}"
    )


# --8<-- [start:fp8-tiles]
def fp8_tile_scales(tiles: torch.Tensor) -> torch.Tensor:
    """Power-of-two scales of ``tiles`` (..., n_tiles, tile) -> fp32 (..., n_tiles), FlashMLA's rule."""
    amax = tiles.float().abs().amax(dim=-1)
    # NaN must survive clamp_min (torch keeps NaN there) so that NaN tiles stay NaN.
    return torch.exp2(torch.ceil(torch.log2(torch.clamp_min(amax / FP8_E4M3_MAX, MIN_SCALE))))


def _quantize_tiles(nope: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    tiles = nope.float().unflatten(-1, (-1, tile))
    scales = fp8_tile_scales(tiles)
    # Dividing by a power of two is exact; the only rounding is the cast to e4m3 (round to nearest even).
    q = (tiles / scales.unsqueeze(-1)).to(torch.float8_e4m3fn).flatten(-2)
    return q, scales


# --8<-- [end:fp8-tiles]
def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8)


def quantize_kvcache_fp8(k_cache: torch.Tensor) -> torch.Tensor:
    """Quantize a latent KV cache into FlashMLA's "FP8 with scale" format.

    ``k_cache``: (..., 576) of any float dtype (rounded to bfloat16 first, as FlashMLA's caches are bf16)
    -> uint8 (..., 656). Or (num_blocks, page_block_size, 1, 512) -> the per-block 512-dim layout, a
    uint8 view (num_blocks, page_block_size, 1, 584) of padded blocks (see the module docstring).
    """
    if not k_cache.is_floating_point() or k_cache.dtype == torch.float8_e4m3fn:
        raise AttentionArgumentError(f"k_cache: expected a floating-point cache, got {describe(k_cache)}")
    k = k_cache.to(torch.bfloat16)
    d = k.shape[-1]
    if d == V32_LAYOUT[0]:
        return _quantize_v32(k)
    if d == MODEL1_LAYOUT[0]:
        return _quantize_model1(k)
    raise AttentionArgumentError(f"k_cache: last dim must be 576 or 512 to quantize, got {describe(k_cache)}")


def _quantize_v32(k: torch.Tensor) -> torch.Tensor:
    _, nope_dim, _, tile, _ = V32_LAYOUT
    q, scales = _quantize_tiles(k[..., :nope_dim], tile)
    return torch.cat([_as_bytes(q), _as_bytes(scales), _as_bytes(k[..., nope_dim:])], dim=-1)


def _quantize_model1(k: torch.Tensor) -> torch.Tensor:
    _, nope_dim, _, tile, bytes_per_token = MODEL1_LAYOUT
    if k.dim() != 4 or k.shape[2] != 1:
        raise AttentionArgumentError(
            "k_cache: the 512-dim FP8 layout is per page block and needs (num_blocks, page_block_size, 1, 512), "
            f"got {describe(k)}"
        )
    nb, bs = k.shape[0], k.shape[1]
    k = k[:, :, 0]
    q, scales = _quantize_tiles(k[..., :nope_dim], tile)
    # e8m0 stores only the exponent: byte = log2(scale) + 127, with 0xFF meaning NaN.
    exponent = torch.log2(scales) + 127
    scale_bytes = torch.where(torch.isnan(scales), 255.0, exponent).to(torch.uint8)
    pad = torch.zeros(nb, bs, 1, dtype=torch.uint8, device=k.device)
    data = torch.cat([_as_bytes(q), _as_bytes(k[..., nope_dim:])], dim=-1)  # (nb, bs, 576)
    tail = torch.cat([scale_bytes, pad], dim=-1)  # (nb, bs, 8)
    block_bytes = bs * bytes_per_token
    padded = -(-block_bytes // 576) * 576
    out = torch.zeros(nb, padded, dtype=torch.uint8, device=k.device)
    out[:, : bs * 576] = data.reshape(nb, -1)
    out[:, bs * 576 : block_bytes] = tail.reshape(nb, -1)
    return out[:, :block_bytes].view(nb, bs, 1, bytes_per_token)


def dequantize_kvcache_fp8(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_kvcache_fp8`: uint8 (..., 656) -> bf16 (..., 576), or the per-block
    (num_blocks, page_block_size, 1, 584) layout -> bf16 (num_blocks, page_block_size, 1, 512).
    ``int8`` and ``float8_e4m3fn`` views of the same bytes are accepted too, as FlashMLA accepts them."""
    if packed.dtype not in _FP8_CACHE_DTYPES:
        raise AttentionArgumentError(
            f"packed: expected uint8, int8 or float8_e4m3fn bytes of the FP8 KV cache, got {describe(packed)}"
        )
    packed = packed.view(torch.uint8)
    if packed.shape[-1] == FP8_V32_BYTES_PER_TOKEN:
        return _dequantize_v32(packed)
    if packed.shape[-1] == FP8_MODEL1_BYTES_PER_TOKEN:
        return _dequantize_model1(packed)
    raise AttentionArgumentError(
        f"packed: last dim must be 656 (head dim 576) or 584 (head dim 512) bytes, got {describe(packed)}"
    )


def _dequantize_tiles(fp8_bytes: torch.Tensor, scales: torch.Tensor, tile: int) -> torch.Tensor:
    values = fp8_bytes.contiguous().view(torch.float8_e4m3fn).float().unflatten(-1, (-1, tile))
    return (values * scales.unsqueeze(-1)).flatten(-2).to(torch.bfloat16)


def _dequantize_v32(packed: torch.Tensor) -> torch.Tensor:
    _, nope_dim, _, tile, _ = V32_LAYOUT
    n_scale_bytes = 4 * (nope_dim // tile)
    scales = packed[..., nope_dim : nope_dim + n_scale_bytes].contiguous().view(torch.float32)
    nope = _dequantize_tiles(packed[..., :nope_dim], scales, tile)
    rope = packed[..., nope_dim + n_scale_bytes :].contiguous().view(torch.bfloat16)
    return torch.cat([nope, rope], dim=-1)


def _dequantize_model1(packed: torch.Tensor) -> torch.Tensor:
    _, nope_dim, _, tile, bytes_per_token = MODEL1_LAYOUT
    if packed.dim() != 4 or packed.shape[2] != 1 or packed.stride(1) != bytes_per_token:
        raise AttentionArgumentError(
            "packed: the 584-byte layout is per page block: expected a (num_blocks, page_block_size, 1, 584) "
            f"view with token stride 584, got {describe(packed)} with strides {packed.stride()}"
        )
    nb, bs = packed.shape[0], packed.shape[1]
    # Tokens are not 584-byte records: read each block as one run of bytes from its base address.
    blocks = torch.as_strided(packed, (nb, bs * bytes_per_token), (packed.stride(0), 1))
    data = blocks[:, : bs * 576].reshape(nb, bs, 576)
    tail = blocks[:, bs * 576 :].reshape(nb, bs, 8)
    exponent = tail[..., : nope_dim // tile].float()
    scales = torch.where(exponent == 255, float("nan"), torch.exp2(exponent - 127))
    nope = _dequantize_tiles(data[..., :nope_dim], scales, tile)
    rope = data[..., nope_dim:].contiguous().view(torch.bfloat16)
    return torch.cat([nope, rope], dim=-1).unsqueeze(2)

"""Seeded input generators for attention tests.

Every tensor is drawn on the CPU from a seeded generator and then moved, so a seed gives the same numbers on
every device. Memory a correct kernel must not read (padding of strided views, cache slots past
``cache_seqlens``, unused pages) holds NaN, so an out-of-bounds read shows up as NaN in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def randn(shape: Sequence[int], *, dtype: torch.dtype, device, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def _nan_padded(x: torch.Tensor, pad: int) -> torch.Tensor:
    """A view of ``x`` inside a buffer ``pad`` rows longer along dim 1, the extra rows NaN."""
    buf = torch.full(
        (x.shape[0], x.shape[1] + pad, *x.shape[2:]), float("nan"), dtype=x.dtype, device=x.device
    )
    buf[:, : x.shape[1]] = x
    return buf[:, : x.shape[1]]


def strided_view(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values as a view with stride 2 in its last dimension (every other element of a buffer twice
    as wide): for the checks that refuse index and length tensors the kernels would misread."""
    wide = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


def attention_inputs(
    batch: int,
    seqlen_q: int,
    seqlen_k: int,
    heads_q: int,
    heads_k: int,
    head_dim: int,
    head_dim_v: int | None = None,
    *,
    dtype: torch.dtype = torch.float16,
    device="cpu",
    seed: int = 0,
    requires_grad: bool = False,
    nan_padding: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random q (batch, seqlen_q, heads_q, head_dim) and k, v (batch, seqlen_k, heads_k, head_dim[_v]).

    With ``nan_padding > 0`` the tensors are strided views into buffers whose extra seqlen rows hold NaN.
    """
    gen = generator(seed)
    q = randn((batch, seqlen_q, heads_q, head_dim), dtype=dtype, device=device, gen=gen)
    k = randn((batch, seqlen_k, heads_k, head_dim), dtype=dtype, device=device, gen=gen)
    v = randn((batch, seqlen_k, heads_k, head_dim_v or head_dim), dtype=dtype, device=device, gen=gen)
    if nan_padding:
        q, k, v = (_nan_padded(t, nan_padding) for t in (q, k, v))
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return q, k, v


def random_seqlens(batch: int, max_seqlen: int, *, seed: int, min_seqlen: int = 0) -> list[int]:
    """``batch`` lengths in [min_seqlen, max_seqlen], the longest equal to max_seqlen."""
    gen = generator(seed)
    lengths = torch.randint(min_seqlen, max_seqlen + 1, (batch,), generator=gen).tolist()
    lengths[int(torch.randint(0, batch, (1,), generator=gen))] = max_seqlen
    return lengths


def cu_seqlens(lengths: Sequence[int], device="cpu") -> torch.Tensor:
    """(len(lengths) + 1,) int32 prefix sums starting at 0."""
    out = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    out[1:] = torch.tensor(list(lengths), dtype=torch.int64).cumsum(0)
    return out.to(device)


def unpad(x: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """(batch, seqlen, ...) padded -> (sum(lengths), ...) packed, keeping the first lengths[i] rows of each."""
    return torch.cat([x[i, :n] for i, n in enumerate(lengths)])


def pad(x: torch.Tensor, cu: torch.Tensor, max_seqlen: int, value: float = 0.0) -> torch.Tensor:
    """(total, ...) packed -> (batch, max_seqlen, ...) padded with ``value``."""
    bounds = cu.tolist()
    out = x.new_full((len(bounds) - 1, max_seqlen, *x.shape[1:]), value)
    for i in range(len(bounds) - 1):
        out[i, : bounds[i + 1] - bounds[i]] = x[bounds[i] : bounds[i + 1]]
    return out


@dataclass
class VarlenInputs:
    q: torch.Tensor  # (total_q, heads_q, head_dim)
    k: torch.Tensor  # (total_k, heads_k, head_dim)
    v: torch.Tensor  # (total_k, heads_k, head_dim_v)
    cu_seqlens_q: torch.Tensor  # (batch + 1,) int32
    cu_seqlens_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    seqlens_q: list[int]
    seqlens_k: list[int]

    def args(self) -> tuple:
        """The positional arguments of ``flash_attn_varlen_func``, q through max_seqlen_k."""
        return (
            self.q,
            self.k,
            self.v,
            self.cu_seqlens_q,
            self.cu_seqlens_k,
            self.max_seqlen_q,
            self.max_seqlen_k,
        )


def varlen_inputs(
    seqlens_q: Sequence[int],
    seqlens_k: Sequence[int],
    heads_q: int,
    heads_k: int,
    head_dim: int,
    head_dim_v: int | None = None,
    *,
    dtype: torch.dtype = torch.float16,
    device="cpu",
    seed: int = 0,
    requires_grad: bool = False,
) -> VarlenInputs:
    """Packed q, k, v for sequences of the given lengths (zero allowed), with their cu_seqlens."""
    gen = generator(seed)
    q = randn((sum(seqlens_q), heads_q, head_dim), dtype=dtype, device=device, gen=gen)
    k = randn((sum(seqlens_k), heads_k, head_dim), dtype=dtype, device=device, gen=gen)
    v = randn((sum(seqlens_k), heads_k, head_dim_v or head_dim), dtype=dtype, device=device, gen=gen)
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return VarlenInputs(
        q,
        k,
        v,
        cu_seqlens(seqlens_q, device),
        cu_seqlens(seqlens_k, device),
        max(seqlens_q, default=0),
        max(seqlens_k, default=0),
        list(seqlens_q),
        list(seqlens_k),
    )


@dataclass
class KVCacheInputs:
    q: torch.Tensor  # (batch, seqlen_q, heads_q, head_dim)
    k_cache: (
        torch.Tensor
    )  # (num_pages, page_size, heads_k, head_dim), or (batch, capacity, heads_k, head_dim)
    v_cache: torch.Tensor
    cache_seqlens: torch.Tensor  # (batch,) int32
    block_table: torch.Tensor | None  # (batch, max_pages_per_seq) int32
    k: list[torch.Tensor]  # per sequence, the valid (cache_seqlens[i], heads_k, head_dim) keys, densely
    v: list[torch.Tensor]


def kvcache_inputs(
    seqlen_q: int,
    cache_seqlens: Sequence[int],
    heads_q: int,
    heads_k: int,
    head_dim: int,
    *,
    page_size: int | None = None,
    capacity: int | None = None,
    dtype: torch.dtype = torch.float16,
    device="cpu",
    seed: int = 0,
    spare_pages: int = 3,
) -> KVCacheInputs:
    """Decoding inputs. With ``page_size`` the cache is a page pool in random order (plus ``spare_pages``
    unused pages) and a block table; unused table entries point at NaN pages, and every slot past a
    sequence's length holds NaN. Without it, each sequence has a contiguous cache of ``capacity`` slots."""
    gen = generator(seed)
    batch = len(cache_seqlens)
    q = randn((batch, seqlen_q, heads_q, head_dim), dtype=dtype, device=device, gen=gen)
    ks = [randn((n, heads_k, head_dim), dtype=dtype, device=device, gen=gen) for n in cache_seqlens]
    vs = [randn((n, heads_k, head_dim), dtype=dtype, device=device, gen=gen) for n in cache_seqlens]
    nan = float("nan")
    if page_size is None:
        cap = capacity or max(max(cache_seqlens), 1)
        k_cache = torch.full((batch, cap, heads_k, head_dim), nan, dtype=dtype, device=device)
        v_cache = torch.full_like(k_cache, nan)
        for i, n in enumerate(cache_seqlens):
            k_cache[i, :n], v_cache[i, :n] = ks[i], vs[i]
        block_table = None
    else:
        pages_per_seq = [(n + page_size - 1) // page_size for n in cache_seqlens]
        max_pages = max(max(pages_per_seq), 1) + 1  # one more column than needed: it must never be read
        num_pages = sum(pages_per_seq) + spare_pages
        order = torch.randperm(num_pages, generator=gen)
        k_cache = torch.full((num_pages, page_size, heads_k, head_dim), nan, dtype=dtype, device=device)
        v_cache = torch.full_like(k_cache, nan)
        spare = order[sum(pages_per_seq) :]  # pages no sequence owns: NaN, the target of unused entries
        block_table = torch.empty(batch, max_pages, dtype=torch.int32)
        used = 0
        for i, n in enumerate(cache_seqlens):
            pages = order[used : used + pages_per_seq[i]]
            used += pages_per_seq[i]
            block_table[i, : len(pages)] = pages.to(torch.int32)
            block_table[i, len(pages) :] = int(spare[i % len(spare)]) if len(spare) else 0
            for p, page in enumerate(pages.tolist()):
                lo, hi = p * page_size, min(n, (p + 1) * page_size)
                k_cache[page, : hi - lo], v_cache[page, : hi - lo] = ks[i][lo:hi], vs[i][lo:hi]
        block_table = block_table.to(device)
    seqlens = torch.tensor(list(cache_seqlens), dtype=torch.int32, device=device)
    return KVCacheInputs(q, k_cache, v_cache, seqlens, block_table, ks, vs)

"""The flash-attn API: validation, dispatch to the kernels, autograd, and torch.library registration.

Each kernel entry point is a ``torch.library.custom_op`` with a fake (meta) implementation, so that
``torch.compile`` can trace the ops without running Triton, and the backward is attached with
``register_autograd`` (the op-level equivalent of an ``autograd.Function``: the forward op saves q, k, v,
out and lse, and varlen's cu_seqlens; the backward op recomputes probabilities from lse).

Under ``torch.compile``: :func:`flash_attn_func` compiles with ``fullgraph=True``, forward and backward.
:func:`flash_attn_varlen_func` and :func:`flash_attn_with_kvcache` do not: their validation
(``attn_reference.validation``) reads ``cu_seqlens`` / ``cache_seqlens`` on the host to check them (and
kvcache takes the longest cache length from them), which is data-dependent control flow, so they
graph-break there and compile only without ``fullgraph`` (the op itself still lands in a graph).

No Python-level state decides the path: :func:`attn_triton._runtime.path_for` looks at the device when a
kernel launches (Hopper: tensor descriptors; sm80+: pointers; CPU under ``TRITON_INTERPRET=1``: the
interpreter).
"""

import torch

from attn_reference.capability import device_guard
from attn_reference.errors import AttentionArgumentError
from attn_reference.validation import (
    check_kvcache,
    check_options,
    check_qkv,
    check_varlen_qkv,
)
from attn_triton._runtime import check_device
from attn_triton.flash_bwd import flash_bwd
from attn_triton.flash_decode import flash_decode
from attn_triton.flash_fwd import flash_fwd

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
HEAD_DIMS = (32, 64, 96, 128, 192, 256)
PAGE_SIZE_MULTIPLE = 16


# --- dense and varlen -------------------------------------------------------------------------------------
# One op pair serves both layouts, as flash_fwd/flash_bwd do: cu_seqlens None is the dense
# (batch, seqlen, heads, d) layout, where the max_seqlen arguments are unused.
@torch.library.custom_op("attn_triton::fwd", mutates_args=())
def _fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None,
    cu_seqlens_k: torch.Tensor | None,
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float,
    left: int,
    right: int,
    softcap: float,
    deterministic: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    with device_guard(q):
        return flash_fwd(
            q,
            k,
            v,
            softmax_scale=softmax_scale,
            left=left,
            right=right,
            softcap=softcap,
            cu_seqlens_q=cu_seqlens_q,
            cu_seqlens_k=cu_seqlens_k,
            max_seqlen_q=max_seqlen_q,
            max_seqlen_k=max_seqlen_k,
        )


@_fwd.register_fake
def _(q, k, v, cu_seqlens_q, *args):
    if cu_seqlens_q is None:
        b, sq, h, _ = q.shape
        return torch.empty_like(q), q.new_empty((b, h, sq), dtype=torch.float32)
    return torch.empty_like(q), q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)


@torch.library.custom_op("attn_triton::bwd", mutates_args=())
def _bwd(
    dout: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None,
    cu_seqlens_k: torch.Tensor | None,
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float,
    left: int,
    right: int,
    softcap: float,
    deterministic: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with device_guard(q):
        return flash_bwd(
            dout,
            q,
            k,
            v,
            out,
            lse,
            softmax_scale=softmax_scale,
            left=left,
            right=right,
            softcap=softcap,
            deterministic=deterministic,
            cu_seqlens_q=cu_seqlens_q,
            cu_seqlens_k=cu_seqlens_k,
            max_seqlen_q=max_seqlen_q,
            max_seqlen_k=max_seqlen_k,
        )


@_bwd.register_fake
def _(dout, q, k, v, *args):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _fwd_setup(ctx, inputs, output):
    q, k, v, cu_q, cu_k, *args = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
    ctx.args = args


def _fwd_backward(ctx, dout, dlse):
    q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
    dq, dk, dv = _bwd(dout, q, k, v, out, lse, cu_q, cu_k, *ctx.args)
    return dq, dk, dv, *([None] * 9)


torch.library.register_autograd("attn_triton::fwd", _fwd_backward, setup_context=_fwd_setup)


# --- kvcache ----------------------------------------------------------------------------------------------
@torch.library.custom_op("attn_triton::kvcache_fwd", mutates_args=())
def _kvcache_fwd(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor,
    block_table: torch.Tensor | None,
    softmax_scale: float,
    left: int,
    right: int,
    softcap: float,
    max_cache_len: int,
    num_splits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    with device_guard(q):
        return flash_decode(
            q,
            k_cache,
            v_cache,
            cache_seqlens,
            block_table,
            softmax_scale=softmax_scale,
            left=left,
            right=right,
            softcap=softcap,
            max_cache_len=max_cache_len,
            num_splits=num_splits,
        )


@_kvcache_fwd.register_fake
def _(q, *args):
    b, sq, h, _ = q.shape
    return torch.empty_like(q), q.new_empty((b, h, sq), dtype=torch.float32)


# --- public API -------------------------------------------------------------------------------------------
def flash_attn_func(
    q,
    k,
    v,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    return_lse=False,
    deterministic=False,
):
    """Attention over (batch, seqlen, heads, headdim) tensors, flash-attn semantics.

    fp16/bf16 (fp32 for the interpreter tests); head dims 32, 64, 96, 128, 192, 256; heads_q a multiple of
    heads_k (GQA/MQA); causal aligned bottom-right; ``window_size=(left, right)`` with -1 unbounded;
    ``softcap > 0`` caps scores with ``softcap * tanh(score / softcap)``. Returns ``out`` and, with
    ``return_lse``, the natural-log logsumexp (batch, heads, seqlen_q) fp32 (+inf for rows that see no key).
    ``deterministic=True`` makes the backward bitwise reproducible (no atomics).
    """
    fn = "flash_attn_func"
    shape = check_qkv(q, k, v, fn=fn, dtypes=DTYPES, head_dims=HEAD_DIMS, head_dim_v_must_match=True)
    check_device(fn, q=q, k=k, v=v)
    (left, right), softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    out, lse = _fwd(q, k, v, None, None, 0, 0, scale, left, right, softcap, bool(deterministic))
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    return_lse=False,
    deterministic=False,
):
    """Packed variable-length attention: q (total_q, heads, d), k/v (total_k, heads_k, d), int32 cu_seqlens.

    Same options as :func:`flash_attn_func`; lse is (heads, total_q).
    """
    fn = "flash_attn_varlen_func"
    shape, _, _ = check_varlen_qkv(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        fn=fn,
        dtypes=DTYPES,
        head_dims=HEAD_DIMS,
        head_dim_v_must_match=True,
    )
    check_device(fn, q=q, k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    (left, right), softcap, scale = check_options(softmax_scale, causal, window_size, softcap, shape.head_dim)
    out, lse = _fwd(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        int(max_seqlen_q),
        int(max_seqlen_k),
        scale,
        left,
        right,
        softcap,
        bool(deterministic),
    )
    return (out, lse) if return_lse else out


def flash_attn_with_kvcache(
    q,
    k_cache,
    v_cache,
    cache_seqlens=None,
    block_table=None,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    return_lse=False,
    num_splits=0,
):
    """Decoding: q (batch, seqlen_q, heads, d) against a KV cache, forward only.

    Contiguous caches are (batch, capacity, heads_k, d); paged ones a pool (num_pages, page_size, heads_k, d)
    with ``block_table`` (batch, max_pages) int32, page_size a multiple of 16. ``cache_seqlens``: int32
    (batch,), an int, or None (the whole capacity). ``num_splits``: KV splits per (sequence, KV head); 0
    picks by occupancy. Query token i is at position ``cache_seqlens - seqlen_q + i`` for causal/window.
    """
    fn = "flash_attn_with_kvcache"
    kv = check_kvcache(
        q,
        k_cache,
        v_cache,
        cache_seqlens,
        block_table,
        fn=fn,
        dtypes=DTYPES,
        head_dims=HEAD_DIMS,
        page_size_multiple=PAGE_SIZE_MULTIPLE,
        head_dim_v_must_match=True,
    )
    # bool is an int to isinstance, but True as a split count is a caller's mistake, not a request for one
    if not isinstance(num_splits, int) or isinstance(num_splits, bool) or num_splits < 0:
        raise AttentionArgumentError(
            f"{fn}: num_splits must be an int >= 0 (0: chosen by occupancy), got {num_splits!r} "
            f"({type(num_splits).__name__})"
        )
    check_device(fn, q=q, k_cache=k_cache, v_cache=v_cache)
    (left, right), softcap, scale = check_options(
        softmax_scale, causal, window_size, softcap, kv.attn.head_dim
    )
    if not isinstance(cache_seqlens, torch.Tensor):
        cache_seqlens = kv.cache_seqlens.to(device=q.device, dtype=torch.int32)
    max_len = int(kv.cache_seqlens.max()) if kv.cache_seqlens.numel() else 0
    out, lse = _kvcache_fwd(
        q, k_cache, v_cache, cache_seqlens, block_table, scale, left, right, softcap, max_len, int(num_splits)
    )
    return (out, lse) if return_lse else out

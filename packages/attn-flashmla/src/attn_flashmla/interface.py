"""FlashMLA's Python API: validation, scheduling on first use, dispatch, ``torch.library`` registration.

Programs written for ``flash_mla`` run unchanged with ``import attn_flashmla as flash_mla``:

* :func:`get_mla_metadata` returns ``(FlashMLASchedMeta(), None)``, an empty schedule. Any arguments are
  accepted (current FlashMLA ignores them; the older ``(cache_seqlens, num_q_tokens_per_head_k,
  num_heads_k, ...)`` form is what most programs still pass).
* :func:`flash_mla_with_kvcache` fills the schedule on its first call (argument values are checked then,
  lengths and block tables read on the host once) and reuses it afterwards, as FlashMLA does across the
  layers of a model; a later call with other shapes is refused, naming what changed.
* :func:`flash_mla_sparse_fwd` is sparse prefill.

This module only validates (with :mod:`attn_reference.mla`'s checks, shared with the reference), chooses a
path at call time (:func:`attn_flashmla._runtime.dense_path`: the CuTe DSL kernel on Hopper, Triton
elsewhere, never decided at import) and calls the kernels through ``torch.library.custom_op`` s with fake
implementations, so ``torch.compile(fullgraph=True)`` traces through a call (once its schedule exists).
"""

from __future__ import annotations

import dataclasses

import torch

from attn_flashmla import _runtime
from attn_flashmla.scheduler import default_num_parts, schedule_decode
from attn_reference.capability import device_guard
from attn_reference.errors import AttentionArgumentError
from attn_reference.mla import check_mla_decode_args, check_mla_sparse_prefill_args


@dataclasses.dataclass
class FlashMLASchedMeta:
    """The tile scheduler's metadata, FlashMLA's class of the same name; filled on first use.

    ``tile_scheduler_metadata`` (num_sm_parts, 5) int32 and ``num_splits`` (batch + 1) int32 are this
    package's schedule (:class:`attn_flashmla.scheduler.DecodeSchedule`'s ``parts`` and
    ``split_offsets``). The rest records what the schedule was made for.
    """

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: int | None
        extra_page_block_size: int | None
        extra_topk: int | None

    have_initialized: bool = False
    config: Config | None = None
    tile_scheduler_metadata: torch.Tensor | None = None
    num_splits: torch.Tensor | None = None
    # This package's additions: the path and kernel configuration the schedule was made for.
    path: str | None = None
    kernel_config: dict | None = None
    total_splits: int = 0
    max_splits: int = 0


def get_mla_metadata(*args, **kwargs) -> tuple[FlashMLASchedMeta, None]:
    """An empty schedule; it is computed by the first :func:`flash_mla_with_kvcache` call that uses it.

    Takes any arguments, so both FlashMLA's current call (none) and the older
    ``get_mla_metadata(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_heads_q, is_fp8_kvcache,
    topk)`` work.
    """
    return FlashMLASchedMeta(), None


# ---------------------------------------------------------------------------------------------------------
# Custom ops: what torch.compile sees. Each runs the kernels; its fake returns empty tensors of the shapes.
# The kernels launch on the current device: each op makes q's device current first (device_guard).
# ---------------------------------------------------------------------------------------------------------


@torch.library.custom_op("attn_flashmla::dense_decode", mutates_args=())
def _dense_decode_op(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    cache_seqlens: torch.Tensor,
    parts: torch.Tensor,
    split_offsets: torch.Tensor,
    softmax_scale: float,
    causal: bool,
    path: str,
    block_m: int,
    block_n: int,
    num_warps: int,
    num_stages: int,
    dv_split: int,
    tma: int,
    gluon: int,
    total_splits: int,
    max_splits: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    with device_guard(q):
        config = {
            "BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": num_warps, "num_stages": num_stages,
            "DV_SPLIT": dv_split, "TMA": tma, "GLUON": gluon,
        }  # fmt: skip
        if path == "cute":
            from attn_flashmla.decode_fwd_sm90 import dense_decode_cute

            return dense_decode_cute(
                q, k_cache, block_table, cache_seqlens, parts, split_offsets, total_splits, max_splits,
                softmax_scale, causal,
            )  # fmt: skip
        from attn_flashmla.decode_fwd import dense_decode_triton

        return dense_decode_triton(
            q, k_cache, block_table, cache_seqlens, parts, split_offsets, total_splits, max_splits,
            softmax_scale, causal, config,
        )  # fmt: skip


@_dense_decode_op.register_fake
def _decode_fake(q, *args):
    # Dense and sparse decoding return the same shapes: out (b, s_q, h_q, 512), lse (b, h_q, s_q).
    b, s_q, h_q, _ = q.shape
    return q.new_empty(b, s_q, h_q, 512), q.new_empty(b, h_q, s_q, dtype=torch.float32)


@torch.library.custom_op("attn_flashmla::sparse_decode", mutates_args=())
def _sparse_decode_op(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    indices: torch.Tensor,
    topk_length: torch.Tensor | None,
    attn_sink: torch.Tensor | None,
    extra_k_cache: torch.Tensor | None,
    extra_indices: torch.Tensor | None,
    extra_topk_length: torch.Tensor | None,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    with device_guard(q):
        from attn_flashmla.sparse_fwd import sparse_decode_triton

        return sparse_decode_triton(
            q, k_cache, indices, topk_length, attn_sink, extra_k_cache, extra_indices, extra_topk_length,
            softmax_scale,
        )  # fmt: skip


_sparse_decode_op.register_fake(_decode_fake)


@torch.library.custom_op("attn_flashmla::sparse_prefill", mutates_args=())
def _sparse_prefill_op(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    attn_sink: torch.Tensor | None,
    topk_length: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with device_guard(q):
        from attn_flashmla.sparse_fwd import sparse_prefill_triton

        return sparse_prefill_triton(q, kv, indices, sm_scale, attn_sink, topk_length)


@_sparse_prefill_op.register_fake
def _(q, kv, indices, sm_scale, attn_sink, topk_length):
    s_q, h_q, _ = q.shape
    lse = q.new_empty(s_q, h_q, dtype=torch.float32)
    return q.new_empty(s_q, h_q, 512), torch.empty_like(lse), lse


# ---------------------------------------------------------------------------------------------------------
# The public API
# ---------------------------------------------------------------------------------------------------------


def _check_same_config(old: FlashMLASchedMeta.Config, new: FlashMLASchedMeta.Config) -> None:
    changed = [
        f"{f.name} {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}"
        for f in dataclasses.fields(old)
        if getattr(old, f.name) != getattr(new, f.name)
    ]
    if changed:
        raise AttentionArgumentError(
            "tile_scheduler_metadata: this FlashMLASchedMeta was computed for other shapes ("
            + ", ".join(changed)
            + "). A schedule may be reused only for calls with the same shapes and the same cache_seqlens / "
            "topk_length values; call get_mla_metadata() again for a new one."
        )


def _make_schedule(q, k_cache, seqlens_cpu: torch.Tensor, config: dict):
    """The split schedule for one kernel config: (parts, split_offsets, total_splits, max_splits)."""
    _, s_q, h_q, _ = q.shape
    h_kv = k_cache.shape[2]
    parts = default_num_parts(
        _runtime.num_sms(q.device), h_kv, s_q * h_q // h_kv, config["BLOCK_M"], config.get("ctas_per_sm", 1),
        config.get("DV_SPLIT", 1),
    )  # fmt: skip
    # FlashMLA's fixed overhead is 5 tiles of 64 tokens; keep it in tokens for other tile sizes.
    overhead = max(1, 5 * 64 // config["BLOCK_N"])
    schedule = schedule_decode(seqlens_cpu, parts, config["BLOCK_N"], overhead).to(q.device)
    counts = schedule.split_offsets[1:] - schedule.split_offsets[:-1]
    return schedule.parts, schedule.split_offsets, schedule.total_splits, int(counts.max())


def _initialize_dense_schedule(
    sched: FlashMLASchedMeta, q, k_cache, block_table, cache_seqlens, softmax_scale: float, causal: bool
) -> None:
    from attn_flashmla import decode_fwd

    _, s_q, h_q, _ = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    rows = s_q * h_q // h_kv
    seqlens_cpu = cache_seqlens.cpu()
    path = _runtime.dense_path(q, page, h_kv, softmax_scale)
    if path == "cute":
        from attn_flashmla.decode_fwd_sm90 import cute_config

        config = cute_config()
    elif decode_fwd.autotune_enabled(q.device):
        # First call of this shape bucket: time the candidate tile configs on these very inputs (each with
        # its own schedule) and keep the fastest; later schedules of the bucket reuse the choice.
        def run_with(config):
            made = _make_schedule(q, k_cache, seqlens_cpu, config)
            return lambda: decode_fwd.dense_decode_triton(
                q, k_cache, block_table, cache_seqlens, *made, softmax_scale, causal, config
            )

        key = decode_fwd.tune_key(q, k_cache, int(seqlens_cpu.sum()), causal and s_q > 1)
        config = decode_fwd.tune_config(key, rows, run_with)
    else:
        config = decode_fwd.default_config(rows, q.device)
    parts, offsets, total, max_splits = _make_schedule(q, k_cache, seqlens_cpu, config)
    sched.tile_scheduler_metadata = parts
    sched.num_splits = offsets
    sched.path = path
    sched.kernel_config = config
    sched.total_splits = total
    sched.max_splits = max_splits


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor | None,
    cache_seqlens: torch.Tensor | None,
    head_dim_v: int,
    tile_scheduler_metadata: FlashMLASchedMeta | None = None,
    num_splits: None = None,
    softmax_scale: float | None = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: torch.Tensor | None = None,
    attn_sink: torch.Tensor | None = None,
    extra_k_cache: torch.Tensor | None = None,
    extra_indices_in_kvcache: torch.Tensor | None = None,
    topk_length: torch.Tensor | None = None,
    extra_topk_length: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MLA decoding against a paged KV cache, FlashMLA's ``flash_mla_with_kvcache``.

    Dense: q (b, s_q, h_q, 576 or 512) bf16/fp16, k_cache (num_blocks, page_block_size, h_kv, d) of q's
    dtype, block_table (b, max_blocks) int32, cache_seqlens (b,) int32, ``causal`` bottom-right aligned.
    Sparse (``indices`` (b, s_q, topk) int32 token addresses, -1 invalid): q bf16, ``is_fp8_kvcache=True``,
    k_cache FlashMLA's FP8 layout, ``topk_length``, ``attn_sink``, the extra cache. ``head_dim_v`` must be
    512. ``tile_scheduler_metadata`` comes from :func:`get_mla_metadata` (``None`` is accepted here: a
    one-off schedule). Returns ``out`` (b, s_q, h_q, 512) and ``lse`` (b, h_q, s_q) fp32, natural log;
    rows that see no token get ``out = 0, lse = +inf``.
    """
    sched = FlashMLASchedMeta() if tile_scheduler_metadata is None else tile_scheduler_metadata
    if not isinstance(sched, FlashMLASchedMeta):
        raise AttentionArgumentError(
            "tile_scheduler_metadata: expected the FlashMLASchedMeta returned by get_mla_metadata()[0], got "
            f"{type(sched).__name__}"
        )
    if num_splits is not None:
        raise AttentionArgumentError(
            "num_splits: must be None (the schedule lives in tile_scheduler_metadata, as in FlashMLA >= 2026);"
            f" got {num_splits!r}"
        )
    first = not sched.have_initialized
    # Argument values (lengths, block tables, indices) are read on the host only when the schedule is made,
    # as FlashMLA's sanity checks run only then: later calls stay free of device syncs.
    sizes = check_mla_decode_args(
        q,
        k_cache,
        block_table,
        cache_seqlens,
        head_dim_v,
        softmax_scale,
        causal,
        is_fp8_kvcache,
        indices,
        attn_sink,
        extra_k_cache,
        extra_indices_in_kvcache,
        topk_length,
        extra_topk_length,
        check_values=first,
    )
    _runtime.check_device("flash_mla_with_kvcache", q)
    config = FlashMLASchedMeta.Config(
        b=sizes.batch,
        s_q=sizes.s_q,
        h_q=sizes.h_q,
        page_block_size=sizes.page_block_size,
        h_k=sizes.h_kv,
        causal=sizes.causal,
        is_fp8_kvcache=sizes.is_fp8_kvcache,
        topk=sizes.topk,
        extra_page_block_size=sizes.extra_page_block_size,
        extra_topk=sizes.extra_topk,
    )
    if first:
        sched.config = config
        if not sizes.sparse:
            _initialize_dense_schedule(
                sched, q, k_cache, block_table, cache_seqlens, sizes.softmax_scale, sizes.causal
            )
        sched.have_initialized = True
    else:
        _check_same_config(sched.config, config)

    if sizes.sparse:
        # Sparse decoding needs no schedule: every (query token, head block) is a program, and the
        # split of the index lists (ATTN_FLASHMLA_SPARSE_SPLITS) is decided per call from the shapes alone.
        return _sparse_decode_op(
            q,
            k_cache,
            indices,
            topk_length,
            attn_sink,
            extra_k_cache,
            extra_indices_in_kvcache,
            extra_topk_length,
            sizes.softmax_scale,
        )
    kc = sched.kernel_config
    return _dense_decode_op(
        q,
        k_cache,
        block_table,
        cache_seqlens,
        sched.tile_scheduler_metadata,
        sched.num_splits,
        sizes.softmax_scale,
        sizes.causal,
        sched.path,
        kc["BLOCK_M"],
        kc["BLOCK_N"],
        kc["num_warps"],
        kc["num_stages"],
        kc.get("DV_SPLIT", 1),
        kc.get("TMA", 0),
        kc.get("GLUON", 0),
        sched.total_splits,
        sched.max_splits,
    )


def flash_mla_sparse_fwd(
    q: torch.Tensor,
    kv: torch.Tensor,
    indices: torch.Tensor,
    sm_scale: float,
    d_v: int = 512,
    attn_sink: torch.Tensor | None = None,
    topk_length: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse MLA prefill, FlashMLA's ``flash_mla_sparse_fwd``.

    q (s_q, h_q, 576 or 512) bf16, kv (s_kv, 1, d) bf16, indices (s_q, 1, topk) int32 rows of kv (anything
    outside [0, s_kv) is invalid), ``attn_sink`` (h_q,) fp32, ``topk_length`` (s_q,) int32. Returns
    ``out`` (s_q, h_q, 512) bf16, ``max_logits`` and ``lse`` (s_q, h_q) fp32 in natural log (FlashMLA's
    kernels since Jan. 2026); a query with no valid index gets out 0, max_logits -inf, lse +inf.
    """
    sizes = check_mla_sparse_prefill_args(q, kv, indices, sm_scale, d_v, attn_sink, topk_length)
    _runtime.check_device("flash_mla_sparse_fwd", q)
    return _sparse_prefill_op(q, kv, indices, sizes.sm_scale, attn_sink, topk_length)

"""The peers: the best public implementations, imported only if present, GPU only.

torch SDPA with each of its backends (flash, cuDNN, efficient, math), flash-attn 2, FlashAttention-4
(``flash_attn.cute``), FlashInfer, DeepSeek FlashMLA, and torch itself for the basics. Each adapter
speaks the bench's op conventions (see :mod:`attn_bench.backend`); what cannot be imported is reported
with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
from collections.abc import Callable

import torch

from attn_bench.backend import Backend


@dataclasses.dataclass
class Peer:
    """A peer's name and either its backend or why it is missing."""

    name: str
    backend: Backend | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.backend is not None


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


# --- torch SDPA -----------------------------------------------------------------------------------------

_SDPA = {
    "sdpa-flash": "FLASH_ATTENTION",
    "sdpa-cudnn": "CUDNN_ATTENTION",
    "sdpa-efficient": "EFFICIENT_ATTENTION",
    "sdpa-math": "MATH",
}


def _sdpa(kernel_name: str) -> Backend:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = getattr(SDPBackend, kernel_name)
    F = torch.nn.functional

    def attention(q, k, v, *, causal, softmax_scale):
        gqa = q.shape[2] != k.shape[2]
        with sdpa_kernel(kernel):
            o = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                is_causal=causal,
                scale=softmax_scale,
                enable_gqa=gqa,
            )
        return o.transpose(1, 2)

    def decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
        # SDPA has no cache lengths: valid only for full caches, which the decode suite uses.
        return attention(q, k_cache, v_cache, causal=False, softmax_scale=softmax_scale)

    ops = {"attention_fwd": attention, "attention_bwd": attention, "decode_kvcache": decode}
    return Backend(name="", kind="peer", version=torch.__version__, devices=("cuda",), impls=_wrap(ops))


def _wrap(ops: dict[str, Callable]) -> dict[str, dict[str, Callable]]:
    return {op: {"default": fn} for op, fn in ops.items()}


# --- flash-attn 2 and 4 ---------------------------------------------------------------------------------


def _flash_attn2() -> Backend:
    import flash_attn

    if not str(getattr(flash_attn, "__version__", "2")).startswith("2"):
        raise ImportError(f"flash_attn {flash_attn.__version__} is not FlashAttention-2")
    from flash_attn import flash_attn_func, flash_attn_with_kvcache

    def attention(q, k, v, *, causal, softmax_scale):
        return flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)

    def decode(q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
        return flash_attn_with_kvcache(
            q, k_cache, v_cache, cache_seqlens=cache_seqlens, softmax_scale=softmax_scale
        )

    ops = {"attention_fwd": attention, "attention_bwd": attention, "decode_kvcache": decode}
    return Backend(name="", kind="peer", version=flash_attn.__version__, devices=("cuda",), impls=_wrap(ops))


def _flash_attn4() -> Backend:
    from flash_attn.cute import flash_attn_func

    def attention(q, k, v, *, causal, softmax_scale):
        out = flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)
        return out[0] if isinstance(out, tuple) else out  # returns (out, lse)

    ops = {"attention_fwd": attention, "attention_bwd": attention}
    version = _version("flash-attn-4", "flash-attn-cute", "flash-attn")
    return Backend(name="", kind="peer", version=version, devices=("cuda",), impls=_wrap(ops))


# --- FlashInfer -----------------------------------------------------------------------------------------

_WORKSPACE_BYTES = 256 << 20


class _FlashInferPrefill:
    """Batch prefill over a ragged KV cache; ``plan`` runs in ``prepare``, outside the timed region."""

    def prepare(self, q, k, v, *, causal, softmax_scale):
        import flashinfer

        b, s_q, h_q, d = q.shape
        s_k, h_k = k.shape[1], k.shape[2]
        ws = torch.empty(_WORKSPACE_BYTES, dtype=torch.uint8, device=q.device)
        w = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(ws, "NHD")
        qo = torch.arange(b + 1, dtype=torch.int32, device=q.device) * s_q
        kv = torch.arange(b + 1, dtype=torch.int32, device=q.device) * s_k
        w.plan(qo, kv, h_q, h_k, d, causal=causal, sm_scale=softmax_scale, q_data_type=q.dtype)
        qf, kf, vf = q.reshape(b * s_q, h_q, d), k.reshape(b * s_k, h_k, d), v.reshape(b * s_k, h_k, d)
        return lambda: w.run(qf, kf, vf).view(b, s_q, h_q, v.shape[-1])

    def __call__(self, q, k, v, *, causal, softmax_scale):
        return self.prepare(q, k, v, causal=causal, softmax_scale=softmax_scale)()


class _FlashInferDecode:
    """Batch decode over the (full) cache viewed as pages of 16 tokens: no copy."""

    page = 16

    def prepare(self, q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
        import flashinfer

        b, s_q, h_q, d = q.shape
        s_k, h_kv = k_cache.shape[1], k_cache.shape[2]
        if s_q != 1 or s_k % self.page or bool((cache_seqlens != s_k).any()):
            raise NotImplementedError("flashinfer adapter: one query token and full caches only")
        pages = s_k // self.page
        kp = k_cache.view(b * pages, self.page, h_kv, d)
        vp = v_cache.view(b * pages, self.page, h_kv, d)
        dev = q.device
        ws = torch.empty(_WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
        w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
        w.plan(
            torch.arange(b + 1, dtype=torch.int32, device=dev) * pages,
            torch.arange(b * pages, dtype=torch.int32, device=dev),
            torch.full((b,), self.page, dtype=torch.int32, device=dev),
            h_q,
            h_kv,
            d,
            self.page,
            pos_encoding_mode="NONE",
            sm_scale=softmax_scale,
            q_data_type=q.dtype,
            kv_data_type=k_cache.dtype,
        )
        qf = q.view(b, h_q, d)
        return lambda: w.run(qf, (kp, vp)).view(b, 1, h_q, d)

    def __call__(self, q, k_cache, v_cache, *, cache_seqlens, softmax_scale):
        return self.prepare(q, k_cache, v_cache, cache_seqlens=cache_seqlens, softmax_scale=softmax_scale)()


def _flashinfer() -> Backend:
    import flashinfer  # noqa: F401 - the import is the availability test

    ops = {"attention_fwd": _FlashInferPrefill(), "decode_kvcache": _FlashInferDecode()}
    return Backend(
        name="",
        kind="peer",
        version=_version("flashinfer-python", "flashinfer"),
        devices=("cuda",),
        impls=_wrap(ops),
    )


# --- DeepSeek FlashMLA ----------------------------------------------------------------------------------


class _FlashMLADecode:
    """``get_mla_metadata`` in ``prepare``; the timed call is ``flash_mla_with_kvcache`` alone."""

    def prepare(self, q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale, causal):
        from flash_mla import flash_mla_with_kvcache, get_mla_metadata

        s_q, h_q, h_kv = q.shape[1], q.shape[2], k_cache.shape[2]
        meta, splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
        return lambda: flash_mla_with_kvcache(
            q,
            k_cache,
            block_table,
            cache_seqlens,
            head_dim_v,
            meta,
            splits,
            softmax_scale=softmax_scale,
            causal=causal,
        )[0]

    def __call__(self, *args, **kwargs):
        return self.prepare(*args, **kwargs)()


def _flash_mla() -> Backend:
    import flash_mla

    ops: dict[str, Callable] = {"mla_decode": _FlashMLADecode()}
    sparse = getattr(flash_mla, "flash_mla_sparse_fwd", None)
    if sparse is not None:
        ops["mla_sparse"] = lambda q, kv, indices, sm_scale, d_v: sparse(q, kv, indices, sm_scale, d_v)[0]
    return Backend(
        name="", kind="peer", version=_version("flash-mla", "flash_mla"), devices=("cuda",), impls=_wrap(ops)
    )


# --- torch itself for the basics ------------------------------------------------------------------------


def _torch_basics() -> Backend:
    ops = {"vector_add": torch.add, "softmax": lambda x: torch.softmax(x, dim=-1), "matmul": torch.matmul}
    return Backend(name="", kind="peer", version=torch.__version__, devices=("cuda",), impls=_wrap(ops))


FACTORIES: dict[str, Callable[[], Backend]] = {
    **{name: (lambda k=k: _sdpa(k)) for name, k in _SDPA.items()},
    "flash-attn2": _flash_attn2,
    "fa4": _flash_attn4,
    "flashinfer": _flashinfer,
    "flash-mla": _flash_mla,
    "torch": _torch_basics,
}


def discover(mode: str, only: list[str] | None = None) -> list[Peer]:
    """Every peer with its backend, or the reason it is missing (on CPU: all missing, GPU only)."""
    peers = []
    for name, factory in FACTORIES.items():
        if only is not None and name not in only:
            continue
        if mode != "gpu":
            peers.append(Peer(name, error="GPU only (CPU mode)"))
            continue
        if name == "sdpa-cudnn" and not torch.backends.cudnn.is_available():
            peers.append(Peer(name, error="cuDNN not available to torch"))
            continue
        try:
            backend = factory()
        except Exception as exc:  # a missing or broken peer is a line in the table
            peers.append(Peer(name, error=f"not importable: {type(exc).__name__}: {exc}"[:300]))
            continue
        backend.name = name
        peers.append(Peer(name, backend=backend))
    return peers

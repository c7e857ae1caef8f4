"""Correctness before speed: references from attn-reference and its tolerance rules.

Attention-type suites follow flash-attn's rule (``attn_reference.testing.tolerance``): the error against
a high-precision reference (fp64 on the CPU and for fp32 inputs, fp32 otherwise) is at most twice the
error of the same computation in the inputs' own dtype, plus the dtype's rounding step. MLA suites follow
FlashMLA's rules (``attn_reference.testing.mla``: ``assert_mla_close`` for ``out``, ``assert_mla_lse_close``
for ``lse`` and ``max_logits``) against the fp32 reference, dtypes included.

The references are attn-reference's materialised-softmax attention, run in chunks of (batch, KV head
group) so that published shapes (16k tokens, 32 heads) fit in memory and run as a few large matmuls; the
chunks are independent, so the result is the same as one call.
"""

from __future__ import annotations

import dataclasses

import torch

#: Score elements per chunk of the materialised reference (1 GiB of fp32).
CHUNK_SCORES = 1 << 28


@dataclasses.dataclass
class CheckResult:
    status: str  # "pass", "fail", "unchecked", "error"
    max_abs_err: float | None = None
    lowp_max_abs_err: float | None = None
    detail: str = ""


def high_dtype(t: torch.Tensor) -> torch.dtype:
    if t.device.type == "cpu" or t.dtype in (torch.float32, torch.float64):
        return torch.float64
    return torch.float32


def up(t: torch.Tensor) -> torch.Tensor:
    return t.to(high_dtype(t)) if t.is_floating_point() else t


def _max_err(a: torch.Tensor, r: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    finite = torch.isfinite(r)
    return (a.detach().to(r.dtype)[finite] - r[finite]).abs().max().item() if finite.any() else 0.0


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def compare(actual, reference, lowp_reference, names=("out",)) -> CheckResult:
    """flash-attn's rule on one output or a tuple of them (dq, dk, dv)."""
    from attn_reference.testing.tolerance import assert_attention_close

    actual, reference, lowp_reference = _as_tuple(actual), _as_tuple(reference), _as_tuple(lowp_reference)
    if len(actual) != len(reference):
        return CheckResult("fail", detail=f"expected {len(reference)} outputs, got {len(actual)}")
    errs, lowp_errs, failures = [], [], []
    for i, (a, r, lo) in enumerate(zip(actual, reference, lowp_reference, strict=True)):
        name = names[i] if i < len(names) else f"out{i}"
        if a is None:
            failures.append(f"{name}: missing (None)")
            continue
        if tuple(a.shape) == tuple(r.shape):
            errs.append(_max_err(a, r))
            lowp_errs.append(_max_err(lo, r))
            if _passes_on_device(a, r, lo):
                continue
        try:
            assert_attention_close(a.detach(), r, lo.detach(), name=name)
        except AssertionError as exc:
            failures.append(str(exc).strip().splitlines()[0][:240])
    return CheckResult(
        "fail" if failures else "pass",
        max(errs) if errs else None,
        max(lowp_errs) if lowp_errs else None,
        "; ".join(failures),
    )


def _passes_on_device(a: torch.Tensor, r: torch.Tensor, lo: torch.Tensor) -> bool:
    """The shared rule's arithmetic, on the tensors' device with its own helpers (the shared assert copies
    to the host in fp64, seconds per published-size output). Only a clear pass is decided here: anything
    with NaN or infinities, or over the bound, goes to ``assert_attention_close`` for the verdict."""
    from attn_reference.testing.tolerance import attention_error, rounding_atol

    if not torch.isfinite(r).all() or not torch.isfinite(a).all():
        return False
    bound = 2.0 * attention_error(lo, r) + rounding_atol(r, lo.dtype)
    return attention_error(a, r) <= bound


def _mla_tolerances() -> dict[str, tuple[float, float, float]]:
    """(abs, rel, cosine) per output name: FlashMLA's ``out`` rule, and its ``lse`` rule, which
    ``assert_mla_lse_close`` also applies to ``max_logits``."""
    from attn_reference.testing import mla

    lse = (mla.LSE_ABS_TOL, mla.LSE_REL_TOL, mla.LSE_COS_DIFF_TOL)
    return {"out": (mla.OUT_ABS_TOL, mla.OUT_REL_TOL, mla.OUT_COS_DIFF_TOL), "lse": lse, "max_logits": lse}


def compare_mla(actual, reference, names=("out",)) -> CheckResult:
    """FlashMLA's rule (abs or rel per element, and cosine similarity) against the high-precision reference,
    output by output: ``out`` under its tolerances, ``lse`` and ``max_logits`` under the lse ones.

    The reference is not cast to the actual dtype: an output in another dtype than FlashMLA returns (q's
    dtype for ``out``, fp32 for the rest) fails. The op conventions let an implementation return ``out``
    alone, or fewer outputs than the reference: the missing trailing ones are named in ``detail`` as not
    checked; more outputs than the reference has, or a non-tensor, fail.
    """
    from attn_reference.testing.mla import mla_mismatch

    actual, reference = _as_tuple(actual), _as_tuple(reference)
    names = tuple(names) + tuple(f"out{i}" for i in range(len(names), len(reference)))
    if not actual or len(actual) > len(reference):
        expected = ", ".join(names[: len(reference)])
        return CheckResult(
            "fail", detail=f"expected at most {len(reference)} outputs ({expected}), got {len(actual)}"
        )
    tolerances = _mla_tolerances()
    errs, failures = [], []
    for name, a, r in zip(names, actual, reference, strict=False):
        if not isinstance(a, torch.Tensor):
            failures.append(f"{name}: not a tensor ({type(a).__name__})")
            continue
        if tuple(a.shape) == tuple(r.shape):
            errs.append(_max_err(a, r))
        why = mla_mismatch(a.detach(), r, *tolerances.get(name, tolerances["out"]))
        if why is not None:
            failures.append(f"{name}: {why}"[:240])
    missing = names[len(actual) : len(reference)]
    if failures:
        detail = "; ".join(failures)
    else:
        detail = f"{', '.join(missing)} not returned: not checked" if missing else ""
    return CheckResult("fail" if failures else "pass", max(errs) if errs else None, None, detail)


# --- references -------------------------------------------------------------------------------------


def _chunks(q: torch.Tensor, k: torch.Tensor):
    """(batch index, q-head slice, kv-head slice) chunks of at most CHUNK_SCORES score elements."""
    b, s_q, h_q, _ = q.shape
    s_k, h_k = k.shape[1], k.shape[2]
    group = h_q // h_k
    per_kv_head = group * s_q * s_k
    kv_heads = max(1, min(h_k, CHUNK_SCORES // max(per_kv_head, 1)))
    for bi in range(b):
        for h0 in range(0, h_k, kv_heads):
            h1 = min(h_k, h0 + kv_heads)
            yield bi, slice(h0 * group, h1 * group), slice(h0, h1)


def attention(q, k, v, *, causal: bool, softmax_scale: float | None, lowp: bool, dout=None):
    """attn-reference's naive attention (or its gradients when ``dout`` is given), chunked.

    ``lowp``: in the inputs' own dtype (the same-precision baseline); otherwise in high precision.
    Returns out, or (dq, dk, dv) with ``dout``.
    """
    from attn_reference import attention_naive

    q, k, v = (t.detach() for t in (q, k, v))
    if not lowp:
        q, k, v = up(q), up(k), up(v)
        dout = None if dout is None else up(dout)
    accum = None if lowp else q.dtype
    kwargs = dict(softmax_scale=softmax_scale, causal=causal, accum_dtype=accum)
    if dout is None:
        out = torch.empty(*q.shape[:3], v.shape[-1], dtype=q.dtype, device=q.device)
        with torch.no_grad():
            for bi, hq, hk in _chunks(q, k):
                out[bi : bi + 1, :, hq] = attention_naive(
                    q[bi : bi + 1, :, hq], k[bi : bi + 1, :, hk], v[bi : bi + 1, :, hk], **kwargs
                )
        return out
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    for bi, hq, hk in _chunks(q, k):
        qc, kc, vc = (
            t[bi : bi + 1, :, h].clone().requires_grad_(True) for t, h in ((q, hq), (k, hk), (v, hk))
        )
        with torch.enable_grad():
            out = attention_naive(qc, kc, vc, **kwargs)
            g = torch.autograd.grad(out, (qc, kc, vc), dout[bi : bi + 1, :, hq])
        dq[bi : bi + 1, :, hq], dk[bi : bi + 1, :, hk], dv[bi : bi + 1, :, hk] = g
    return dq, dk, dv


def kvcache(q, k_cache, v_cache, cache_seqlens, *, softmax_scale: float | None, lowp: bool):
    """Decoding reference: full caches go through the chunked naive path, partial ones through
    ``attn_reference.flash_attn_with_kvcache`` (which has no same-precision mode, so lowp equals high)."""
    full = cache_seqlens is None or bool((cache_seqlens == k_cache.shape[1]).all())
    if full:
        return attention(q, k_cache, v_cache, causal=False, softmax_scale=softmax_scale, lowp=lowp)
    import attn_reference

    return attn_reference.flash_attn_with_kvcache(
        up(q), up(k_cache), up(v_cache), cache_seqlens=cache_seqlens, softmax_scale=softmax_scale
    ).to(q.dtype if lowp else high_dtype(q))


def mla_decode(q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale, causal):
    """attn-reference's FlashMLA-signature oracle, accumulating in high precision: (out, lse), in the dtypes
    FlashMLA returns (q's, fp32)."""
    from attn_reference import mla

    return mla.flash_mla_with_kvcache(
        q, k_cache, block_table, cache_seqlens, head_dim_v, None, None,
        softmax_scale=softmax_scale, causal=causal, accum_dtype=high_dtype(q),
    )  # fmt: skip


def mla_sparse(q, kv, indices, sm_scale: float, d_v: int, *, chunk_rows: int | None = None):
    """attn-reference's ``flash_mla_sparse_fwd`` (out, max_logits, lse), in chunks of query rows (each row
    gathers its own top-k tokens, so the gathered tensor is s_q * topk * d without chunking)."""
    from attn_reference import mla

    s_q, _, d = q.shape
    topk = indices.shape[-1]
    rows = chunk_rows or max(1, CHUNK_SCORES // max(1, topk * d))
    parts = [
        mla.flash_mla_sparse_fwd(
            q[r0 : r0 + rows], kv, indices[r0 : r0 + rows], sm_scale, d_v, accum_dtype=high_dtype(q)
        )
        for r0 in range(0, s_q, rows)
    ]
    return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))

"""The tolerance rule every backend is held to (flash-attn's).

A kernel in fp16/bf16 cannot match an exact result; what it can do is be no worse than the obvious PyTorch
computation in the same precision. So for each output::

    max |actual - reference| <= factor * max |lowp_reference - reference| + atol

where ``reference`` is computed in float64 (or float32 on a GPU) from the same inputs, ``lowp_reference``
is the materialised-softmax computation in the inputs' own dtype, ``factor`` is 2 and ``atol`` a few
rounding steps of the dtype at the output's largest magnitude (:func:`rounding_atol`). NaN where the
reference is finite fails, and infinite entries (the lse of rows that see no key) must sit at the same
positions with the same sign.
"""

from __future__ import annotations

import torch


def rounding_atol(reference: torch.Tensor, dtype: torch.dtype) -> float:
    """Rounding steps (ulps) of ``dtype`` at the reference's largest finite magnitude.

    One ulp for 16-bit dtypes: flash-attn's ``2 * (ref + 0.3 - 0.3 - ref)`` round trip, which is one ulp
    on large tensors but can be 0 on a handful of values. Four for float32: there the error is the dot
    products' summation order (scores of hundreds of terms), which differs between any two correct
    kernels, so twice one ordering's error is not a bound for another's."""
    finite = reference[torch.isfinite(reference)]
    if finite.numel() == 0:
        return 0.0
    top = finite.abs().max().to(dtype)
    ulp = (torch.nextafter(top, torch.full_like(top, float("inf"))) - top).item()
    return (1.0 if dtype.itemsize <= 2 else 4.0) * ulp


def attention_error(actual: torch.Tensor, reference: torch.Tensor) -> float:
    """max |actual - reference| over the reference's finite entries, in float64 (NaN in actual: inf)."""
    finite = torch.isfinite(reference)
    a = actual.detach().to(torch.float64)[finite]
    r = reference.detach().to(torch.float64)[finite]
    if a.numel() == 0:
        return 0.0
    diff = (a - r).abs()
    return float("inf") if torch.isnan(diff).any() else diff.max().item()


def assert_attention_close(
    actual: torch.Tensor,
    reference: torch.Tensor,
    lowp_reference: torch.Tensor,
    *,
    name: str = "out",
    factor: float = 2.0,
    atol: float | None = None,
) -> None:
    """Fail unless ``actual`` is within ``factor`` times the same-precision error of the reference, + atol."""
    if actual.shape != reference.shape:
        raise AssertionError(
            f"{name}: shape {tuple(actual.shape)} != reference shape {tuple(reference.shape)}"
        )
    act = actual.detach().to(torch.float64).cpu()
    ref = reference.detach().to(torch.float64).cpu()
    low = lowp_reference.detach().to(torch.float64).cpu()
    nan = torch.isnan(act) & ~torch.isnan(ref)
    if nan.any():
        idx = tuple(torch.nonzero(nan)[0].tolist())
        raise AssertionError(
            f"{name}: {int(nan.sum())} NaN entries where the reference is finite (first at {idx}): "
            "an out-of-bounds read, an uninitialised output, or 0/0"
        )
    inf_ref, inf_act = torch.isinf(ref), torch.isinf(act)
    mismatch = (inf_ref != inf_act) | (inf_ref & (torch.sign(ref) != torch.sign(act)))
    if mismatch.any():
        idx = tuple(torch.nonzero(mismatch)[0].tolist())
        raise AssertionError(
            f"{name}: infinite entries differ from the reference at {int(mismatch.sum())} positions "
            f"(first at {idx}: got {act[idx].item()}, expected {ref[idx].item()})"
        )
    if atol is None:
        atol = rounding_atol(ref, lowp_reference.dtype)
    err = attention_error(act, ref)
    base = attention_error(low, ref)
    bound = factor * base + atol
    if not err <= bound:
        worst = (act - ref).nan_to_num(nan=float("inf")).masked_fill(~torch.isfinite(ref), 0).abs()
        idx = tuple(torch.nonzero(worst == worst.max())[0].tolist())
        raise AssertionError(
            f"{name}: max error {err:.3g} vs the reference exceeds {factor:g} x {base:.3g} (same-precision "
            f"PyTorch error) + {atol:.3g}; worst at {idx}: got {act[idx].item():.6g}, expected {ref[idx].item():.6g}"
        )


def reference_dtype(device) -> torch.dtype:
    """float64 on the CPU; float32 on GPUs, where float64 is slow and float32 is already far more exact."""
    return torch.float64 if torch.device(device).type == "cpu" else torch.float32


#: The results :func:`attention_references` gives, in order.
RESULT_NAMES = ("out", "lse", "dq", "dk", "dv")


def attention_references(q, k, v, dout=None, *, cu_seqlens=None, **kwargs) -> tuple[tuple, tuple]:
    """What the rule compares a kernel's results with: ``(reference, lowp_reference)``, each ``(out, lse)``,
    or with ``dout`` (the output's gradient) ``(out, lse, dq, dk, dv)``.

    ``reference`` accumulates in :func:`reference_dtype` of q's device, ``lowp_reference`` in the inputs'
    own dtype. q, k, v are ``(batch, seqlen, heads, headdim)`` (fewer KV heads for GQA), or with
    ``cu_seqlens=(cu_seqlens_q, cu_seqlens_k)`` packed ``(total, heads, headdim)`` (lse then
    ``(heads, total_q)``), computed sequence by sequence; ``kwargs`` go to
    :func:`attn_reference.attention_naive` (``causal``, ``window_size``, ``softcap``, ``softmax_scale``).
    """
    if cu_seqlens is not None:
        return _packed_references(q, k, v, dout, *cu_seqlens, kwargs)
    from attn_reference.naive import attention_naive

    results = []
    for accum in (reference_dtype(q.device), None):
        dt = accum or q.dtype
        ins = [t.detach().to(dt).requires_grad_(dout is not None) for t in (q, k, v)]
        out, lse = attention_naive(*ins, accum_dtype=accum, **{**kwargs, "return_lse": True})
        grads = torch.autograd.grad(out, ins, dout.to(dt)) if dout is not None else ()
        results.append((out.detach(), lse.detach(), *grads))
    return results[0], results[1]


def _packed_references(q, k, v, dout, cu_q, cu_k, kwargs) -> tuple[tuple, tuple]:
    """:func:`attention_references` of each packed sequence, its results put end to end again."""
    per_seq = []
    for q0, q1, k0, k1 in zip(cu_q.tolist(), cu_q.tolist()[1:], cu_k.tolist(), cu_k.tolist()[1:]):
        seq_dout = None if dout is None else dout[q0:q1][None]
        per_seq.append(
            attention_references(q[q0:q1][None], k[k0:k1][None], v[k0:k1][None], seq_dout, **kwargs)
        )
    packed = []
    for which in (0, 1):  # the reference, then the same-precision one
        results = [seq[which] for seq in per_seq]
        # out, dq, dk, dv: (1, s, h, d) end to end along s; lse: (1, h, s) along its last dim
        packed.append(
            tuple(
                torch.cat([r[i][0] for r in results], dim=1 if i == 1 else 0) for i in range(len(results[0]))
            )
        )
    return packed[0], packed[1]


def assert_matches_reference(
    got: dict, q, k, v, dout=None, *, cu_seqlens=None, label: str = "", **kwargs
) -> None:
    """Each of ``got``'s entries (by :data:`RESULT_NAMES`: ``out``, ``lse``, ``dq``, ``dk``, ``dv``; None
    skips one) within the rule of :func:`attention_references` ``(q, k, v, dout, cu_seqlens, **kwargs)``."""
    unknown = set(got) - set(RESULT_NAMES)
    if unknown:
        raise ValueError(f"got: unknown result names {sorted(unknown)}; expected some of {RESULT_NAMES}")
    needs_grads = any(got.get(name) is not None for name in RESULT_NAMES[2:])
    if needs_grads and dout is None:
        raise ValueError("dout: the gradients are checked against the reference's for dout, and it is None")
    ref, low = attention_references(q, k, v, dout if needs_grads else None, cu_seqlens=cu_seqlens, **kwargs)
    where = f" ({label})" if label else ""
    for name, r, lw in zip(RESULT_NAMES, ref, low):
        if got.get(name) is not None:
            assert_attention_close(got[name], r, lw, name=name + where)

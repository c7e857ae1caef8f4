"""Fixtures shared by attn-triton's tests: the oracle under the project's tolerance rule, the knobs, and a
record of what the kernels were launched with."""

from __future__ import annotations

import importlib

import pytest
import torch

from attn_reference.testing import tolerance
from attn_reference.testing.tolerance import RESULT_NAMES, assert_attention_close, attention_references
from attn_triton import _runtime


def _packed_references(q, k, v, dout, cu_q, cu_k, kw):
    """attention_references of packed (total, heads, d) tensors, sequence by sequence, packed again (lse
    (heads, total_q))."""
    per_seq = []
    bounds = list(zip(cu_q.tolist(), cu_q.tolist()[1:], cu_k.tolist(), cu_k.tolist()[1:]))
    for q0, q1, k0, k1 in bounds:
        sub = (q[q0:q1][None], k[k0:k1][None], v[k0:k1][None])
        per_seq.append(attention_references(*sub, None if dout is None else dout[q0:q1][None], **kw))
    packed = []
    for which in (0, 1):
        parts = [r[which] for r in per_seq]
        # out, dq, dk, dv: (1, s, h, d) -> (s, h, d); lse: (1, h, s) -> (h, s)
        packed.append(
            [torch.cat([p[i][0] for p in parts], dim=1 if i == 1 else 0) for i in range(len(parts[0]))]
        )
    return packed


@pytest.fixture
def assert_matches_reference():
    """``check(got, q, k, v, dout=None, cu_seqlens=None, **attention_naive_kwargs)``: each of ``got``'s
    entries (``out``, ``lse``, ``dq``, ``dk``, ``dv``; None to skip one) against the reference under the
    tolerance rule of :mod:`attn_reference.testing.tolerance`. ``cu_seqlens=(cu_q, cu_k)``: packed inputs."""

    def check(got: dict, q, k, v, dout=None, cu_seqlens=None, **kw):
        if cu_seqlens is None:
            tolerance.assert_matches_reference(got, q, k, v, dout, **kw)
            return
        assert set(got) <= set(RESULT_NAMES), sorted(got)
        ref, low = _packed_references(q, k, v, dout, *cu_seqlens, kw)
        for i, name in enumerate(RESULT_NAMES[: len(ref)]):
            if got.get(name) is not None:
                assert_attention_close(got[name], ref[i], low[i], name=name)

    return check


@pytest.fixture
def profile():
    """Switch attn_triton's performance knobs for one test, restoring them afterwards."""
    old = _runtime.knobs()
    yield _runtime.set_profile
    _runtime.set_profile(old)


class _Recorded:
    """A Triton kernel whose ``kernel[grid](...)`` launches go through, recording the grid and keywords."""

    def __init__(self, kernel, seen: list):
        self._kernel, self._seen = kernel, seen

    def __getitem__(self, grid):
        launch = self._kernel[grid]

        def call(*args, **kwargs):
            self._seen.append({"grid": grid, **kwargs})
            return launch(*args, **kwargs)

        return call


@pytest.fixture
def launches(monkeypatch):
    """``record("flash_fwd", "_fwd_kernel")`` -> a list that gets one dict (``grid`` and the keyword
    arguments, the compile-time constants among them) per launch of that kernel during the test.

    Only for fixed-config launches (the interpreter, or a forced config): the autotuner wraps the kernel
    once, so its launches bypass the module attribute."""

    def record(module: str, kernel: str) -> list[dict]:
        mod = importlib.import_module(f"attn_triton.{module}")
        seen: list[dict] = []
        monkeypatch.setattr(mod, kernel, _Recorded(getattr(mod, kernel), seen))
        return seen

    return record

"""The conformance suite: one set of tests every backend's flash-attn API must pass.

A backend package points the suite at its functions and says what it supports::

    from attn_reference.testing.conformance import AttentionConformance, Backend, Features

    class TestMyBackend(AttentionConformance):
        backend = Backend(
            name="attn-triton",
            flash_attn_func=attn_triton.flash_attn_func,
            flash_attn_varlen_func=attn_triton.flash_attn_varlen_func,
            flash_attn_with_kvcache=attn_triton.flash_attn_with_kvcache,
            features=Features(dtypes=(torch.float16, torch.bfloat16), head_dims=(64, 128), causal=True, ...),
        )
        device = "cuda"
        dtypes = (torch.float16, torch.bfloat16)  # which of the declared dtypes this run tests
        size = "full"                               # "tiny" for CPU/interpreter runs
        pytestmark = pytest.mark.sm90

Every declared feature is checked against the reference with the shared tolerance rule on odd sizes; every
undeclared one must raise (``NotImplementedError``, preferably :class:`UnsupportedFeatureError`, or a
``ValueError``) rather than compute something else. Inputs put NaN wherever a correct kernel must not read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from ..errors import AttentionArgumentError
from .inputs import attention_inputs, kvcache_inputs, strided_view, varlen_inputs
from .tolerance import assert_attention_close, attention_references

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
HEAD_DIMS = (32, 64, 96, 128, 192, 256)
_REFUSED = (NotImplementedError, ValueError)


@dataclass(frozen=True)
class Features:
    """What a backend claims. ``head_dims=None`` means any head dim."""

    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
    head_dims: tuple[int, ...] | None = (64, 128)
    causal: bool = False
    window: bool = False
    softcap: bool = False
    gqa: bool = False
    lse: bool = False
    backward: bool = False
    deterministic: bool = False
    varlen: bool = False
    kvcache: bool = False
    paged_kvcache: bool = False
    page_size_multiple: int = 16  # paged caches: page sizes must be a multiple of this


@dataclass(frozen=True)
class Backend:
    name: str
    flash_attn_func: Callable
    features: Features
    flash_attn_varlen_func: Callable | None = None
    flash_attn_with_kvcache: Callable | None = None
    devices: tuple[str, ...] = ("cuda",)  # device types the backend accepts; others must be refused


@dataclass(frozen=True)
class Case:
    """One test configuration; seqlens and heads are read from the size profile by key."""

    seqlens: str
    heads: str = "mha"
    causal: bool = False
    window: tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    softmax_scale: float | None = None

    def kwargs(self, return_lse: bool) -> dict:
        """This case's keyword arguments of every flash-attn entry point."""
        return dict(
            softmax_scale=self.softmax_scale,
            causal=self.causal,
            window_size=self.window,
            softcap=self.softcap,
            return_lse=return_lse,
        )

    def needs(self) -> set[str]:
        needs = set()
        if self.causal:
            needs.add("causal")
        if self.window != (-1, -1):
            needs.add("window")
        if self.softcap:
            needs.add("softcap")
        if self.heads != "mha":
            needs.add("gqa")
        return needs


# Sizes per profile: (seqlen_q, seqlen_k) pairs and (heads_q, heads_k); odd on purpose.
PROFILES = {
    "tiny": {
        "batch": 2,
        "seqlens": {"q<k": (45, 203), "q>k": (113, 45), "square": (59, 59), "one": (1, 1), "decode": (1, 77)},
        "heads": {"mha": (2, 2), "gqa": (4, 2), "mqa": (3, 1)},
        # a sequence with no queries (13 keys), and one with 9 queries and no key (out 0, lse +inf)
        "varlen": ([17, 0, 45, 1, 9], [45, 13, 17, 1, 0]),
        "cache_seqlens": [45, 0, 77, 1],
    },
    "full": {
        "batch": 3,
        "seqlens": {
            "q<k": (113, 203),
            "q>k": (203, 113),
            "square": (1024, 1024),
            "one": (1, 1),
            "decode": (1, 1027),
        },
        "heads": {"mha": (4, 4), "gqa": (8, 2), "mqa": (6, 1)},
        "varlen": ([113, 0, 203, 1, 511, 37], [203, 7, 113, 1, 1024, 0]),
        "cache_seqlens": [1023, 0, 4099, 1, 515],
    },
}

CASES = {
    "q<k": Case("q<k"),
    "q>k": Case("q>k"),
    "square": Case("square"),
    "one": Case("one"),
    "decode": Case("decode"),
    "scale": Case("q<k", softmax_scale=0.3),
    "causal_q<k": Case("q<k", causal=True),
    "causal_q>k": Case("q>k", causal=True),  # the first seqlen_q - seqlen_k rows see no key
    "causal_square": Case("square", causal=True),
    "causal_decode": Case("decode", causal=True),
    "window": Case("q<k", window=(17, 9)),
    "window_left": Case("q>k", window=(23, -1)),
    "window_causal": Case("square", causal=True, window=(31, -1)),
    "gqa": Case("q<k", heads="gqa"),
    "mqa": Case("q>k", heads="mqa"),
    "softcap": Case("q<k", softcap=2.0),
    "softcap_scale": Case("square", softcap=4.0, softmax_scale=0.4),
    "everything": Case("q>k", heads="gqa", causal=True, window=(19, -1), softcap=3.0),
}
BACKWARD_CASES = (
    "q<k",
    "q>k",
    "square",
    "causal_q<k",
    "causal_q>k",
    "window",
    "gqa",
    "mqa",
    "softcap",
    "everything",
)
VARLEN_CASES = {
    "varlen": Case("varlen"),
    "varlen_causal": Case("varlen", causal=True),
    "varlen_gqa_window_softcap": Case("varlen", heads="gqa", window=(11, 5), softcap=2.5),
}
KVCACHE_CASES = {
    # (seqlen_q, page size: None = contiguous cache, "multiple" = the declared multiple, or a number)
    "contiguous": (Case("cache"), 1, None),
    "contiguous_causal": (Case("cache", causal=True), 3, None),
    "paged": (Case("cache"), 1, "multiple"),
    "paged_64_gqa": (Case("cache", heads="gqa"), 1, 64),
    "paged_causal_mqa": (Case("cache", heads="mqa", causal=True), 4, "multiple"),
    "paged_window_softcap": (Case("cache", window=(29, -1), softcap=2.0), 2, 64),
}


def _tol_check(actual, ref, low, name):
    assert_attention_close(actual, ref, low, name=name)


class AttentionConformance:
    """Base class of the conformance tests. Subclass it as ``Test...`` and set the class attributes."""

    backend: Backend
    device: str = "cuda"
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
    size: str = "full"

    # -- helpers -------------------------------------------------------------------------------------------
    @property
    def features(self) -> Features:
        return self.backend.features

    def _profile(self) -> dict:
        return PROFILES[self.size]

    def _head_dim(self) -> int:
        dims = self.features.head_dims
        if dims is None:
            return 64
        return 64 if 64 in dims else min(dims)

    def _dtype(self, name: str) -> tuple[torch.dtype, bool]:
        """(dtype, declared); skips dtypes this run does not test but the backend declares."""
        dtype = DTYPES[name]
        declared = dtype in self.features.dtypes
        if declared and dtype not in self.dtypes:
            pytest.skip(f"{name} is declared but not tested on this run (dtypes={self.dtypes})")
        return dtype, declared

    def _undeclared(self, needs: set[str]) -> list[str]:
        return sorted(f for f in needs if not getattr(self.features, f))

    def _refuses(self, call: Callable, what: str) -> None:
        with pytest.raises(_REFUSED) as info:
            call()
        assert str(info.value).strip(), f"{self.backend.name} refused {what} with an empty message"

    def _references(self, q, k, v, case: Case, backward_of=None):
        """(reference, same-precision reference) outputs and lses; with ``backward_of`` a dout, grads too."""
        both = attention_references(q, k, v, backward_of, **case.kwargs(return_lse=True))
        return [(out, lse, tuple(grads) if grads else None) for out, lse, *grads in both]

    def _call(self, q, k, v, case: Case, return_lse: bool):
        return self.backend.flash_attn_func(q, k, v, **case.kwargs(return_lse))

    def _inputs(self, case: Case, dtype, head_dim=None, requires_grad=False, seed=0, nan_padding=0):
        p = self._profile()
        sq, sk = p["seqlens"][case.seqlens]
        hq, hk = p["heads"][case.heads]
        return attention_inputs(
            p["batch"],
            sq,
            sk,
            hq,
            hk,
            head_dim or self._head_dim(),
            dtype=dtype,
            device=self.device,
            seed=seed,
            requires_grad=requires_grad,
            nan_padding=nan_padding,
        )

    def _check_forward(self, case: Case, dtype, head_dim=None, nan_padding=0, seed=0):
        q, k, v = self._inputs(case, dtype, head_dim, seed=seed, nan_padding=nan_padding)
        self._check_forward_on(q, k, v, case)

    def _check_forward_on(self, q, k, v, case: Case, label: str = ""):
        (ref, ref_lse, _), (low, low_lse, _) = self._references(q, k, v, case)
        where = f" ({label})" if label else ""
        if self.features.lse:
            out, lse = self._call(q, k, v, case, return_lse=True)
            _tol_check(out, ref, low, "out" + where)
            _tol_check(lse, ref_lse, low_lse, "lse" + where)
        else:
            _tol_check(self._call(q, k, v, case, return_lse=False), ref, low, "out" + where)

    # -- forward -------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("case", list(CASES))
    @pytest.mark.parametrize("dtype", list(DTYPES))
    def test_forward(self, case, dtype):
        dtype, declared = self._dtype(dtype)
        c = CASES[case]
        missing = self._undeclared(c.needs())
        if not declared or missing:
            q, k, v = self._inputs(c, dtype)
            self._refuses(lambda: self._call(q, k, v, c, return_lse=False), f"{case} in {dtype} ({missing})")
            return
        self._check_forward(c, dtype)

    @pytest.mark.parametrize("head_dim", HEAD_DIMS)
    def test_head_dim(self, head_dim):
        dtype = self.dtypes[0]
        declared = self.features.head_dims is None or head_dim in self.features.head_dims
        case = CASES["causal_q<k"] if self.features.causal else CASES["q<k"]
        if not declared:
            q, k, v = self._inputs(case, dtype, head_dim)
            self._refuses(lambda: self._call(q, k, v, case, return_lse=False), f"head dim {head_dim}")
            return
        self._check_forward(case, dtype, head_dim)
        if self.features.backward:
            self._check_backward(case, dtype, head_dim)

    def test_unsupported_head_dim_raises(self):
        if self.features.head_dims is None:
            pytest.skip("the backend declares every head dim")
        dim = next(d for d in (512, 80, 40, 24) if d not in self.features.head_dims)
        q, k, v = self._inputs(CASES["q<k"], self.dtypes[0], dim)
        self._refuses(lambda: self._call(q, k, v, CASES["q<k"], return_lse=False), f"head dim {dim}")

    def test_float64_raises_unless_declared(self):
        if torch.float64 in self.features.dtypes:
            pytest.skip("float64 declared")
        q, k, v = self._inputs(CASES["q<k"], torch.float64)
        self._refuses(lambda: self._call(q, k, v, CASES["q<k"], return_lse=False), "float64")

    def test_lse(self):
        case = CASES["causal_q>k"] if self.features.causal else CASES["q>k"]
        q, k, v = self._inputs(case, self.dtypes[0])
        if not self.features.lse:
            self._refuses(lambda: self._call(q, k, v, case, return_lse=True), "return_lse=True")
            return
        out, lse = self._call(q, k, v, case, return_lse=True)
        b, sq, hq, _ = q.shape
        assert out.shape == (b, sq, hq, v.shape[-1]), f"out has shape {tuple(out.shape)}"
        assert lse.shape == (b, hq, sq), (
            f"lse must be (batch, heads, seqlen_q) = {(b, hq, sq)}, got {tuple(lse.shape)}"
        )
        assert lse.dtype == torch.float32, f"lse must be float32, got {lse.dtype}"

    @pytest.mark.parametrize("direction", ["rising", "falling"])
    @pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
    @pytest.mark.parametrize("scale", [None, 1.0], ids=["default_scale", "scale_1"])
    def test_rising_row_maxima(self, direction, causal, scale):
        """Keys scaled by 1 + 3 j / seqlen_k ("rising") or the reverse ("falling"): for a kernel that walks
        the keys left to right (or right to left, as FA3-style kernels do), every row's max keeps rising
        from key block to key block, a little with the default scale and by a lot with scale 1. A kernel
        that rescales its output lazily (keeping a stale max while the new one stays within a slack) must
        still match. Every tested dtype, at head dims 64, 128 and 256 where declared."""
        if causal and not self.features.causal:
            pytest.skip("causal not declared (test_forward checks the refusal)")
        case = Case("square", causal=causal, softmax_scale=scale)
        declared = self.features.head_dims
        dims = [d for d in (64, 128, 256) if declared is None or d in declared] or [self._head_dim()]
        for dtype in (d for d in self.dtypes if d in self.features.dtypes):
            for head_dim in dims:
                q, k, v = self._inputs(case, dtype, head_dim, seed=3)
                ramp = 1 + 3 * torch.arange(k.shape[1], device=k.device, dtype=torch.float32) / k.shape[1]
                if direction == "falling":
                    ramp = ramp.flip(0)
                k = (k.float() * ramp[None, :, None, None]).to(dtype)
                self._check_forward_on(q, k, v, case, label=f"{dtype}, head dim {head_dim}")

    def test_strided_inputs_with_nan_padding(self):
        """Views into longer NaN-filled buffers: a kernel that reads past seqlen produces NaN."""
        case = CASES["causal_q<k"] if self.features.causal else CASES["q<k"]
        self._check_forward(case, self.dtypes[0], nan_padding=64)

    # -- backward ------------------------------------------------------------------------------------------
    def _check_backward(self, case: Case, dtype, head_dim=None):
        q, k, v = self._inputs(case, dtype, head_dim, requires_grad=True, seed=1)
        out = self._call(q, k, v, case, return_lse=False)
        dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out)
        (ref, _, ref_g), (low, _, low_g) = self._references(q, k, v, case, backward_of=dout)
        _tol_check(out, ref, low, "out")
        grads = torch.autograd.grad(out, (q, k, v), dout)
        for name, g, r, lw in zip(("dq", "dk", "dv"), grads, ref_g, low_g):
            _tol_check(g, r, lw, name)

    @pytest.mark.parametrize("case", BACKWARD_CASES)
    @pytest.mark.parametrize("dtype", list(DTYPES))
    def test_backward(self, case, dtype):
        dtype, declared = self._dtype(dtype)
        c = CASES[case]
        if not declared or self._undeclared(c.needs()):
            pytest.skip("forward refuses this configuration (test_forward checks that)")
        if not self.features.backward:
            q, k, v = self._inputs(c, dtype, requires_grad=True)

            def run():
                out = self._call(q, k, v, c, return_lse=False)
                out.sum().backward()

            with pytest.raises((NotImplementedError, ValueError, RuntimeError)):
                run()
            return
        self._check_backward(c, dtype)

    def test_deterministic_backward(self):
        if not (self.features.backward and self.features.deterministic):
            pytest.skip("deterministic backward not declared")
        case = CASES["causal_q<k"] if self.features.causal else CASES["q<k"]
        grads = []
        for _ in range(2):
            q, k, v = self._inputs(case, self.dtypes[0], requires_grad=True, seed=3)
            out = self.backend.flash_attn_func(q, k, v, causal=case.causal, deterministic=True)
            dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(out)
            grads.append(torch.autograd.grad(out, (q, k, v), dout))
        for name, a, b in zip(("dq", "dk", "dv"), *grads):
            assert torch.equal(a, b), f"{name} differs between two deterministic runs"
        # Equal runs prove nothing on their own (a sequential interpreter always repeats itself): the
        # deterministic gradients must also be the reference's.
        (_, _, ref_g), (_, _, low_g) = self._references(q, k, v, case, backward_of=dout)
        for name, g, r, lw in zip(("dq", "dk", "dv"), grads[0], ref_g, low_g):
            _tol_check(g, r, lw, f"{name} (deterministic)")

    # -- varlen --------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("case", list(VARLEN_CASES))
    @pytest.mark.parametrize("dtype", list(DTYPES))
    def test_varlen(self, case, dtype):
        dtype, declared = self._dtype(dtype)
        c = VARLEN_CASES[case]
        p = self._profile()
        lens_q, lens_k = p["varlen"]
        hq, hk = p["heads"][c.heads]
        grad = self.features.backward
        x = varlen_inputs(
            lens_q,
            lens_k,
            hq,
            hk,
            self._head_dim(),
            dtype=dtype,
            device=self.device,
            seed=4,
            requires_grad=grad and declared,
        )
        fn = self.backend.flash_attn_varlen_func
        missing = self._undeclared(c.needs() | {"varlen"})
        call = lambda lse: fn(*x.args(), **c.kwargs(lse))
        if fn is None:
            assert not self.features.varlen, "varlen declared but no flash_attn_varlen_func given"
            pytest.skip("no flash_attn_varlen_func")
        if not declared or missing:
            self._refuses(lambda: call(False), f"{case} in {dtype} ({missing})")
            return
        res = call(self.features.lse)
        out, lse = res if self.features.lse else (res, None)
        dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).to(out) if grad else None
        grads = torch.autograd.grad(out, (x.q, x.k, x.v), dout) if grad else None
        cu = (x.cu_seqlens_q, x.cu_seqlens_k)
        ref, low = attention_references(x.q, x.k, x.v, dout, cu_seqlens=cu, **c.kwargs(return_lse=True))
        _tol_check(out, ref[0], low[0], "out")
        if lse is not None:
            _tol_check(lse, ref[1], low[1], "lse")
        if grad:
            for name, g, r, lw in zip(("dq", "dk", "dv"), grads, ref[2:], low[2:]):
                _tol_check(g, r, lw, name)

    # -- kvcache -------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("case", list(KVCACHE_CASES))
    @pytest.mark.parametrize("dtype", list(DTYPES))
    def test_kvcache(self, case, dtype):
        dtype, declared = self._dtype(dtype)
        c, seqlen_q, page = KVCACHE_CASES[case]
        fn = self.backend.flash_attn_with_kvcache
        if fn is None:
            assert not self.features.kvcache, "kvcache declared but no flash_attn_with_kvcache given"
            pytest.skip("no flash_attn_with_kvcache")
        p = self._profile()
        hq, hk = p["heads"][c.heads]
        if page == "multiple":
            page = max(self.features.page_size_multiple, 16)
        x = kvcache_inputs(
            seqlen_q,
            p["cache_seqlens"],
            hq,
            hk,
            self._head_dim(),
            page_size=page,
            capacity=max(p["cache_seqlens"]) + 5,
            dtype=dtype,
            device=self.device,
            seed=6,
        )
        needs = c.needs() | {"kvcache"} | ({"paged_kvcache"} if page else set())
        missing = self._undeclared(needs)
        call = lambda lse: fn(
            x.q,
            x.k_cache,
            x.v_cache,
            cache_seqlens=x.cache_seqlens,
            block_table=x.block_table,
            **c.kwargs(lse),
        )
        if not declared or missing:
            self._refuses(lambda: call(False), f"{case} in {dtype} ({missing})")
            return
        res = call(self.features.lse)
        out, lse = res if self.features.lse else (res, None)
        refs = {0: [], 1: []}
        for b in range(x.q.shape[0]):
            sub = (x.q[b : b + 1], x.k[b].unsqueeze(0), x.v[b].unsqueeze(0))
            for i, (o, l, _) in enumerate(self._references(*sub, c)):
                refs[i].append((o, l))
        for i in (0, 1):
            refs[i] = (torch.cat([r[0] for r in refs[i]]), torch.cat([r[1] for r in refs[i]]))
        _tol_check(out, refs[0][0], refs[1][0], "out")
        if lse is not None:
            _tol_check(lse, refs[0][1], refs[1][1], "lse")

    def test_unaligned_page_size_raises(self):
        mult = self.features.page_size_multiple
        if not self.features.paged_kvcache or mult <= 1:
            pytest.skip("no paged cache, or any page size allowed")
        x = kvcache_inputs(
            1,
            [20, 7],
            2,
            2,
            self._head_dim(),
            page_size=mult + mult // 2,
            dtype=self.dtypes[0],
            device=self.device,
        )
        self._refuses(
            lambda: self.backend.flash_attn_with_kvcache(
                x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=x.block_table
            ),
            f"page size {mult + mult // 2}",
        )

    # -- bad input -----------------------------------------------------------------------------------------
    def test_bad_arguments_raise(self):
        """Bad input must raise a ValueError (AttentionArgumentError) that names the argument."""
        dtype = self.dtypes[0]
        d = self._head_dim()
        f = self.backend.flash_attn_func
        q, k, v = attention_inputs(2, 9, 11, 3, 2, d, dtype=dtype, device=self.device)
        with pytest.raises(ValueError, match="head"):
            f(q, k, v)  # 3 query heads over 2 KV heads
        q, k, v = attention_inputs(2, 9, 11, 2, 2, d, dtype=dtype, device=self.device)
        with pytest.raises(ValueError, match=r"\bv\b|seqlen"):
            f(q, k, v[:, :5])
        with pytest.raises(ValueError, match=r"\bq\b.*\b(rank|dims?|ndim)\b"):
            f(q[0], k[0], v[0])
        other = torch.float16 if dtype != torch.float16 else torch.bfloat16
        with pytest.raises(ValueError, match="dtype"):
            f(q, k.to(other), v)
        with pytest.raises(ValueError, match="window"):
            f(q, k, v, window_size=(-5, 2))
        if torch.device(self.device).type != "cpu":
            with pytest.raises(ValueError, match=r"device"):
                f(q, k.cpu(), v)  # q and k on different devices
            if "cpu" not in self.backend.devices:
                with pytest.raises(ValueError, match=r"device|cuda|cpu"):
                    f(q.cpu(), k.cpu(), v.cpu())
        if self.features.varlen and self.backend.flash_attn_varlen_func is not None:
            x = varlen_inputs([5, 7], [6, 8], 2, 2, d, dtype=dtype, device=self.device)
            g = self.backend.flash_attn_varlen_func
            with pytest.raises(ValueError, match="cu_seqlens_q"):
                g(x.q, x.k, x.v, x.cu_seqlens_q.long(), x.cu_seqlens_k, 7, 8)
            with pytest.raises(ValueError, match="cu_seqlens_k"):
                g(x.q, x.k, x.v, x.cu_seqlens_q, x.cu_seqlens_k.flip(0), 7, 8)
            with pytest.raises(ValueError, match=r"cu_seqlens_q.*stride"):  # read as contiguous by kernels
                g(x.q, x.k, x.v, strided_view(x.cu_seqlens_q), x.cu_seqlens_k, 7, 8)
        if self.features.paged_kvcache and self.backend.flash_attn_with_kvcache is not None:
            x = kvcache_inputs(
                1,
                [20, 7],
                2,
                2,
                d,
                page_size=16 * max(1, self.features.page_size_multiple // 16),
                dtype=dtype,
                device=self.device,
            )
            bad = x.block_table.clone()
            bad[0, 0] = x.k_cache.shape[0] + 3
            with pytest.raises(ValueError, match="block_table"):
                self.backend.flash_attn_with_kvcache(
                    x.q, x.k_cache, x.v_cache, cache_seqlens=x.cache_seqlens, block_table=bad
                )
            for name, lens, table in (
                ("cache_seqlens", strided_view(x.cache_seqlens), x.block_table),
                ("block_table", x.cache_seqlens, strided_view(x.block_table)),
            ):
                with pytest.raises(ValueError, match=rf"{name}.*stride"):
                    self.backend.flash_attn_with_kvcache(
                        x.q, x.k_cache, x.v_cache, cache_seqlens=lens, block_table=table
                    )


__all__ = ["AttentionArgumentError", "AttentionConformance", "Backend", "Case", "Features"]

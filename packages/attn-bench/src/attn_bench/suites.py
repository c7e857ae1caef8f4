"""The suites: grids of shapes, their FLOP/byte counts, inputs, how to call an op, and its reference.

A suite answers four questions for a case: which shapes (``cases``), which random inputs (``inputs``),
how to run an implementation once (``runner``: a prepared op's ``prepare`` runs there, once per row) and
what that runner must produce (``outputs`` vs ``reference``); the runner checked is the runner timed.
Grids exist for two modes: ``gpu`` (the published shapes, bf16) and ``cpu`` (tiny, fp32).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from typing import Any

import torch

from attn_bench import checks
from attn_bench import formulas as F
from attn_bench.backend import bind, first

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
ELT = {"bfloat16": 2, "float16": 2, "float32": 4}

# The published grid: batch x seqlen = 16384 tokens, heads x head_dim = 2048.
TOKENS = 16384
HIDDEN = 2048
GPU_SEQLENS = (1024, 2048, 4096, 8192, 16384)
GPU_HEAD_DIMS = (64, 128, 256)


@dataclasses.dataclass
class Case:
    """One shape of one suite; ``shape`` and the counts go into the results file."""

    suite: str
    op: str
    name: str
    shape: dict[str, Any]
    dtype: str
    flops: float
    bytes: float
    x: int  # plotted on the x axis (seqlen)
    series: str  # plots draw one line per (implementation, series)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass
class Runner:
    """What the timer calls, and the tensors whose .grad it must reset between calls."""

    fn: Callable[[], Any]
    grad_to_none: list[torch.Tensor] | None = None


def _randn(shape, dtype, device, gen, scale=1.0):
    return (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * scale).to(dtype)


def _mla_randn(shape, dtype, device, gen):
    # FlashMLA's tests draw q and the cache as randn / 10 clamped to [-1, 1]; its tolerances assume that.
    return (torch.randn(shape, generator=gen, device=device) / 10).clamp(-1, 1).to(dtype)


def _gen(device, seed):
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


class Suite:
    name: str = ""
    op: str = ""
    description: str = ""
    #: what the rows report: "time" (ms and throughput) or "memory" (peak bytes)
    measure: str = "time"
    #: time rows on a GPU also report their main kernel alone (``timing.main_kernel_ms``)
    kernel_time: bool = False

    def cases(self, mode: str, quick: bool = False) -> list[Case]:
        raise NotImplementedError

    def inputs(self, case: Case, device: str, seed: int = 0) -> dict[str, Any]:
        raise NotImplementedError

    def args(self, case: Case, inp: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The op's positional and keyword arguments, which the implementations and the reference share."""
        raise NotImplementedError

    def call(self, f, case: Case, inp: dict[str, Any], **extra):
        """``f`` (an implementation or a check) on the op's arguments, plus ``extra`` keywords."""
        args, kwargs = self.args(case, inp)
        return f(*args, **kwargs, **extra)

    def runner(self, fn, case: Case, inp: dict[str, Any]) -> Runner:
        """The row's timed callable; a prepared op's ``prepare`` runs here, so call this once per row."""
        args, kwargs = self.args(case, inp)
        return Runner(bind(fn, *args, **kwargs))

    def outputs(self, runner: Runner, case: Case, inp: dict[str, Any]):
        """Call ``runner`` once and return what is checked (a tensor or a tuple of them)."""
        return first(runner.fn())

    def reference(self, case: Case, inp: dict[str, Any], lowp: bool):
        """The expected output in high precision, or (``lowp``) in the inputs' own dtype."""
        raise NotImplementedError

    #: names of the checked outputs, for messages
    names: tuple[str, ...] = ("out",)
    #: "attention": flash-attn's rule (needs the lowp reference); "mla": FlashMLA's rules, every output
    rule: str = "attention"

    def _case(self, name, shape, dtype, flops, nbytes, x, series, *, op=None, extra=None) -> Case:
        # Only the basics mix ops within one suite; every other case runs the suite's op.
        return Case(self.name, op or self.op, name, shape, dtype, flops, nbytes, x, series, extra or {})


# --- attention ----------------------------------------------------------------------------------------


def _attention_grid(mode: str, quick: bool) -> list[dict[str, Any]]:
    grid = []
    if mode == "gpu":
        head_dims = (128,) if quick else GPU_HEAD_DIMS
        seqlens = (1024,) if quick else GPU_SEQLENS
        for d in head_dims:
            for s in seqlens:
                for causal in (False, True):
                    h = HIDDEN // d
                    grid.append(
                        dict(
                            batch=TOKENS // s,
                            seqlen_q=s,
                            seqlen_k=s,
                            heads_q=h,
                            heads_k=h,
                            head_dim=d,
                            causal=causal,
                        )
                    )
    else:
        head_dims = (32,) if quick else (32, 64)
        seqlens = (64, 128) if quick else (64, 128, 256)
        for d in head_dims:
            for s in seqlens:
                for causal in (False, True):
                    grid.append(
                        dict(batch=1, seqlen_q=s, seqlen_k=s, heads_q=2, heads_k=2, head_dim=d, causal=causal)
                    )
    return grid


def _attn_name(sh: dict[str, Any]) -> str:
    c = " causal" if sh["causal"] else ""
    return f"b{sh['batch']} s{sh['seqlen_q']} h{sh['heads_q']} d{sh['head_dim']}{c}"


def _attn_series(sh: dict[str, Any]) -> str:
    return f"d{sh['head_dim']}{' causal' if sh['causal'] else ''}"


def _attention_inputs(sh: dict[str, Any], dtype: torch.dtype, device: str, seed: int, grad: bool):
    # Drawn on the device: the published shapes are 100M elements per case, slow to draw on the host.
    g = _gen(device, seed)
    q = _randn((sh["batch"], sh["seqlen_q"], sh["heads_q"], sh["head_dim"]), dtype, device, g)
    k = _randn((sh["batch"], sh["seqlen_k"], sh["heads_k"], sh["head_dim"]), dtype, device, g)
    v = _randn((sh["batch"], sh["seqlen_k"], sh["heads_k"], sh["head_dim"]), dtype, device, g)
    return tuple(t.requires_grad_(grad) for t in (q, k, v))


def _attention_counts(sh: dict[str, Any], dtype: str) -> tuple[float, tuple[int, ...]]:
    """The forward's FLOPs, and the arguments every attention byte count takes."""
    flops = F.attention_fwd_flops(
        sh["batch"], sh["seqlen_q"], sh["seqlen_k"], sh["heads_q"], sh["head_dim"], sh["causal"]
    )
    sizes = (sh["batch"], sh["seqlen_q"], sh["seqlen_k"], sh["heads_q"], sh["heads_k"], sh["head_dim"])
    return flops, (*sizes, ELT[dtype])


class AttentionFwd(Suite):
    name = "attention-fwd"
    op = "attention_fwd"
    description = "attention forward, batch x seqlen = 16384 tokens, heads x head_dim = 2048"

    def _grid(self, mode: str, quick: bool) -> list[dict[str, Any]]:
        return _attention_grid(mode, quick)

    def cases(self, mode, quick=False):
        dtype = "bfloat16" if mode == "gpu" else "float32"
        out = []
        for sh in self._grid(mode, quick):
            flops, sizes = _attention_counts(sh, dtype)
            nbytes = F.attention_bytes(*sizes)
            out.append(self._case(_attn_name(sh), sh, dtype, flops, nbytes, sh["seqlen_k"], _attn_series(sh)))
        return out

    def inputs(self, case, device, seed=0):
        q, k, v = _attention_inputs(case.shape, DTYPES[case.dtype], device, seed, grad=False)
        return dict(q=q, k=k, v=v, softmax_scale=case.shape["head_dim"] ** -0.5)

    def args(self, case, inp):
        kwargs = dict(causal=case.shape["causal"], softmax_scale=inp["softmax_scale"])
        return (inp["q"], inp["k"], inp["v"]), kwargs

    def reference(self, case, inp, lowp):
        return self.call(checks.attention, case, inp, lowp=lowp)


class AttentionBwd(Suite):
    """Backward through autograd: ``bwd`` rows time the backward alone, ``fwd+bwd`` rows both."""

    name = "attention-bwd"
    op = "attention_bwd"
    description = "attention backward (2.5x forward FLOPs) and forward+backward (3.5x)"
    names = ("dq", "dk", "dv")

    def cases(self, mode, quick=False):
        dtype = "bfloat16" if mode == "gpu" else "float32"
        out = []
        for sh in _attention_grid(mode, quick):
            fwd, sizes = _attention_counts(sh, dtype)
            for pass_, factor, nbytes in (
                ("bwd", F.BWD_FACTOR, F.attention_bwd_bytes(*sizes)),
                ("fwd+bwd", F.FWD_BWD_FACTOR, F.attention_bwd_bytes(*sizes) + F.attention_bytes(*sizes)),
            ):
                shape = {**sh, "pass": pass_}
                name, series = f"{_attn_name(sh)} {pass_}", f"{_attn_series(sh)} {pass_}"
                out.append(self._case(name, shape, dtype, fwd * factor, nbytes, sh["seqlen_k"], series))
        return out

    def inputs(self, case, device, seed=0):
        q, k, v = _attention_inputs(case.shape, DTYPES[case.dtype], device, seed, grad=True)
        dout = _randn(q.shape, q.dtype, device, _gen(device, seed + 1))
        return dict(q=q, k=k, v=v, dout=dout, softmax_scale=case.shape["head_dim"] ** -0.5)

    args = AttentionFwd.args

    def runner(self, fn, case, inp):
        leaves = [inp["q"], inp["k"], inp["v"]]
        forward = super().runner(fn, case, inp).fn
        if case.shape["pass"] == "bwd":
            out = first(forward())
            return Runner(lambda: out.backward(inp["dout"], retain_graph=True), leaves)
        return Runner(lambda: first(forward()).backward(inp["dout"]), leaves)

    def outputs(self, runner, case, inp):
        # The gradients the timed call itself leaves behind, fresh: it accumulates into .grad.
        for t in runner.grad_to_none:
            t.grad = None
        runner.fn()
        grads = tuple(t.grad for t in runner.grad_to_none)
        for t in runner.grad_to_none:
            t.grad = None
        return grads

    def reference(self, case, inp, lowp):
        return self.call(checks.attention, case, inp, lowp=lowp, dout=inp["dout"])


# --- decoding -----------------------------------------------------------------------------------------


class DecodeKVCache(Suite):
    name = "decode-kvcache"
    op = "decode_kvcache"
    description = "decoding one token against a full KV cache (GQA 32 query / 8 KV heads), memory-bound"

    def cases(self, mode, quick=False):
        if mode == "gpu":
            dtype, b, h_q, h_kv, d = "bfloat16", 64, 32, 8, 128
            seqlens = (8192,) if quick else (2048, 8192, 32768)
        else:
            dtype, b, h_q, h_kv, d = "float32", 2, 4, 2, 64
            seqlens = (128,) if quick else (128, 512)
        out = []
        for s_k in seqlens:
            sh = dict(batch=b, seqlen_q=1, seqlen_k=s_k, heads_q=h_q, heads_k=h_kv, head_dim=d)
            flops = F.decode_flops(b, 1, s_k, h_q, d)
            nbytes = F.decode_bytes(b, 1, s_k, h_q, h_kv, d, ELT[dtype])
            name = f"b{b} hq{h_q} hkv{h_kv} d{d} cache{s_k}"
            out.append(self._case(name, sh, dtype, flops, nbytes, s_k, f"hq{h_q} d{d}"))
        return out

    def inputs(self, case, device, seed=0):
        sh = case.shape
        q, kc, vc = _attention_inputs(sh, DTYPES[case.dtype], device, seed, grad=False)
        seqlens = torch.full((sh["batch"],), sh["seqlen_k"], dtype=torch.int32, device=device)
        return dict(q=q, k_cache=kc, v_cache=vc, cache_seqlens=seqlens, softmax_scale=sh["head_dim"] ** -0.5)

    def args(self, case, inp):
        kwargs = dict(cache_seqlens=inp["cache_seqlens"], softmax_scale=inp["softmax_scale"])
        return (inp["q"], inp["k_cache"], inp["v_cache"]), kwargs

    def reference(self, case, inp, lowp):
        return self.call(checks.kvcache, case, inp, lowp=lowp)


MLA_D, MLA_DV, MLA_BLOCK = 576, 512, 64


def _every_output(self, runner: Runner, case: Case, inp: dict[str, Any]):
    # FlashMLA's calls return (out, lse) or (out, max_logits, lse): all of them are checked, not only out.
    return runner.fn()


def mla_cache_seqlens(batch: int, mean: int, seqlen_q: int, seed: int = 0) -> list[int]:
    """FlashMLA's varlen benchmark lengths: normal with mean s_k and sd s_k/2, at least s_q."""
    rng = random.Random(seed * 1_000_003 + mean * 131 + batch)
    return [int(max(rng.normalvariate(mean, mean / 2), seqlen_q)) for _ in range(batch)]


class MLADecode(Suite):
    rule = "mla"
    names = ("out", "lse")
    outputs = _every_output
    name = "mla-decode"
    op = "mla_decode"
    # FlashMLA's published figures count its main kernel only: every row reports its own beside the call.
    kernel_time = True
    description = "DeepSeek MLA decoding (d 576, d_v 512, one latent KV head, paged by 64), varlen cache"

    def cases(self, mode, quick=False):
        if mode == "gpu":
            dtype, b = "bfloat16", 128
            grid = (
                [(16, 1, 8192), (128, 2, 8192)]
                if quick
                else [(h_q, s_q, s_k) for h_q in (16, 128) for s_q in (1, 2) for s_k in (8192, 32768)]
            )
        else:
            dtype, b = "float32", 2
            grid = [(16, 1, 256)] if quick else [(16, 1, 256), (16, 2, 512)]
        out = []
        for h_q, s_q, s_k in grid:
            lens = mla_cache_seqlens(b, s_k, s_q)
            total = sum(lens)
            sh = dict(
                batch=b,
                seqlen_q=s_q,
                seqlen_k=s_k,
                heads_q=h_q,
                heads_kv=1,
                head_dim=MLA_D,
                head_dim_v=MLA_DV,
                block_size=MLA_BLOCK,
                causal=True,
                varlen=True,
                total_seqlen_k=total,
                max_seqlen_k=max(lens),
            )
            flops = F.mla_decode_flops(total, s_q, h_q)
            nbytes = F.mla_decode_bytes(total, b, s_q, h_q, 1, ELT[dtype])
            name, series = f"b{b} hq{h_q} sq{s_q} sk{s_k}", f"hq{h_q} sq{s_q}"
            out.append(self._case(name, sh, dtype, flops, nbytes, s_k, series, extra={"cache_seqlens": lens}))
        return out

    def inputs(self, case, device, seed=0):
        sh, dt, g = case.shape, DTYPES[case.dtype], _gen(device, seed)
        b, lens = sh["batch"], case.extra["cache_seqlens"]
        pad = math.ceil(max(lens) / 256) * 256
        blocks = pad // sh["block_size"]
        block_table = torch.arange(b * blocks, dtype=torch.int32, device=device).view(b, blocks)
        k_cache = _mla_randn((b * blocks, sh["block_size"], sh["heads_kv"], sh["head_dim"]), dt, device, g)
        q = _mla_randn((b, sh["seqlen_q"], sh["heads_q"], sh["head_dim"]), dt, device, g)
        seqlens = torch.tensor(lens, dtype=torch.int32, device=device)
        return dict(
            q=q,
            k_cache=k_cache,
            block_table=block_table,
            cache_seqlens=seqlens,
            softmax_scale=sh["head_dim"] ** -0.5,
        )

    def args(self, case, inp):
        args = (inp["q"], inp["k_cache"], inp["block_table"], inp["cache_seqlens"], case.shape["head_dim_v"])
        return args, dict(softmax_scale=inp["softmax_scale"], causal=case.shape["causal"])

    def reference(self, case, inp, lowp):
        return self.call(checks.mla_decode, case, inp)


class MLASparse(Suite):
    rule = "mla"
    names = ("out", "max_logits", "lse")
    outputs = _every_output
    name = "mla-sparse"
    op = "mla_sparse"
    description = "DeepSeek sparse MLA prefill (each query attends its top-k tokens), FlashMLA's layout"

    def cases(self, mode, quick=False):
        if mode == "gpu":
            dtype, h_q, topk = "bfloat16", 128, 2048
            grid = [(1024, 8192)] if quick else [(4096, 8192), (4096, 32768)]
        else:
            dtype, h_q, topk = "float32", 16, 64
            grid = [(16, 256)]
        out = []
        for s_q, s_kv in grid:
            sh = dict(
                seqlen_q=s_q,
                seqlen_kv=s_kv,
                heads_q=h_q,
                heads_kv=1,
                topk=topk,
                head_dim=MLA_D,
                head_dim_v=MLA_DV,
            )
            flops = F.mla_sparse_flops(s_q, h_q, topk)
            nbytes = F.mla_sparse_bytes(s_q, s_kv, h_q, 1, topk, ELT[dtype])
            name = f"sq{s_q} skv{s_kv} hq{h_q} topk{topk}"
            out.append(self._case(name, sh, dtype, flops, nbytes, s_kv, f"hq{h_q}"))
        return out

    def inputs(self, case, device, seed=0):
        sh, dt, g = case.shape, DTYPES[case.dtype], _gen(device, seed)
        q = _mla_randn((sh["seqlen_q"], sh["heads_q"], sh["head_dim"]), dt, device, g)
        kv = _mla_randn((sh["seqlen_kv"], sh["heads_kv"], sh["head_dim"]), dt, device, g)
        idx = torch.randint(
            0,
            sh["seqlen_kv"],
            (sh["seqlen_q"], sh["heads_kv"], sh["topk"]),
            generator=g,
            device=device,
            dtype=torch.int32,
        )
        return dict(q=q, kv=kv, indices=idx, sm_scale=sh["head_dim"] ** -0.5)

    def args(self, case, inp):
        return (inp["q"], inp["kv"], inp["indices"], inp["sm_scale"], case.shape["head_dim_v"]), {}

    def reference(self, case, inp, lowp):
        return self.call(checks.mla_sparse, case, inp)


# --- basics -------------------------------------------------------------------------------------------


class Basics(Suite):
    """The tutorial kernels: vector add and row softmax (memory-bound), matmul (compute-bound)."""

    name = "basics"
    op = "basics"  # per case: vector_add, softmax or matmul
    description = "vector add, row softmax, matmul"

    def cases(self, mode, quick=False):
        if mode == "gpu":
            adds = (1 << 24,) if quick else (1 << 24, 1 << 26, 1 << 28)
            softmaxes = ((4096, 4096),) if quick else ((4096, 1024), (4096, 4096), (4096, 16384))
            matmuls = (2048,) if quick else (2048, 4096, 8192)
            mm_dtype, dtype = "bfloat16", "float32"
        else:
            adds, softmaxes, matmuls = (1 << 16,), ((256, 1024),), (256,)
            mm_dtype = dtype = "float32"
        out = []
        for n in adds:
            sh, nbytes = dict(kernel="vector_add", n=n), F.vector_add_bytes(n, ELT[dtype])
            out.append(
                self._case(f"vector_add n{n}", sh, dtype, float(n), nbytes, n, "vector_add", op="vector_add")
            )
        for m, n in softmaxes:
            sh = dict(kernel="softmax", rows=m, cols=n)
            flops, nbytes = F.softmax_flops(m, n), F.softmax_bytes(m, n, ELT[dtype])
            out.append(self._case(f"softmax {m}x{n}", sh, dtype, flops, nbytes, n, "softmax", op="softmax"))
        for n in matmuls:
            sh = dict(kernel="matmul", m=n, n=n, k=n)
            flops, nbytes = F.matmul_flops(n, n, n), F.matmul_bytes(n, n, n, ELT[mm_dtype])
            out.append(self._case(f"matmul {n}^3", sh, mm_dtype, flops, nbytes, n, "matmul", op="matmul"))
        return out

    def inputs(self, case, device, seed=0):
        sh, dt, g = case.shape, DTYPES[case.dtype], _gen(device, seed)
        if sh["kernel"] == "vector_add":
            return dict(args=(_randn((sh["n"],), dt, device, g), _randn((sh["n"],), dt, device, g)))
        if sh["kernel"] == "softmax":
            return dict(args=(_randn((sh["rows"], sh["cols"]), dt, device, g),))
        # Scaled so bf16 sums stay well inside range and the tolerance rule sees representative error.
        scale = sh["k"] ** -0.25
        return dict(
            args=(
                _randn((sh["m"], sh["k"]), dt, device, g, scale),
                _randn((sh["k"], sh["n"]), dt, device, g, scale),
            )
        )

    def args(self, case, inp):
        return inp["args"], {}

    def reference(self, case, inp, lowp):
        args = inp["args"] if lowp else tuple(checks.up(a) for a in inp["args"])
        kernel = case.shape["kernel"]
        if kernel == "vector_add":
            return args[0] + args[1]
        if kernel == "softmax":
            return torch.softmax(args[0], dim=-1)
        return args[0] @ args[1]


# --- memory -------------------------------------------------------------------------------------------


class Memory(AttentionFwd):
    """Peak GPU memory of one forward against seqlen: the O(N^2) naive vs O(N) flash story."""

    name = "memory"
    op = "attention_fwd"
    description = "peak GPU memory of an attention forward vs seqlen (b 1, h 16, d 128, bf16)"
    measure = "memory"

    def _grid(self, mode, quick):
        seqlens = (1024, 2048) if quick else GPU_SEQLENS
        return [
            dict(batch=1, seqlen_q=s, seqlen_k=s, heads_q=16, heads_k=16, head_dim=128, causal=False)
            for s in seqlens
        ]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (AttentionFwd(), AttentionBwd(), DecodeKVCache(), MLADecode(), MLASparse(), Basics(), Memory())
}

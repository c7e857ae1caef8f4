"""The protocol a backend exposes to attn-bench, and its normalised form.

A backend package declares an entry point in the group ``attn_bench.backends``::

    [project.entry-points."attn_bench.backends"]
    triton = "attn_triton.bench:backend"

The object it points at is either the description itself or a zero-argument callable returning it (so a
backend can defer heavy imports until it is asked). The description is a mapping or any object with
these attributes (all but ``name`` and ``ops`` optional):

``name``
    short name shown in tables (``"triton"``).
``version``
    the package version.
``devices``
    devices its ops run on: ``("cuda",)``, ``("cpu", "cuda")``.
``interpreter``
    True when its Triton kernels also run under ``TRITON_INTERPRET=1``: CPU mode then runs them on CPU
    tensors at tiny sizes.
``ops``
    ``{op: callable}`` or ``{op: {variant: callable}}``; the ops and their calling conventions:

    - ``attention_fwd(q, k, v, *, causal, softmax_scale) -> out`` (or ``(out, lse)``), q/k/v of shape
      (batch, seqlen, heads, head_dim).
    - ``attention_bwd``: same signature, differentiable; the bench runs the backward through autograd.
    - ``decode_kvcache(q, k_cache, v_cache, *, cache_seqlens, softmax_scale) -> out``: flash-attn's
      ``flash_attn_with_kvcache`` convention, q of shape (batch, 1, heads_q, head_dim).
    - ``mla_decode(q, k_cache, block_table, cache_seqlens, head_dim_v, *, softmax_scale, causal)
      -> (out, lse)``: FlashMLA's convention without the scheduler metadata.
    - ``mla_sparse(q, kv, indices, sm_scale, d_v) -> (out, max_logits, lse)``: FlashMLA's
      ``flash_mla_sparse_fwd`` convention.

    The MLA ops' every returned output is checked, dtype included (``out`` in q's dtype, the rest fp32);
    an op may return ``out`` alone (or fewer outputs), and the row's check then records the outputs it
    did not return as not checked.
    - ``vector_add(x, y)``, ``softmax(x)`` (rows, last dim), ``matmul(a, b)``: the ``basics`` suite.

    An op may instead be an object with ``prepare(*args, **kwargs) -> zero-arg callable``: the bench calls
    ``prepare`` once per row, outside the timed region (scheduler metadata, workspaces, plans), checks the
    callable it returns and times that same callable. If it has a ``description`` attribute (a short
    string: the kernel path and tile config it chose, say), a timed row records it as its ``message``.
    An op's default variant (what a user gets) is the one named ``default``, else the first listed.
``ablations``
    optional ``{op: {variant: callable}}``, shaped like ``ops``: the same op with one optimisation switched
    off or another choice taken, measured beside the op's default. They run only when asked for (the
    ``ablations`` preset), so the other presets keep their rows; each op named here needs its default in
    ``ops``, and the names must differ from its variants there. A variant is compared with the op's default,
    or with the variant its callable names in a ``baseline`` attribute (a forced path's own default).
``supports``
    optional ``supports(op, variant, shape, device) -> str | None`` (``shape`` also holds ``"dtype"``, the
    inputs' dtype name): the reason a case is out of reach
    (too much memory, a head dim it lacks), or None. Such rows are listed as ``unsupported``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

#: Every op a backend may offer, in the order suites use them.
OPS = (
    "attention_fwd",
    "attention_bwd",
    "decode_kvcache",
    "mla_decode",
    "mla_sparse",
    "vector_add",
    "softmax",
    "matmul",
)


@dataclasses.dataclass
class Backend:
    """A backend or peer as the bench sees it: ``impls[op][variant] -> callable``."""

    name: str
    kind: str = "backend"  # "backend" or "peer"
    version: str | None = None
    devices: tuple[str, ...] = ("cuda",)
    interpreter: bool = False
    impls: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    supports: Callable[..., str | None] | None = None
    #: op -> the names in ``impls[op]`` that are ablation variants (run only when asked for)
    ablations: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def variants(self, op: str, ablations: bool = False) -> dict[str, Any]:
        """The op's variants: its regular ones, and with ``ablations`` its ablation ones too."""
        impls = self.impls.get(op, {})
        if ablations:
            return impls
        return {v: fn for v, fn in impls.items() if v not in self.ablations.get(op, ())}

    def default_variant(self, op: str) -> str | None:
        """What a user gets: the variant named ``default``, else the first one listed."""
        names = list(self.impls.get(op, {}))
        return "default" if "default" in names else (names[0] if names else None)

    def baseline(self, op: str, variant: str) -> str | None:
        """The variant this one is measured against: its ``baseline`` attribute, else the op's default
        (None for the default itself)."""
        named = getattr(self.impls.get(op, {}).get(variant), "baseline", None)
        base = named if named in self.impls.get(op, {}) else self.default_variant(op)
        return None if base == variant else base

    def label(self, variant: str) -> str:
        """Row label: ``backend`` alone when the op has one unnamed variant, else ``backend/variant``."""
        return self.name if variant in ("", "default") else f"{self.name}/{variant}"

    def runs_on(self, device: str) -> bool:
        """Whether the bench may run this backend in ``device`` mode (cpu mode accepts interpreters)."""
        return device in self.devices or (device == "cpu" and self.interpreter)

    def why_not(self, op: str, variant: str, shape: Mapping[str, Any], device: str) -> str | None:
        if self.supports is None:
            return None
        return self.supports(op, variant, dict(shape), device)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def normalise(obj: Any, *, kind: str = "backend") -> Backend:
    """Turn whatever an entry point gave into a :class:`Backend`; raises ``TypeError`` on a bad shape."""
    if callable(obj) and _get(obj, "name") is None and _get(obj, "ops") is None:
        obj = obj()
    name = _get(obj, "name")
    ops = _get(obj, "ops")
    if not isinstance(name, str) or not name:
        raise TypeError(f"a backend needs a non-empty str name, got {name!r}")
    if not isinstance(ops, Mapping):
        raise TypeError(f"backend {name!r}: ops must be a mapping of op name to callable, got {type(ops)}")
    impls: dict[str, dict[str, Any]] = {}
    for op, value in ops.items():
        if op not in OPS:
            raise TypeError(f"backend {name!r}: unknown op {op!r}; known ops: {', '.join(OPS)}")
        impls[op] = _variants(name, op, dict(value) if isinstance(value, Mapping) else {"default": value})
    ablations: dict[str, tuple[str, ...]] = {}
    extra = _get(obj, "ablations") or {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"backend {name!r}: ablations must be a mapping of op name to variants")
    for op, value in extra.items():
        if op not in impls:
            raise TypeError(f"backend {name!r}: ablations of {op!r} need its default in ops")
        if not isinstance(value, Mapping):
            raise TypeError(f"backend {name!r}: ablations of {op} must map variant names to callables")
        clash = set(value) & set(impls[op])
        if clash:
            raise TypeError(f"backend {name!r}: ablation variants {sorted(clash)} of {op} are also in ops")
        impls[op].update(_variants(name, op, dict(value)))
        ablations[op] = tuple(value)
    devices = tuple(_get(obj, "devices", ("cuda",)))
    supports = _get(obj, "supports")
    return Backend(
        name=name,
        kind=kind,
        version=_get(obj, "version"),
        devices=devices,
        interpreter=bool(_get(obj, "interpreter", False)),
        impls=impls,
        supports=supports if callable(supports) else None,
        ablations=ablations,
    )


def _variants(name: str, op: str, variants: dict[str, Any]) -> dict[str, Any]:
    for variant, fn in variants.items():
        if not (callable(fn) or callable(getattr(fn, "prepare", None))):
            raise TypeError(f"backend {name!r}: op {op}/{variant} is neither callable nor preparable")
    return variants


def bind(fn: Any, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """A zero-argument callable running ``fn`` on these inputs (``prepare`` runs here, untimed)."""
    prepare = getattr(fn, "prepare", None)
    if callable(prepare):
        return prepare(*args, **kwargs)
    return lambda: fn(*args, **kwargs)


def first(result: Any) -> Any:
    """The output tensor of an op that may return ``(out, lse, ...)``."""
    return result[0] if isinstance(result, (tuple, list)) else result

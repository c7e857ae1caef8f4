"""Finding the backends installed: entry points of the group ``attn_bench.backends``.

attn-bench never imports a backend package by name; a broken backend is reported, never fatal. Where the
packages are on ``PYTHONPATH`` but not installed (so no entry points exist), ``ATTN_BENCH_BACKENDS`` names
them the way an entry point would: ``reference=attn_reference.bench:backend,triton=attn_triton.bench:backend``
(these override installed entry points of the same name).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import os
import traceback

from attn_bench.backend import Backend, normalise

GROUP = "attn_bench.backends"
ENV = "ATTN_BENCH_BACKENDS"


@dataclasses.dataclass
class Discovered:
    """One entry point: the backend it gave, or why it gave none."""

    name: str
    value: str
    backend: Backend | None = None
    error: str | None = None
    kind: str = "backend"

    @property
    def ok(self) -> bool:
        return self.backend is not None


def _from_env() -> list[metadata.EntryPoint]:
    out = []
    for item in os.environ.get(ENV, "").split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name.strip() and value.strip():
            out.append(metadata.EntryPoint(name.strip(), value.strip(), GROUP))
    return out


def _entry_points():
    eps = metadata.entry_points()
    # entry_points() returns a selectable EntryPoints on 3.10+, a dict on older importlib_metadata shims.
    found = list(eps.select(group=GROUP)) if hasattr(eps, "select") else list(eps.get(GROUP, []))
    extra = _from_env()
    names = {e.name for e in extra}
    # Installed editable and on PYTHONPATH at once: one entry per name.
    unique = {e.name: e for e in found if e.name not in names}
    return [*unique.values(), *extra]


def discover(only: list[str] | None = None) -> list[Discovered]:
    """Load every registered backend (or those named in ``only``), keeping failures as reasons."""
    found: list[Discovered] = []
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if only and ep.name not in only:
            continue
        item = Discovered(name=ep.name, value=ep.value)
        try:
            item.backend = normalise(ep.load())
        except Exception as exc:  # a broken backend must not stop the others
            last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
            where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
            item.error = f"{type(exc).__name__}: {exc}{where}"
        found.append(item)
    return found

"""The results file: a versioned JSON document, its field list and a validator (no dependency).

Version 1. Top level: ``schema_version``, ``created`` (ISO 8601), ``mode`` (gpu/cpu), ``host``,
``device`` (GPU name, capability, driver, CUDA), ``versions`` (every package and peer, None when
absent), ``ceilings`` (measured matmul TFLOP/s and copy GB/s), ``options``, ``suites``,
``implementations`` (backends and peers, with why a missing one is missing), ``rows``, ``notes`` and
``runs`` (optional: the runs that wrote the rows, one per ``--resume`` step: device, split, ceilings, why
it stopped).
A row is one (suite, case, implementation): shapes, FLOP and byte counts, check, status and figures.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

MODES = ("gpu", "cpu")
ROW_STATUSES = ("ok", "check_failed", "error", "unsupported", "oom", "skipped")
CHECK_STATUSES = ("pass", "fail", "unchecked", "error")

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))

#: field -> (allowed types, required)
TOP: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema_version": ((int,), True),
    "created": ((str,), True),
    "mode": ((str,), True),
    "attn_bench_version": ((str,), True),
    "host": ((dict,), True),
    "device": ((dict,), True),
    "versions": ((dict,), True),
    "ceilings": ((dict,), True),
    "options": ((dict,), False),
    "suites": ((list,), True),
    "implementations": ((list,), True),
    "rows": ((list,), True),
    "notes": ((list,), False),
    "runs": ((list,), False),
}
DEVICE = {
    "name": ((str,), True),
    "capability": (_OPT_STR, True),
    "driver": (_OPT_STR, True),
    "cuda": (_OPT_STR, True),
}
CEILINGS = {"matmul_tflops": (_NUM, True), "copy_gbps": (_NUM, True)}
IMPLEMENTATION = {
    "name": ((str,), True),
    "kind": ((str,), True),
    "version": (_OPT_STR, False),
    "available": ((bool,), True),
    "reason": (_OPT_STR, False),
    "ops": ((list,), False),
}
ROW = {
    "suite": ((str,), True),
    "case": ((str,), True),
    "impl": ((str,), True),
    "backend": ((str,), True),
    "variant": ((str,), False),
    "kind": ((str,), True),
    "op": ((str,), True),
    "shape": ((dict,), True),
    "dtype": ((str,), True),
    "flops": (_NUM, True),
    "bytes": (_NUM, True),
    "x": (_NUM, True),
    "series": ((str,), True),
    "status": ((str,), True),
    "check": ((dict, type(None)), True),
    "ms": (_OPT_NUM, True),
    "tflops": (_OPT_NUM, True),
    "gbps": (_OPT_NUM, True),
    "pct_of_ceiling": (_OPT_NUM, True),
    "bound": (_OPT_STR, False),
    "ratio_to_best_peer": (_OPT_NUM, True),
    "best_peer": (_OPT_STR, False),
    "baseline": (_OPT_STR, False),
    "ratio_to_baseline": (_OPT_NUM, False),
    "peak_memory_bytes": ((int, type(None)), False),
    "timer": (_OPT_STR, False),
    "kernel_ms": (_OPT_NUM, False),
    "kernel": (_OPT_STR, False),
    "message": ((str,), False),
}
CHECK = {"status": ((str,), True), "max_abs_err": (_OPT_NUM, False), "detail": ((str,), False)}


class SchemaError(ValueError):
    """A results document does not follow the schema; ``problems`` lists every violation."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__("invalid results document: " + "; ".join(problems[:5]) + more)


def _fields(obj: Any, spec: dict, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return
    for key, (types, required) in spec.items():
        if key not in obj:
            if required:
                problems.append(f"{where}.{key}: missing")
            continue
        value = obj[key]
        # bool is an int in Python; a number field holding True is a bug, not a number.
        if isinstance(value, bool) and bool not in types:
            problems.append(f"{where}.{key}: expected {_names(types)}, got bool")
        elif not isinstance(value, types):
            problems.append(f"{where}.{key}: expected {_names(types)}, got {type(value).__name__}")


def _names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def problems(doc: Any) -> list[str]:
    """Every violation of the schema in ``doc`` (empty when valid)."""
    out: list[str] = []
    _fields(doc, TOP, "$", out)
    if out and not isinstance(doc, dict):
        return out
    version = doc.get("schema_version")
    if isinstance(version, int) and version != SCHEMA_VERSION:
        out.append(f"$.schema_version: this attn-bench reads version {SCHEMA_VERSION}, got {version}")
    if doc.get("mode") not in MODES:
        out.append(f"$.mode: expected one of {MODES}, got {doc.get('mode')!r}")
    if isinstance(doc.get("device"), dict):
        _fields(doc["device"], DEVICE, "$.device", out)
    if isinstance(doc.get("ceilings"), dict):
        _fields(doc["ceilings"], CEILINGS, "$.ceilings", out)
    for i, impl in enumerate(doc.get("implementations") or []):
        _fields(impl, IMPLEMENTATION, f"$.implementations[{i}]", out)
    for i, row in enumerate(doc.get("rows") or []):
        where = f"$.rows[{i}]"
        _fields(row, ROW, where, out)
        if not isinstance(row, dict):
            continue
        if row.get("status") not in ROW_STATUSES:
            out.append(f"{where}.status: expected one of {ROW_STATUSES}, got {row.get('status')!r}")
        if row.get("status") == "ok" and row.get("ms") is None and row.get("peak_memory_bytes") is None:
            out.append(f"{where}: status ok but neither ms nor peak_memory_bytes")
        if isinstance(row.get("check"), dict):
            _fields(row["check"], CHECK, f"{where}.check", out)
            if row["check"].get("status") not in CHECK_STATUSES:
                out.append(f"{where}.check.status: expected one of {CHECK_STATUSES}")
    return out


def validate(doc: Any) -> dict[str, Any]:
    """Return ``doc`` if it follows the schema, else raise :class:`SchemaError`."""
    found = problems(doc)
    if found:
        raise SchemaError(found)
    return doc


def _finite(obj: Any) -> Any:
    # JSON has no NaN or infinity; a non-finite error or figure is written as null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dump(doc: dict[str, Any], path: str | Path) -> Path:
    """Validate, then write ``doc`` as indented JSON."""
    doc = _finite(doc)
    validate(doc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomically: a run killed while writing leaves the previous complete file, never half of one.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError([f"not JSON: {exc}"]) from exc
    return validate(doc)

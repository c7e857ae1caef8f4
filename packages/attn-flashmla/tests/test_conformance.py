"""attn-flashmla against the reference: the MLA conformance suite, on CPU (interpreter) and on Hopper."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import pytest
import torch

import attn_flashmla as flash_mla
from attn_reference.testing.mla import MLABackend, MLAConformance, MLAFeatures

FEATURES = MLAFeatures(
    dtypes=(torch.bfloat16, torch.float16),
    head_dims=(576, 512),
    dense=True,
    sparse=True,
    fp8=True,
    attn_sink=True,
    extra_cache=True,
    page_sizes=None,  # the Triton path gathers per token: any page size (the CuTe path needs 64)
)

FLASHMLA_BACKEND = MLABackend(
    name="attn-flashmla",
    flash_mla_with_kvcache=flash_mla.flash_mla_with_kvcache,
    get_mla_metadata=flash_mla.get_mla_metadata,
    flash_mla_sparse_fwd=flash_mla.flash_mla_sparse_fwd,
    features=FEATURES,
)


@contextlib.contextmanager
def _environ(**values: str):
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), reason="the CPU run needs TRITON_INTERPRET=1"
)
class TestFlashMLAInterpreter(MLAConformance):
    """Every kernel under Triton's interpreter at tiny sizes (CPU tier)."""

    backend = FLASHMLA_BACKEND
    device = "cpu"
    size = "tiny"
    dtypes = (torch.float16, torch.bfloat16)


def _triton_backend(name: str, **switches: str) -> MLABackend:
    """attn-flashmla with dense decoding forced onto the Triton path, under ``switches``."""

    def call(*args, **kwargs):
        with _environ(ATTN_FLASHMLA_PATH="triton", **switches):
            return flash_mla.flash_mla_with_kvcache(*args, **kwargs)

    return dataclasses.replace(FLASHMLA_BACKEND, name=name, flash_mla_with_kvcache=call)


@pytest.mark.sm90
class TestFlashMLATritonSm90(MLAConformance):
    """The Triton path's tile-level kernel on Hopper (tuned, the Gluon kernel switched off), FlashMLA's grid
    and tolerances."""

    backend = _triton_backend("attn-flashmla/triton", ATTN_FLASHMLA_TRITON_GLUON="0")
    device = "cuda"
    size = "full"


@pytest.mark.sm90
class TestFlashMLAGluonSm90(MLAConformance):
    """The Triton path untuned on Hopper: its first candidate, the Gluon kernel from 33 query rows per KV
    head (page sizes that are multiples of 64), the tile-level kernel elsewhere."""

    backend = _triton_backend("attn-flashmla/gluon", ATTN_FLASHMLA_AUTOTUNE="0")
    device = "cuda"
    size = "full"


@pytest.mark.sm90
class TestFlashMLADefaultSm90(MLAConformance):
    """The default dispatch on Hopper: the CuTe DSL kernel where it applies (page 64, head dim 576, at least
    ``CUTE_MIN_ROWS`` query rows per KV head), Triton elsewhere."""

    backend = FLASHMLA_BACKEND
    device = "cuda"
    size = "full"


@pytest.mark.sm90
def test_default_dispatch_on_hopper(monkeypatch):
    from attn_flashmla import _runtime

    monkeypatch.delenv("ATTN_FLASHMLA_PATH", raising=False)

    def q(s_q, h_q, d=576):
        return torch.empty(1, s_q, h_q, d, dtype=torch.bfloat16, device="cuda")

    cute = "cute" if _runtime.cute_dsl_available() else "triton"
    assert _runtime.dense_path(q(1, 128), 64, 1) == cute
    assert _runtime.dense_path(q(2, 64), 64, 2) == cute  # 64 rows per KV head
    assert _runtime.dense_path(q(2, 32), 64, 2) == "triton"  # 32 rows
    assert _runtime.dense_path(q(1, 16), 64, 1) == "triton"
    assert _runtime.dense_path(q(1, 128), 16, 1) == "triton"  # page 16: no TMA tile of one block
    assert _runtime.dense_path(q(1, 128, 512), 64, 1) == "triton"  # head dim 512
    monkeypatch.setenv("ATTN_FLASHMLA_PATH", "triton")
    assert _runtime.dense_path(q(1, 128), 64, 1) == "triton"
